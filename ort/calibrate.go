package ort

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
)

// Options control a pass of data through a model.
type Options struct {
	MaxSamples int // use at most this many samples; 0 means all
	Batch      int // samples per run; 0 means 64. A model with a fixed batch size imposes its own.
	Runtime    RuntimeOptions
	// ChannelsLast names the tensors Collect takes the channels of from their last axis (the
	// inputs and outputs of Gemm and MatMul layers, see rewrite.Targets), every other
	// position being a sample; others have them on axis 1.
	ChannelsLast map[string]bool
	// HostStats makes Collect copy each captured tensor out of onnxruntime and accumulate its
	// statistics on the host in float64 (gonum Dsyrk): exact sums of the float32 activations,
	// but 2-3x slower than the default, in which the capture model computes each batch's sums
	// itself in float32 (see gram.go). Models older than MinGramOpset always take this path.
	HostStats bool
	// Progress, when not nil, is called after each batch with the samples run so far and the
	// number the data holds (after MaxSamples).
	Progress func(done, total int)
}

// DefaultBatch is the batch size used when Options.Batch is 0.
const DefaultBatch = 64

// Input describes a run-time input of a model.
type Input struct {
	Name string
	Dims []int64 // declared shape; -1 for a dynamic or unknown dimension; nil when undeclared
	Elem onnxpb.TensorProto_DataType
	Type dataset.DType // the data type that feeds it; 0 when convpca cannot feed Elem
}

// ModelInput returns the model's one float32 run-time input, or an error when it has several
// or its element type is not float32: the input that data naming no input (.npy, .pb, IDX,
// images) feeds.
func ModelInput(m *onnxio.Model) (Input, error) {
	ins := ModelInputs(m)
	if len(ins) != 1 {
		return Input{}, fmt.Errorf("model has %d run-time inputs; convpca feeds exactly one from .npy, .pb, IDX or image data: give an .npz of one array per input (%s)", len(ins), describeInputs(ins))
	}
	if ins[0].Elem != onnxpb.TensorProto_FLOAT {
		return Input{}, fmt.Errorf("model input %q has element type %s; convpca feeds float32 from .npy, .pb, IDX or image data: give an .npz with an array %q of that type", ins[0].Name, ins[0].typeName(), ins[0].Name)
	}
	return ins[0], nil
}

func (in Input) String() string {
	if in.Dims == nil {
		return "any shape"
	}
	parts := make([]string, len(in.Dims))
	for i, d := range in.Dims {
		parts[i] = "?"
		if d > 0 {
			parts[i] = strconv.FormatInt(d, 10)
		}
	}
	return strings.Join(parts, "x")
}

// fit checks that samples of the given shape can be fed to the input and returns the batch
// size to use: the model's fixed batch size when it has one, else want.
func (in Input) fit(sample []int, want int) (int, error) {
	if in.Dims == nil {
		return want, nil
	}
	ok := len(in.Dims) == len(sample)+1
	for i := 0; ok && i < len(sample); i++ {
		if d := in.Dims[i+1]; d > 0 && int64(sample[i]) != d {
			ok = false
		}
	}
	if !ok {
		return 0, fmt.Errorf("data samples have shape %s but model input %q expects %s (batch first)", dimsString(sample), in.Name, in)
	}
	if in.Dims[0] > 0 {
		return int(in.Dims[0]), nil
	}
	return want, nil
}

func dimsString(d []int) string {
	parts := make([]string, len(d))
	for i, v := range d {
		parts[i] = strconv.Itoa(v)
	}
	return "[" + strings.Join(parts, "x") + "]"
}

// Batch is what Infer passes to its callback for each run: the index of the batch's first
// sample, the number of samples in it, the inputs and the outputs.
type Batch struct {
	First, N int
	// Input is the values of the model's input when the data feeds one float32 input (nil
	// otherwise); Inputs holds every input fed, in the order of the data's fields.
	Input   []float32
	Inputs  []Fed
	Outputs []Output
}

// Infer runs the data of r through the model, batch by batch, and calls fn with the values of
// the named tensors (the model's graph outputs when outputs is nil). Any tensor of the graph
// can be named. Data that names no input feeds the model's one float32 input; a
// dataset.FieldReader feeds each model input from its field of the same name (see planFeed).
// Samples holding NaN or Inf are refused. With a fixed model batch size, samples that do not
// fill a last batch are left out. It returns the number of samples run.
func Infer(m *onnxio.Model, r dataset.Reader, outputs []string, opts Options, fn func(b Batch) error) (int, error) {
	batch := opts.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	f, err := planFeed(m, r, batch)
	if err != nil {
		return 0, err
	}
	batch = f.batch
	if opts.MaxSamples > 0 {
		r = dataset.Limit(r, opts.MaxSamples)
	}
	if name := f.fixedBatch(); name != "" && r.Len() < batch {
		return 0, fmt.Errorf("model input %q has a fixed batch of %d but the data holds %d samples", name, batch, r.Len())
	}
	run := m
	if outputs != nil {
		run = m.Clone()
		run.Graph.SetOutputs(outputs, onnxpb.TensorProto_FLOAT)
	} else {
		outputs = m.Graph.Outputs()
	}
	data, err := run.Marshal()
	if err != nil {
		return 0, err
	}
	sess, err := NewSessionInputs(data, f.names(), outputs, opts.Runtime)
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	if !f.single {
		return inferFields(sess, f, r, opts, fn)
	}
	in := f.inputs[0]

	size := 1
	for _, d := range r.Shape() {
		size *= d
	}
	buf := make([]float32, batch*size)
	dims := make([]int64, 0, 1+len(r.Shape()))
	dims = append(dims, 0)
	for _, d := range r.Shape() {
		dims = append(dims, int64(d))
	}
	read := func(i int) (int, error) { return r.Read(buf[i*size:]) }
	return f.batches(r, opts, read, func(first, n int) error {
		x := buf[:n*size]
		if i := firstNonFinite(x); i >= 0 {
			return fmt.Errorf("data sample %d holds %v; calibration needs finite values", first+i/size, x[i])
		}
		dims[0] = int64(n)
		return sess.Run(x, dims, func(outs []Output) error {
			fed := []Fed{{Name: in.Name, Type: dataset.Float32, Shape: dims, Data: dataset.BytesOf(x)}}
			return fn(Batch{First: first, N: n, Input: x, Inputs: fed, Outputs: outs})
		})
	})
}

// batches is the loop of Infer over the data of r: read reads samples into the batch from its
// sample i on and returns how many it read, and run runs a batch of n samples whose first is
// sample first of the data. It stops when the data ends, or before a partial batch when the
// model's batch size is fixed, and returns the number of samples run; data of no samples is an
// error.
func (f *feed) batches(r dataset.Reader, opts Options, read func(i int) (int, error), run func(first, n int) error) (int, error) {
	done := 0
	for {
		n, err := fill(f.batch, read)
		if n == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return done, fmt.Errorf("read data: %w", err)
		}
		if n < f.batch && f.fixedBatch() != "" {
			break // a fixed batch size cannot take a partial batch
		}
		if err := run(done, n); err != nil {
			return done, err
		}
		done += n
		if opts.Progress != nil {
			opts.Progress(done, r.Len())
		}
	}
	if done == 0 {
		return 0, errors.New("data holds no samples")
	}
	return done, nil
}

// fill reads a batch of batch samples, calling read (see batches) until the batch is full or
// the data ends, and returns how many it read. An io.EOF after some samples is not an error.
func fill(batch int, read func(i int) (int, error)) (int, error) {
	total := 0
	for total < batch {
		n, err := read(total)
		total += n
		if err != nil {
			if total > 0 && err == io.EOF {
				return total, nil
			}
			return total, err
		}
		if n == 0 {
			break
		}
	}
	return total, nil
}

func firstNonFinite(x []float32) int {
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return i
		}
	}
	return -1
}

// Collect runs the data of r through the model and accumulates the channel statistics of each
// named tensor (each of rank 2 or more, channels in dimension 1). Memory does not grow with
// the number of samples. An error names the first tensor, in the order given, whose statistics
// became non-finite.
//
// Unless opts.HostStats, onnxruntime computes each batch's sums inside the graph (in float32,
// about a shift near the data; see gram.go) and only C + C² values per tensor and batch reach
// the host, which adds them up in float64.
func Collect(m *onnxio.Model, r dataset.Reader, tensors []string, opts Options) (*calib.Result, error) {
	if !opts.HostStats {
		gm, plans, err := gramModel(m, tensors, opts.ChannelsLast)
		if err == nil {
			return collectGram(m, gm, plans, r, opts)
		}
		if !errors.Is(err, errNoGram) {
			return nil, err
		}
	}
	return collectHost(m, r, tensors, opts)
}

// collectHost is Collect with the captured tensors copied out and accumulated by Stats.AddNCHW.
func collectHost(m *onnxio.Model, r dataset.Reader, tensors []string, opts Options) (*calib.Result, error) {
	// Graph inputs are taken from the fed data; onnxruntime returns the other tensors.
	want := map[string]bool{}
	var run []string
	for _, name := range tensors {
		want[name] = true
		if !m.Graph.IsGraphInput(name) {
			run = append(run, name)
		}
	}
	if len(run) == 0 {
		run = m.Graph.Outputs()
	}
	res := calib.NewResult()
	n, err := Infer(m, r, run, opts, func(b Batch) error {
		for _, o := range b.Outputs {
			if want[o.Name] {
				if err := res.Add(o.Name, o.Shape, o.Data); err != nil {
					return err
				}
			}
		}
		for _, in := range b.Inputs {
			if want[in.Name] {
				x := in.Floats()
				if x == nil {
					return fmt.Errorf("tensor %q is %v; statistics need float32", in.Name, in.Type)
				}
				if err := res.Add(in.Name, in.Shape, x); err != nil {
					return err
				}
			}
		}
		return checkFinite(res, m, tensors, b)
	})
	res.Samples = n
	if err != nil {
		return nil, err
	}
	for _, name := range tensors {
		if res.Stats[name] == nil {
			return nil, fmt.Errorf("tensor %q was not captured", name)
		}
	}
	return res, nil
}

// checkFinite returns an error naming the first tensor whose statistics became non-finite
// with batch b.
func checkFinite(res *calib.Result, m *onnxio.Model, tensors []string, b Batch) error {
	for _, name := range tensors {
		if s := res.Stats[name]; s != nil && !s.Finite() {
			who := ""
			if p := m.Graph.Producer(name); p != nil {
				who = fmt.Sprintf(" (output of %s %q)", p.Op, p.Label())
			} else if cs := m.Graph.Consumers(name); len(cs) > 0 {
				who = fmt.Sprintf(" (input of %s %q)", cs[0].Op, cs[0].Label())
			}
			return fmt.Errorf("statistics of tensor %q%s became non-finite at samples %d-%d: %w", name, who, b.First, b.First+b.N-1, calib.ErrNonFinite)
		}
	}
	return nil
}

// Accuracy returns the top-1 accuracy of a classifier over the data of r: the fraction of
// samples whose largest value in the model's first output (batch x classes) is at the index
// labels gives. labels must have at least as many entries as samples are run.
func Accuracy(m *onnxio.Model, r dataset.Reader, labels []int, opts Options) (float64, int, error) {
	right := 0
	n, err := Infer(m, r, nil, opts, func(b Batch) error {
		o := b.Outputs[0]
		if b.First+b.N > len(labels) {
			return fmt.Errorf("data has more samples than the %d labels", len(labels))
		}
		classes := len(o.Data) / b.N
		for i := 0; i < b.N; i++ {
			if Argmax(o.Data[i*classes:(i+1)*classes]) == labels[b.First+i] {
				right++
			}
		}
		return nil
	})
	if err != nil {
		return 0, n, err
	}
	return float64(right) / float64(n), n, nil
}

// Argmax returns the index of the largest value of x (the first of equal ones); 0 when x is
// empty.
func Argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
