package latency

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/convpca/convpca/internal/filehash"

	"github.com/convpca/convpca/ort"
)

// A Runner opens programs for timing. Measure uses onnxruntime (NewRunner) unless
// Options.Runner is set, as tests do.
type Runner interface {
	// Identity names what runs the programs, for the cache key: the onnxruntime library and
	// the provider that is really used.
	Identity() (string, error)
	// Open prepares a program: a session and a random input.
	Open(p Program) (Timer, error)
}

// A Timer runs one opened program.
type Timer interface {
	// Run runs the program once and returns how long the run took.
	Run() (time.Duration, error)
	Close() error
}

// NewRunner returns the Runner that times programs in onnxruntime sessions with the given
// options (provider, intra-op threads, library).
func NewRunner(opts ort.RuntimeOptions) Runner {
	return &ortRunner{opts: opts, inputs: map[string]*input{}}
}

type ortRunner struct {
	opts ort.RuntimeOptions
	mu   sync.Mutex
	// inputs are shared by the programs that take the same shape, and freed with the last.
	inputs map[string]*input
}

type input struct {
	x    []float32
	refs int
}

func (r *ortRunner) Identity() (string, error) {
	if err := ort.InitRuntime(r.opts.Library); err != nil {
		return "", err
	}
	path, err := ort.FindLibrary(r.opts.Library)
	if err != nil {
		return "", err
	}
	sum, err := fileHash(path)
	if err != nil {
		return "", fmt.Errorf("onnxruntime library: %w", err)
	}
	provider := ort.CPU
	if r.opts.Provider != ort.CPU {
		// Auto may fall back to the CPU: ask a session which provider it got.
		p, err := build(Layer{Op: "Gemm", In: 1, Out: 1, Input: []int{1}, Batch: 1}, spec{}, nil, 0)
		if err != nil {
			return "", err
		}
		s, err := ort.NewSession(p.Model, p.Input, p.Outputs, r.opts)
		if err != nil {
			return "", err
		}
		provider = s.Provider
		s.Close()
	}
	return fmt.Sprintf("onnxruntime sha256:%s provider %s", sum, provider), nil
}

var hashes struct {
	sync.Mutex
	m map[string]string // path, size and modification time -> SHA-256
}

// fileHash returns the SHA-256 of a file (the onnxruntime library: its version is not exposed,
// and an npm-installed library has a fixed modification time), once per process.
func fileHash(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	id := fmt.Sprintf("%s %d %d", path, st.Size(), st.ModTime().UnixNano())
	hashes.Lock()
	defer hashes.Unlock()
	if h, ok := hashes.m[id]; ok {
		return h, nil
	}
	sum, err := filehash.SHA256(path)
	if err != nil {
		return "", err
	}
	if hashes.m == nil {
		hashes.m = map[string]string{}
	}
	hashes.m[id] = sum
	return sum, nil
}

func (r *ortRunner) Open(p Program) (Timer, error) {
	s, err := ort.NewSession(p.Model, p.Input, p.Outputs, r.opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	key := fmt.Sprint(p.Dims)
	r.mu.Lock()
	in := r.inputs[key]
	if in == nil {
		in = &input{x: randomInput(p.Dims)}
		r.inputs[key] = in
	}
	in.refs++
	r.mu.Unlock()
	return &ortTimer{r: r, s: s, key: key, x: in.x, dims: p.Dims, sweep: p.Sweep}, nil
}

// randomInput returns a tensor of shape dims drawn from N(0, 1), the same for the same number of
// values: the time of a dense float kernel does not depend on them.
func randomInput(dims []int64) []float32 {
	n := 1
	for _, d := range dims {
		n *= int(d)
	}
	x := make([]float32, n)
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

type ortTimer struct {
	r     *ortRunner
	s     *ort.Session
	key   string
	x     []float32
	dims  []int64
	sweep int64 // bytes to sweep before each run (Layer.Sweep)
}

func discard([]ort.Output) error { return nil }

// Run times one run: with one intra-op thread, onnxruntime computes on the calling thread, and
// the time is that thread's CPU time, which leaves out the time the system gave to other
// processes (on a busy machine, most of the noise); else the wall time.
func (t *ortTimer) Run() (time.Duration, error) {
	// The sweep runs on the thread that runs the program, so that it reaches its core's
	// private caches.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if t.sweep > 0 {
		sweep(t.sweep)
		touch(t.x)
	}
	if t.r.opts.Threads == 1 {
		if c0, ok := threadCPU(); ok {
			err := t.s.Run(t.x, t.dims, discard)
			c1, _ := threadCPU()
			return c1 - c0, err
		}
	}
	t0 := time.Now()
	err := t.s.Run(t.x, t.dims, discard)
	return time.Since(t0), err
}

func (t *ortTimer) Close() error {
	t.r.mu.Lock()
	if in := t.r.inputs[t.key]; in != nil {
		if in.refs--; in.refs <= 0 {
			delete(t.r.inputs, t.key)
		}
	}
	t.r.mu.Unlock()
	return t.s.Close()
}
