package ort

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/convpca/convpca/dataset"
)

// LibraryEnv is the environment variable that names the onnxruntime shared library.
const LibraryEnv = "CONVPCA_ORT_LIB"

// libName is the file name of the onnxruntime 1.24 shared library on Linux.
const libName = "libonnxruntime.so.1"

// InstallDir is where `make setup` (.ci/setup) installs the onnxruntime library:
// $CONVPCA_HOME/lib, else $XDG_DATA_HOME/convpca/lib, else ~/.local/share/convpca/lib.
func InstallDir() string {
	if h := os.Getenv("CONVPCA_HOME"); h != "" {
		return filepath.Join(h, "lib")
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "convpca", "lib")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".local", "share", "convpca", "lib")
}

// ErrNoLibrary is returned (wrapped) when the onnxruntime library cannot be found or loaded.
var ErrNoLibrary = errors.New("onnxruntime library not available")

// FindLibrary returns the path of the onnxruntime shared library: flag when it is not empty,
// then $CONVPCA_ORT_LIB, then InstallDir, then the folder of the executable and its ../lib,
// then the system's library folders. The error says how to install it.
func FindLibrary(flag string) (string, error) {
	for _, explicit := range []struct{ path, from string }{{flag, "--ort-lib"}, {os.Getenv(LibraryEnv), LibraryEnv}} {
		if explicit.path == "" {
			continue
		}
		if _, err := os.Stat(explicit.path); err != nil {
			return "", fmt.Errorf("%w: %s names %s, which does not exist", ErrNoLibrary, explicit.from, explicit.path)
		}
		return explicit.path, nil
	}
	var dirs []string
	if d := InstallDir(); d != "" {
		dirs = append(dirs, d)
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe), filepath.Join(filepath.Dir(exe), "..", "lib"))
	}
	for _, d := range strings.Split(os.Getenv("LD_LIBRARY_PATH"), ":") {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	dirs = append(dirs, "/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib", "/usr/lib64")
	for _, d := range dirs {
		for _, name := range []string{libName, "libonnxruntime.so"} {
			p := filepath.Join(d, name)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w: %s not found in %s or the system library folders; run `make setup`, or pass --ort-lib PATH or set %s", ErrNoLibrary, libName, InstallDir(), LibraryEnv)
}

var runtime struct {
	sync.Mutex
	path string
	err  error
}

// InitRuntime loads the onnxruntime library found by FindLibrary(lib) and creates the
// process's onnxruntime environment. Later calls return the first call's outcome; a later call
// naming another library is an error.
func InitRuntime(lib string) error {
	runtime.Lock()
	defer runtime.Unlock()
	if runtime.path != "" || runtime.err != nil {
		if runtime.err == nil && lib != "" && lib != runtime.path {
			return fmt.Errorf("onnxruntime already loaded from %s, cannot load %s", runtime.path, lib)
		}
		return runtime.err
	}
	path, err := FindLibrary(lib)
	if err != nil {
		return err // not remembered: a later call may name a library that exists
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelFatal()); err != nil {
		runtime.err = fmt.Errorf("%w: loading %s: %v", ErrNoLibrary, path, err)
		return runtime.err
	}
	runtime.path = path
	return nil
}

// Provider selects where onnxruntime runs the model.
type Provider string

const (
	Auto Provider = "auto" // CUDA when it can be used, else CPU with one warning
	CPU  Provider = "cpu"
	CUDA Provider = "cuda" // CUDA or an error
)

// ParseProvider checks a --provider value.
func ParseProvider(s string) (Provider, error) {
	switch p := Provider(strings.ToLower(s)); p {
	case Auto, CPU, CUDA:
		return p, nil
	case "":
		return Auto, nil
	}
	return "", fmt.Errorf("unknown provider %q (want auto, cpu or cuda)", s)
}

// RuntimeOptions says how to run onnxruntime.
type RuntimeOptions struct {
	Library  string   // path of libonnxruntime.so.1; "" searches (see FindLibrary)
	Provider Provider // "" means Auto
	Threads  int      // intra-op threads; 0 lets onnxruntime choose
	// Profile, when not empty, turns on onnxruntime's profiling: a session writes its profile
	// (JSON, an event per node run) to a file named with this prefix when it is closed.
	Profile string
	// Warn receives warnings for the user (such as falling back to CPU); nil discards them.
	Warn func(msg string)
}

var cudaWarning sync.Once

// Session runs one model in onnxruntime: one or more inputs, any number of outputs.
type Session struct {
	s        *ort.DynamicAdvancedSession
	inputs   []string
	outputs  []string
	Provider Provider // the provider actually used: CPU or CUDA
}

// NewSession creates a session for the serialized model, fed through the graph input named
// input and returning the named outputs.
func NewSession(model []byte, input string, outputs []string, opts RuntimeOptions) (*Session, error) {
	return NewSessionInputs(model, []string{input}, outputs, opts)
}

// NewSessionInputs creates a session for the serialized model, fed through the named graph
// inputs (RunFeeds takes them in this order) and returning the named outputs.
func NewSessionInputs(model []byte, inputs, outputs []string, opts RuntimeOptions) (*Session, error) {
	if err := InitRuntime(opts.Library); err != nil {
		return nil, err
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnxruntime session options: %w", err)
	}
	defer so.Destroy()
	if opts.Threads > 0 {
		if err := so.SetIntraOpNumThreads(opts.Threads); err != nil {
			return nil, fmt.Errorf("onnxruntime threads: %w", err)
		}
	}
	if opts.Profile != "" {
		if err := so.EnableProfiling(opts.Profile); err != nil {
			return nil, fmt.Errorf("onnxruntime profiling: %w", err)
		}
	}
	used := CPU
	if opts.Provider != CPU {
		err := appendCUDA(so)
		switch {
		case err == nil:
			used = CUDA
		case opts.Provider == CUDA:
			return nil, fmt.Errorf("CUDA provider requested but unavailable: %w", err)
		default:
			cudaWarning.Do(func() {
				if opts.Warn != nil {
					opts.Warn(fmt.Sprintf("CUDA provider unavailable, running on CPU (%v)", firstLine(err)))
				}
			})
		}
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, inputs, outputs, so)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime could not load the model: %s", firstLine(err))
	}
	return &Session{s: s, inputs: inputs, outputs: outputs, Provider: used}, nil
}

func appendCUDA(so *ort.SessionOptions) error {
	// A CPU build of onnxruntime has no CUDA provider beside it; say so plainly rather than
	// with the runtime's own multi-part message.
	dir := filepath.Dir(runtime.path)
	for _, name := range []string{"libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("%s not found beside %s (a CPU build of onnxruntime)", name, runtime.path)
		}
	}
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer co.Destroy()
	// TF32 matrix products (the CUDA provider's default on Ampere and later) carry 10-bit
	// mantissas: the in-graph Gram matrices of calibration would be accurate to about 1e-3.
	if err := co.Update(map[string]string{"use_tf32": "0"}); err != nil {
		return err
	}
	return so.AppendExecutionProviderCUDA(co)
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// Output is one output of a run: its shape and values (row-major), as float32 whatever the
// output's element type (other types are converted). Data belongs to the runtime and is valid
// only during the callback it is passed to.
type Output struct {
	Name  string
	Shape []int64
	Data  []float32
}

// Run feeds x (shape dims) through the model, which must have been created with one input, and
// calls fn with the outputs, in the order the session was created with.
func (s *Session) Run(x []float32, dims []int64, fn func(outs []Output) error) error {
	if len(s.inputs) != 1 {
		panic(fmt.Sprintf("calib: Session.Run of a session of %d inputs", len(s.inputs)))
	}
	in, err := ort.NewTensor(ort.NewShape(dims...), x)
	if err != nil {
		return fmt.Errorf("input tensor %v: %w", dims, err)
	}
	defer in.Destroy()
	return s.run([]ort.Value{in}, fn)
}

// RunFeeds feeds one batch of every input, in the order the session was created with, and
// calls fn with the outputs.
func (s *Session) RunFeeds(ins []Fed, fn func(outs []Output) error) error {
	if len(ins) != len(s.inputs) {
		panic(fmt.Sprintf("calib: RunFeeds with %d inputs for a session of %d", len(ins), len(s.inputs)))
	}
	vals := make([]ort.Value, len(ins))
	defer func() {
		for _, v := range vals {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, in := range ins {
		t, ok := elementType[in.Type]
		if !ok {
			return fmt.Errorf("input %q: element type %v cannot be fed", in.Name, in.Type)
		}
		v, err := ort.NewCustomDataTensor(ort.NewShape(in.Shape...), in.Data, t)
		if err != nil {
			return fmt.Errorf("input %q tensor %v: %s", in.Name, in.Shape, firstLine(err))
		}
		vals[i] = v
	}
	return s.run(vals, fn)
}

// elementType is onnxruntime's element type of each type a data set holds.
var elementType = map[dataset.DType]ort.TensorElementDataType{
	dataset.Float32: ort.TensorElementDataTypeFloat,
	dataset.Float16: ort.TensorElementDataTypeFloat16,
	dataset.Int64:   ort.TensorElementDataTypeInt64,
	dataset.Int32:   ort.TensorElementDataTypeInt32,
	dataset.Int8:    ort.TensorElementDataTypeInt8,
	dataset.Uint8:   ort.TensorElementDataTypeUint8,
	dataset.Bool:    ort.TensorElementDataTypeBool,
}

func (s *Session) run(ins []ort.Value, fn func(outs []Output) error) error {
	vals := make([]ort.Value, len(s.outputs))
	if err := s.s.Run(ins, vals); err != nil {
		return fmt.Errorf("onnxruntime: %s", firstLine(err))
	}
	defer func() {
		for _, v := range vals {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	outs := make([]Output, len(vals))
	for i, v := range vals {
		data, shape, err := floats(v)
		if err != nil {
			return fmt.Errorf("output %q: %w", s.outputs[i], err)
		}
		outs[i] = Output{Name: s.outputs[i], Shape: shape, Data: data}
	}
	return fn(outs)
}

// floats returns the values of an output tensor as float32: the runtime's own memory for a
// float32 tensor, a converted copy for other numeric types.
func floats(v ort.Value) ([]float32, []int64, error) {
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		return t.GetData(), t.GetShape(), nil
	case *ort.Tensor[float64]:
		return convert(t.GetData()), t.GetShape(), nil
	case *ort.Tensor[int64]:
		return convert(t.GetData()), t.GetShape(), nil
	case *ort.Tensor[int32]:
		return convert(t.GetData()), t.GetShape(), nil
	case *ort.Tensor[int8]:
		return convert(t.GetData()), t.GetShape(), nil
	case *ort.Tensor[uint8]:
		return convert(t.GetData()), t.GetShape(), nil
	case *ort.Tensor[bool]:
		d := t.GetData()
		out := make([]float32, len(d))
		for i, b := range d {
			if b {
				out[i] = 1
			}
		}
		return out, t.GetShape(), nil
	case *ort.CustomDataTensor:
		if ort.TensorElementDataType(t.DataType()) == ort.TensorElementDataTypeFloat16 {
			d := t.GetData()
			out := make([]float32, len(d)/2)
			for i := range out {
				out[i] = dataset.Float16ToFloat32(binary.NativeEndian.Uint16(d[2*i:]))
			}
			return out, t.GetShape(), nil
		}
	}
	return nil, nil, errors.New("is not a tensor of numbers convpca reads (float32, float16, float64, int64, int32, int8, uint8, bool)")
}

func convert[T int64 | int32 | int8 | uint8 | float64](d []T) []float32 {
	out := make([]float32, len(d))
	for i, v := range d {
		out[i] = float32(v)
	}
	return out
}

// Close releases the session.
func (s *Session) Close() error { return s.s.Destroy() }

// Resolve returns the provider sessions of opts run on: CPU or CUDA (Auto resolves to CUDA
// where the CUDA provider can be appended with this library, else CPU).
func Resolve(opts RuntimeOptions) (Provider, error) {
	if opts.Provider == CPU || opts.Provider == CUDA {
		return opts.Provider, nil
	}
	if err := InitRuntime(opts.Library); err != nil {
		return "", err
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return "", fmt.Errorf("onnxruntime session options: %w", err)
	}
	defer so.Destroy()
	if appendCUDA(so) == nil {
		return CUDA, nil
	}
	return CPU, nil
}
