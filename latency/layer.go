package latency

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Layer describes one compressible layer by what its time depends on: no weights, no names.
type Layer struct {
	// Name is the node's label, for reports; it is not part of the cache key.
	Name string `json:"-"`
	// Op is "Conv", "Gemm" or "MatMul".
	Op string `json:"op"`
	// In and Out are the input and output channels (for Gemm and MatMul: K and N of the weight).
	In  int `json:"in"`
	Out int `json:"out"`
	// Kernel is the Conv's kernel shape (one entry per spatial axis); nil for Gemm and MatMul.
	Kernel []int `json:"kernel,omitempty"`
	// Strides, Pads (begins then ends, as in ONNX), Dilations and AutoPad are the Conv's
	// attributes; nil or "" means the ONNX default.
	Strides   []int  `json:"strides,omitempty"`
	Pads      []int  `json:"pads,omitempty"`
	Dilations []int  `json:"dilations,omitempty"`
	AutoPad   string `json:"auto_pad,omitempty"`
	// TransB is the Gemm's transB (weight stored N x K).
	TransB bool `json:"trans_b,omitempty"`
	// Bias says whether the layer adds a bias (Conv's third input, Gemm's C).
	Bias bool `json:"bias"`
	// Input is the shape of one sample of the layer's input, without the batch: C x spatial...
	// for a Conv (C = In), (..., K) for Gemm and MatMul (K = In; [K] for a 2-D input).
	Input []int `json:"input"`
	// Batch is the number of samples per run (0 means 1).
	Batch int `json:"batch"`
	// BlockedIn says that a 2-D Conv's input comes from a node onnxruntime's CPU provider runs
	// in its blocked NCHWc layout, BlockedOut that every node reading its output takes it in
	// that layout (FromNode reads both from the graph). Measure then times the layer with an
	// identity depthwise Conv on those sides (Options.Context), so that it meets the layout it
	// meets in the model.
	BlockedIn  bool `json:"blocked_in,omitempty"`
	BlockedOut bool `json:"blocked_out,omitempty"`
	// Sweep is how many bytes each run of the layer's programs reads first (then its input),
	// evicting its weights from the caches smaller than that: Pressure's answer, set by
	// FromNode's callers where the weights exceed a core's own cache (see pressure.go); 0 for
	// none.
	Sweep int64 `json:"sweep,omitempty"`
}

func (l Layer) batch() int { return max(l.Batch, 1) }

// dense reports whether the layer is a Gemm or MatMul.
func (l Layer) dense() bool { return l.Op == "Gemm" || l.Op == "MatMul" }

// Check says what is wrong with a layer description, or nil.
func (l Layer) Check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("layer %s: %s", l.label(), fmt.Sprintf(format, a...))
	}
	if l.In < 1 || l.Out < 1 || l.Batch < 0 {
		return bad("channels %d -> %d, batch %d", l.In, l.Out, l.Batch)
	}
	for _, d := range l.Input {
		if d < 1 {
			return bad("input shape %v", l.Input)
		}
	}
	switch l.Op {
	case "Conv":
		s := len(l.Kernel)
		if s < 1 || len(l.Input) != s+1 || l.Input[0] != l.In {
			return bad("Conv with kernel %v on input %v (want C x spatial with C = %d)", l.Kernel, l.Input, l.In)
		}
		for _, a := range []struct {
			name string
			v    []int
			n    int
		}{{"strides", l.Strides, s}, {"pads", l.Pads, 2 * s}, {"dilations", l.Dilations, s}} {
			if a.v != nil && len(a.v) != a.n {
				return bad("%s %v for %d spatial axes", a.name, a.v, s)
			}
		}
		switch l.AutoPad {
		case "", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID":
		default:
			return bad("auto_pad %q", l.AutoPad)
		}
		for _, d := range l.outSpatial() {
			if d < 1 {
				return bad("kernel %v does not fit input %v", l.Kernel, l.Input)
			}
		}
	case "Gemm", "MatMul":
		if len(l.Input) < 1 || l.Input[len(l.Input)-1] != l.In {
			return bad("%s on input %v (want ..., K with K = %d)", l.Op, l.Input, l.In)
		}
		if l.Op == "Gemm" && len(l.Input) != 1 {
			return bad("Gemm on a %d-D input", len(l.Input)+1)
		}
		if l.Op == "MatMul" && (l.Bias || l.TransB) {
			return bad("MatMul has no bias or transB")
		}
	default:
		return bad("op %q (want Conv, Gemm or MatMul)", l.Op)
	}
	return nil
}

func (l Layer) label() string {
	if l.Name != "" {
		return l.Name
	}
	return l.Op
}

// String describes the layer's shape, such as "Conv 32->64 k3x3 s2 in 32x28x28 b64" (with
// " cold" where it is timed with the caches swept).
func (l Layer) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d->%d", l.Op, l.In, l.Out)
	if len(l.Kernel) > 0 {
		b.WriteString(" k" + ints(l.Kernel, "x"))
	}
	if slices.ContainsFunc(l.Strides, func(v int) bool { return v != 1 }) {
		b.WriteString(" s" + ints(l.Strides, "x"))
	}
	if slices.ContainsFunc(l.Dilations, func(v int) bool { return v != 1 }) {
		b.WriteString(" d" + ints(l.Dilations, "x"))
	}
	b.WriteString(" in " + ints(l.Input, "x"))
	fmt.Fprintf(&b, " b%d", l.batch())
	if l.Sweep > 0 {
		b.WriteString(" cold") // timed with the caches swept (Sweep)
	}
	return b.String()
}

func ints(v []int, sep string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, sep)
}

func at(v []int, i, def int) int {
	if i < len(v) {
		return v[i]
	}
	return def
}

// outSpatial returns the Conv's output spatial shape (ONNX Conv arithmetic, auto_pad included).
func (l Layer) outSpatial() []int {
	s := len(l.Kernel)
	out := make([]int, s)
	for i := range s {
		in, k := l.Input[i+1], l.Kernel[i]
		st, d := at(l.Strides, i, 1), at(l.Dilations, i, 1)
		ext := (k-1)*d + 1
		switch l.AutoPad {
		case "SAME_UPPER", "SAME_LOWER":
			out[i] = (in + st - 1) / st
		case "VALID":
			out[i] = (in-ext)/st + 1
			if in < ext {
				out[i] = 0
			}
		default:
			p := in + at(l.Pads, i, 0) + at(l.Pads, i+s, 0) - ext
			out[i] = p/st + 1
			if p < 0 {
				out[i] = 0
			}
		}
	}
	return out
}

// positions returns the positions per sample at which the layer reads its input and writes its
// output: the spatial sizes of a Conv, the leading dimensions of a Gemm or MatMul.
func (l Layer) positions() (in, out int64) {
	prod := func(v []int) int64 {
		p := int64(1)
		for _, d := range v {
			p *= int64(d)
		}
		return p
	}
	if l.dense() {
		p := prod(l.Input[:len(l.Input)-1])
		return p, p
	}
	return prod(l.Input[1:]), prod(l.outSpatial())
}

// kernelSize is the number of kernel elements (1 for Gemm and MatMul).
func (l Layer) kernelSize() int64 {
	k := int64(1)
	for _, d := range l.Kernel {
		k *= int64(d)
	}
	return k
}

// inDims and outDims are the shapes of the layer's input and output with c channels, batch first.
func (l Layer) inDims(c int) []int64 {
	d := []int64{int64(l.batch())}
	if l.dense() {
		for _, v := range l.Input[:len(l.Input)-1] {
			d = append(d, int64(v))
		}
		return append(d, int64(c))
	}
	d = append(d, int64(c))
	for _, v := range l.Input[1:] {
		d = append(d, int64(v))
	}
	return d
}

func (l Layer) outDims(c int) []int64 {
	if l.dense() {
		return l.inDims(c)
	}
	d := []int64{int64(l.batch()), int64(c)}
	for _, v := range l.outSpatial() {
		d = append(d, int64(v))
	}
	return d
}

// MACs returns the multiply-adds of one run (the whole batch) of a candidate: input rank r and
// output rank k, 0 for a side left untouched (both 0: the original layer). It is the cost model
// of package rewrite times the batch.
func (l Layer) MACs(r, k int) int64 {
	pin, pout := l.positions()
	coreIn, coreOut := l.In, l.Out
	var m int64
	if r > 0 {
		m += pin * int64(r) * int64(l.In)
		coreIn = r
	}
	if k > 0 {
		m += pout * int64(l.Out) * int64(k)
		coreOut = k
	}
	m += pout * int64(coreOut) * int64(coreIn) * l.kernelSize()
	return m * int64(l.batch())
}
