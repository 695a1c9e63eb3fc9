package main

import (
	"fmt"
	"time"

	"github.com/convpca/convpca/latency"

	"github.com/convpca/convpca/ocr"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
)

// runner runs models in onnxruntime for package ocr: one session per model, opened on first
// use and kept until closed.
type runner struct {
	opts     ort.RuntimeOptions
	sessions map[string]*ort.Session
	// cached holds the outputs of the model named cache by input batch, so that EvalDet does
	// not run the original again for every compressed model.
	cache  string
	cached map[string]output
}

type output struct {
	data []float32
	dims []int64
}

func newRunner(opts ort.RuntimeOptions) *runner {
	return &runner{opts: opts, sessions: map[string]*ort.Session{}, cached: map[string]output{}}
}

// openSession opens a session of the model at path fed through its one float input and
// returning its first output.
func openSession(path string, opts ort.RuntimeOptions) (*ort.Session, error) {
	m, err := onnxio.Load(path)
	if err != nil {
		return nil, err
	}
	in, err := ort.ModelInput(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	outs := m.Graph.Outputs()
	if len(outs) == 0 {
		return nil, fmt.Errorf("%s has no outputs", path)
	}
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	return ort.NewSession(data, in.Name, outs[:1], opts)
}

func (r *runner) session(path string) (*ort.Session, error) {
	if s, ok := r.sessions[path]; ok {
		return s, nil
	}
	s, err := openSession(path, r.opts)
	if err != nil {
		return nil, err
	}
	r.sessions[path] = s
	return s, nil
}

// run is an ocr.Run.
func (r *runner) run(model string, x []float32, dims []int64) ([]float32, []int64, error) {
	key := ""
	if model == r.cache && len(x) > 0 {
		key = fmt.Sprintf("%p %v", &x[0], dims)
		if o, ok := r.cached[key]; ok {
			return o.data, o.dims, nil
		}
	}
	s, err := r.session(model)
	if err != nil {
		return nil, nil, err
	}
	var o output
	err = s.Run(x, dims, func(outs []ort.Output) error {
		o.data = append([]float32(nil), outs[0].Data...)
		o.dims = append([]int64(nil), outs[0].Shape...)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if key != "" {
		r.cached[key] = o
	}
	return o.data, o.dims, nil
}

func (r *runner) close(path string) {
	if s, ok := r.sessions[path]; ok {
		s.Close()
		delete(r.sessions, path)
	}
}

func (r *runner) closeAll() {
	for p := range r.sessions {
		r.close(p)
	}
	r.cached = map[string]output{}
}

// evalSet is a task's evaluation set, loaded once.
type evalSet struct {
	rec  *ocr.RecSet
	cls  *ocr.ClsSet
	det  *ocr.DetSet
	keys *ocr.Keys
}

func loadEvalSet(task, dir string, keys *ocr.Keys) (evalSet, error) {
	var (
		s   = evalSet{keys: keys}
		err error
	)
	switch task {
	case "rec":
		s.rec, err = ocr.LoadRecSet(dir)
	case "cls":
		s.cls, err = ocr.LoadClsSet(dir)
	case "det":
		s.det, err = ocr.LoadDetSet(dir)
	default:
		err = fmt.Errorf("unknown task %q", task)
	}
	return s, err
}

// input returns the set's inputs and one sample's shape.
func (s evalSet) input() ([]float32, []int) {
	switch {
	case s.rec != nil:
		return s.rec.X, []int{3, s.rec.Height, s.rec.Width}
	case s.cls != nil:
		return s.cls.X, []int{3, s.cls.Height, s.cls.Width}
	default:
		return s.det.X, []int{3, s.det.Height, s.det.Width}
	}
}

// metricNames are the task metrics of each task, in table order.
var metricNames = map[string][]string{
	"rec": {"chars right", "exact lines"},
	"cls": {"accuracy"},
	"det": {"pixel F1 vs original", "box recall"},
}

// evaluate scores model on the set; original is the uncompressed detector (det compares its
// maps with the original's; "" scores the original itself).
func (s evalSet) evaluate(r *runner, model, original string, batch int) ([]float64, error) {
	switch {
	case s.rec != nil:
		sc, err := ocr.EvalRec(r.run, model, s.keys, s.rec, batch)
		return []float64{sc.CharsRight, sc.ExactLines}, err
	case s.cls != nil:
		sc, err := ocr.EvalCls(r.run, model, s.cls, batch)
		return []float64{sc.Accuracy}, err
	default:
		if original == "" {
			sc, err := ocr.EvalDet(r.run, model, "", s.det, batch)
			return []float64{sc.F1, sc.OriginalRecall}, err
		}
		r.cache = original
		sc, err := ocr.EvalDet(r.run, original, model, s.det, batch)
		return []float64{sc.F1, sc.Recall}, err
	}
}

// latencies times each model (paths[0] the original) at each batch size on the first samples
// of x (repeated when there are fewer), in sessions of opts: warmup runs each, then runs
// rounds in which every model runs once, in an order that rotates by one each round, so that
// load drift on a shared machine falls on all models alike. A model that cannot be opened or
// run gets an error and no latencies.
func latencies(paths []string, x []float32, shape []int, batches []int, warmup, runs int, opts ort.RuntimeOptions, logf func(string, ...any)) (map[string][]Latency, map[string]error) {
	lat := map[string][]Latency{}
	errs := map[string]error{}
	sessions := make([]*ort.Session, len(paths))
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.Close()
			}
		}
	}()
	for i, p := range paths {
		s, err := openSession(p, opts)
		if err != nil {
			errs[p] = err
			continue
		}
		sessions[i] = s
	}
	per := 1
	for _, d := range shape {
		per *= d
	}
	n := len(x) / per
	for _, bs := range batches {
		in := make([]float32, bs*per)
		for i := range bs {
			j := i % max(n, 1)
			if n > 0 {
				copy(in[i*per:(i+1)*per], x[j*per:(j+1)*per])
			}
		}
		dims := []int64{int64(bs)}
		for _, d := range shape {
			dims = append(dims, int64(d))
		}
		once := func(i int) (float64, error) {
			t0 := time.Now()
			err := sessions[i].Run(in, dims, func([]ort.Output) error { return nil })
			return float64(time.Since(t0).Nanoseconds()) / 1e6, err
		}
		ms := make([][]float64, len(paths))
		live := func(i int) bool { return sessions[i] != nil && errs[paths[i]] == nil }
		for i := range paths {
			for range warmup {
				if !live(i) {
					break
				}
				if _, err := once(i); err != nil {
					errs[paths[i]] = err
				}
			}
		}
		t0 := time.Now()
		for round := range runs {
			for k := range paths {
				i := (round + k) % len(paths)
				if !live(i) {
					continue
				}
				t, err := once(i)
				if err != nil {
					errs[paths[i]] = err
					continue
				}
				ms[i] = append(ms[i], t)
			}
		}
		logf("latency batch %d: %d models x %d runs in %.1f s", bs, len(paths), runs, time.Since(t0).Seconds())
		var base float64
		for i, p := range paths {
			if !live(i) || len(ms[i]) == 0 {
				continue
			}
			med, p90 := latency.Median(ms[i]), latency.P90(ms[i])
			if i == 0 {
				base = med
			}
			l := Latency{Batch: bs, MedianMS: med, P90MS: p90}
			if base > 0 {
				l.SpeedUp = base / med
			}
			lat[p] = append(lat[p], l)
		}
	}
	for p := range errs {
		delete(lat, p)
	}
	return lat, errs
}
