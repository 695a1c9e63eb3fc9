package ort

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
)

// In-graph statistics. For a captured tensor T of shape N x C x spatial... (P positions per
// sample, so K = N·P vectors x of C channels), the capture model computes in float32
//
//	X = reshape(T, [N, C, P])
//	s = mean of X[0] over its positions  (C x 1: a shift near the data, from the batch's first sample)
//	D = X − s
//	d = Σ_{n,p} D[n,:,p]                  (C: Σ (x − s))
//	G = Σ_n D[n] D[n]ᵀ                    (C x C: Σ (x − s)(x − s)ᵀ)
//
// and the host adds them to Stats in float64 (Stats.AddShifted): Sum += K s + d and
// Outer += G + s dᵀ + d sᵀ + K s sᵀ. Centring before the products keeps the float32 sums of the
// order of the spread of the data, not of its mean squared: data of mean 100 and standard
// deviation 1 loses no more than data of mean 0.
//
// G is a batched MatMul (one C x P by P x C product per sample, summed) when C ≤ gramBatchedMax,
// which in CNNs comes with many positions; otherwise one C x K by K x C Gemm per block row of
// the upper triangle (see blocks), after a transpose to C x K.
//
// Only C + C² numbers per tensor and batch leave onnxruntime, instead of the tensor itself;
// the products run in onnxruntime's sgemm, on the session's provider (CPU or CUDA: all the
// nodes are standard ONNX).
//
// A tensor read only by a LeakyRelu of slope 0 < α < 1 (a Conv's output, typically, whose
// LeakyRelu output is captured too) is taken from the LeakyRelu's output y as
// LeakyRelu(y, 1/α), its inverse up to one rounding of the negative values. The Conv's output
// then has no reader but the LeakyRelu, so onnxruntime still fuses the two (and keeps them in
// its blocked NCHWc layout), and the model runs almost as it does without capture.
//
// The nodes of each tensor's statistics are placed so that onnxruntime runs them right after
// the tensor is made (see gramModel): the tensors are freed early and peak memory stays near
// that of plain inference.
//
// Float32 bounds what the statistics can hold: |x − s| must stay below about 1.8e19, or the
// products overflow and Collect reports the statistics non-finite (HostStats takes values up
// to 1e154).

// MinGramOpset is the lowest opset for which Collect computes statistics inside the graph (the
// first with numpy-style broadcasting of Sub); older models are accumulated on the host, as
// with Options.HostStats. The nodes take the form each opset wants: Slice with attributes
// before opset 10, Gemm with an explicit C before 11, reduction axes as attributes before 13
// (ReduceSum) and 18 (ReduceMean).
const MinGramOpset = 7

// errNoGram says the model cannot take the in-graph statistics nodes.
var errNoGram = errors.New("in-graph statistics need opset 7 or later")

// gramBatchedMax is the largest channel count whose Gram is a batched MatMul.
const gramBatchedMax = 64

// gramBlockRows is the number of rows of G one Gemm computes for tensors of many channels:
// block row i holds rows [lo, hi) and columns [lo, C) of G, so that about half of the
// symmetric G is computed instead of all of it (5/8 of it with 4 block rows).
const gramBlockRows = 64

// gramPlan names the outputs of the capture model for one captured tensor.
type gramPlan struct {
	name   string // the captured tensor
	c      int    // its channels, when the model tells them; 0 when unknown
	last   bool   // channels on the last axis (Gemm and MatMul), not axis 1
	shape  string // output: Shape(T) as float32
	shift  string // output: s (C)
	sum    string // output: d (C)
	blocks []gramBlock
}

// gramBlock is the output holding rows [lo, hi) and columns [lo, C) of G; hi == 0 means all
// of G.
type gramBlock struct {
	lo, hi int
	out    string
}

// blocks splits c channels into block rows of G.
func blocks(c int) [][2]int {
	if c <= 2*gramBlockRows {
		return [][2]int{{0, 0}}
	}
	n := (c + gramBlockRows - 1) / gramBlockRows
	out := make([][2]int, n)
	for i := range out {
		out[i] = [2]int{i * c / n, (i + 1) * c / n}
	}
	return out
}

// gramModel returns a copy of m whose graph outputs are the statistics of the named tensors
// (see gramPlan), and the plans in the order of tensors. Nodes that no output needs are
// removed. It returns errNoGram for models older than MinGramOpset.
func gramModel(m *onnxio.Model, tensors []string, last map[string]bool) (*onnxio.Model, []gramPlan, error) {
	opset := m.Opset()
	if opset < MinGramOpset {
		return nil, nil, errNoGram
	}
	g := m.Clone()
	b := newBuilder(g.Graph, opset)
	for _, t := range tensors {
		if !b.defined(t) {
			return nil, nil, fmt.Errorf("model has no tensor %q", t)
		}
	}
	// N x C x P views, shared by a tensor and the one inverted from it. A tensor whose
	// channels are its last axis (..., C) is viewed as M x C x 1, every other position a sample.
	ncp := map[string]string{}
	view := func(t string, last bool, c int) string {
		if _, ok := ncp[t]; !ok {
			shape := b.ints(t+"/ncp", 0, 0, -1)
			if last {
				shape = b.ints(t+"/mc1", -1, int64(c), 1)
			}
			ncp[t] = b.node("Reshape", []string{t, shape}, t+"/ncp")
		}
		return ncp[t]
	}
	var plans []gramPlan
	var outs []string
	var segments [][]*onnxio.Node // the nodes of each tensor's statistics
	seen := map[string]bool{}
	for _, t := range tensors {
		if seen[t] {
			continue
		}
		seen[t] = true
		start := len(b.nodes)
		c := channels(m.Graph, t)
		p := gramPlan{name: t, c: c, last: last[t]}
		if p.last {
			if p.c = lastChannels(m.Graph, t); p.c == 0 {
				return nil, nil, fmt.Errorf("tensor %q: channels on the last axis, but no constant weight tells how many", t)
			}
		}
		var x string // N x C x P
		if y, alpha, ok := leakyReluOf(m.Graph, t); ok {
			x = b.node("LeakyRelu", []string{view(y, p.last, p.c)}, t+"/inverse", floatAttr("alpha", 1/alpha))
			p.shape = b.node("Cast", []string{b.node("Shape", []string{y}, t+"/shape")}, t+"/shape_f", onnxio.IntAttr("to", int64(onnxpb.TensorProto_FLOAT)))
		} else {
			x = view(t, p.last, p.c)
			p.shape = b.node("Cast", []string{b.node("Shape", []string{t}, t+"/shape")}, t+"/shape_f", onnxio.IntAttr("to", int64(onnxpb.TensorProto_FLOAT)))
		}
		// The first sample by Gather (C x P), not Slice: onnxruntime mis-plans a Slice-10
		// output's buffer here. Its mean over positions (C x 1) broadcasts against N x C x P.
		first := b.node("Gather", []string{x, b.scalar(t+"/first_index", 0)}, t+"/first", onnxio.IntAttr("axis", 0))
		p.shift = b.reduce("ReduceMean", first, t+"/shift", true, 1)
		d := b.node("Sub", []string{x, p.shift}, t+"/centred")
		p.sum = b.reduce("ReduceSum", d, t+"/sum", false, 0, 2)
		if c = p.c; c > 0 && c <= gramBatchedMax {
			dt := b.node("Transpose", []string{d}, t+"/centred_t", onnxio.IntsAttr("perm", []int64{0, 2, 1}))
			gn := b.node("MatMul", []string{d, dt}, t+"/gram_n")
			p.blocks = []gramBlock{{out: b.reduce("ReduceSum", gn, t+"/gram", false, 0)}}
		} else {
			ck := b.node("Reshape", []string{
				b.node("Transpose", []string{d}, t+"/cnp", onnxio.IntsAttr("perm", []int64{1, 0, 2})),
				b.ints(t+"/ck", 0, -1),
			}, t+"/ck")
			for _, bl := range blocks(c) {
				lo, hi := bl[0], bl[1]
				rows, cols := ck, ck
				if hi > 0 {
					rows = b.slice(ck, lo, hi, 0, fmt.Sprintf("%s/rows%d", t, lo))
					if lo > 0 {
						cols = b.slice(ck, lo, c, 0, fmt.Sprintf("%s/from%d", t, lo))
					}
				}
				out := b.gemmT(rows, cols, fmt.Sprintf("%s/gram%d", t, lo))
				p.blocks = append(p.blocks, gramBlock{lo: lo, hi: hi, out: out})
			}
		}
		plans = append(plans, p)
		outs = append(outs, p.shape, p.shift, p.sum)
		for _, bl := range p.blocks {
			outs = append(outs, bl.out)
		}
		segments = append(segments, b.nodes[start:])
	}
	// The statistics of the last tensor first: onnxruntime orders execution by a depth-first
	// walk from the graph's leaf nodes, the last leaf first, so the first tensor's statistics
	// run as soon as it exists and each tensor is freed early, instead of all of them living
	// until the end.
	for i := len(segments) - 1; i >= 0; i-- {
		g.Graph.Nodes = append(g.Graph.Nodes, segments[i]...)
	}
	if err := g.Graph.Toposort(); err != nil {
		return nil, nil, err
	}
	g.Graph.SetOutputs(outs, onnxpb.TensorProto_FLOAT)
	g.Graph.Cleanup()
	return g, plans, nil
}

// leakyReluOf reports whether tensor t is read only by a LeakyRelu of slope 0 < α < 1 and is
// neither a graph input nor a graph output, and returns the LeakyRelu's output and slope.
func leakyReluOf(g *onnxio.Graph, t string) (y string, alpha float32, ok bool) {
	users := g.Consumers(t)
	if len(users) != 1 || g.IsGraphInput(t) {
		return "", 0, false
	}
	for _, o := range g.Outputs() {
		if o == t {
			return "", 0, false
		}
	}
	l := users[0]
	if l.Op != "LeakyRelu" || (l.Domain != "" && l.Domain != "ai.onnx") || len(l.Inputs) != 1 || len(l.Outputs) != 1 {
		return "", 0, false
	}
	alpha = 0.01 // the ONNX default
	if a := l.Attr("alpha"); a != nil {
		alpha = a.GetF()
	}
	if !(alpha > 0 && alpha < 1) {
		return "", 0, false
	}
	return l.Outputs[0], alpha, true
}

// channels returns dimension 1 of tensor t as the model declares it or as a Conv's weight
// implies it (a Conv's output has as many channels as its weight has rows, its input
// group × the weight's columns); 0 when unknown.
func channels(g *onnxio.Graph, t string) int {
	if vi := g.ValueInfo(t); vi != nil {
		if dims, ok := onnxio.Shape(vi); ok && len(dims) >= 2 && dims[1] > 0 {
			return int(dims[1])
		}
	}
	weight := func(n *onnxio.Node) []int64 {
		if n.Op != "Conv" || len(n.Inputs) < 2 {
			return nil
		}
		if w := g.Initializer(n.Inputs[1]); w != nil && len(w.Dims) >= 3 {
			return w.Dims
		}
		return nil
	}
	if p := g.Producer(t); p != nil {
		if w := weight(p); w != nil && p.Outputs[0] == t {
			return int(w[0])
		}
	}
	for _, n := range g.Consumers(t) {
		if w := weight(n); w != nil && n.Inputs[0] == t {
			return int(w[1] * n.AttrInt("group", 1))
		}
	}
	return 0
}

// lastChannels returns the channels of tensor t on its last axis, as the constant weight of
// a Gemm or MatMul that reads or writes it implies (K of a K x N weight for its input, N for
// its output; transposed with Gemm's transB); 0 when none does.
func lastChannels(g *onnxio.Graph, t string) int {
	dims := func(n *onnxio.Node) (k, nn int64, ok bool) {
		if (n.Op != "MatMul" && n.Op != "Gemm") || len(n.Inputs) < 2 {
			return 0, 0, false
		}
		w := g.Initializer(n.Inputs[1])
		if w == nil || len(w.Dims) != 2 {
			return 0, 0, false
		}
		if n.Op == "Gemm" && n.AttrInt("transB", 0) != 0 {
			return w.Dims[1], w.Dims[0], true
		}
		return w.Dims[0], w.Dims[1], true
	}
	if p := g.Producer(t); p != nil {
		if _, n, ok := dims(p); ok && p.Outputs[0] == t {
			return int(n)
		}
	}
	for _, n := range g.Consumers(t) {
		if k, _, ok := dims(n); ok && n.Inputs[0] == t {
			return int(k)
		}
	}
	return 0
}

// builder makes nodes with fresh names (prefix "convpca/") for a graph; they are kept in nodes
// until the caller adds them to the graph.
type builder struct {
	g     *onnxio.Graph
	opset int64
	used  map[string]bool // names in use: the graph's and those given out
	nodes []*onnxio.Node
	zero  string // a float zero of shape [1], once made (gemmT)
}

func newBuilder(g *onnxio.Graph, opset int64) *builder {
	b := &builder{g: g, opset: opset, used: map[string]bool{}}
	for _, n := range g.Nodes {
		b.used[n.Name] = true
		for _, s := range append(append([]string(nil), n.Inputs...), n.Outputs...) {
			b.used[s] = true
		}
	}
	for _, t := range g.Initializers() {
		b.used[t.GetName()] = true
	}
	for _, vi := range g.Inputs() {
		b.used[vi.GetName()] = true
	}
	for _, o := range g.Outputs() {
		b.used[o] = true
	}
	return b
}

// fresh returns "convpca/"+name, or it with the smallest suffix "_N", that names nothing yet.
func (b *builder) fresh(name string) string {
	prefix := "convpca/" + name
	s := prefix
	for i := 1; b.used[s] || b.g.ValueInfo(s) != nil; i++ {
		s = prefix + "_" + strconv.Itoa(i)
	}
	b.used[s] = true
	return s
}

func (b *builder) defined(t string) bool {
	return b.g.IsGraphInput(t) || b.g.Producer(t) != nil || b.g.Initializer(t) != nil
}

// node makes a node of one output, named like the output, and returns the output's name.
func (b *builder) node(op string, in []string, name string, attrs ...*onnxpb.AttributeProto) string {
	out := b.fresh(name)
	b.nodes = append(b.nodes, &onnxio.Node{Name: out, Op: op, Inputs: in, Outputs: []string{out}, Attrs: attrs})
	return out
}

// ints adds an INT64 vector constant and returns its name.
func (b *builder) ints(name string, v ...int64) string {
	n := b.fresh(name + "/const")
	b.g.SetInitializer(&onnxpb.TensorProto{
		Name:      proto.String(n),
		DataType:  proto.Int32(int32(onnxpb.TensorProto_INT64)),
		Dims:      []int64{int64(len(v))},
		Int64Data: v,
	})
	return n
}

// scalar adds an INT64 scalar constant and returns its name.
func (b *builder) scalar(name string, v int64) string {
	n := b.fresh(name + "/const")
	b.g.SetInitializer(&onnxpb.TensorProto{
		Name:      proto.String(n),
		DataType:  proto.Int32(int32(onnxpb.TensorProto_INT64)),
		Int64Data: []int64{v},
	})
	return n
}

// reduce adds a reduction of x over the given axes, in the form the opset wants.
func (b *builder) reduce(op, x, name string, keep bool, axes ...int64) string {
	k := onnxio.IntAttr("keepdims", 0)
	if keep {
		k = onnxio.IntAttr("keepdims", 1)
	}
	if (op == "ReduceSum" && b.opset >= 13) || b.opset >= 18 {
		return b.node(op, []string{x, b.ints(name+"/axes", axes...)}, name, k)
	}
	return b.node(op, []string{x}, name, onnxio.IntsAttr("axes", axes), k)
}

// slice adds the part [lo, hi) of x along axis.
func (b *builder) slice(x string, lo, hi, axis int, name string) string {
	if b.opset < 10 {
		return b.node("Slice", []string{x}, name, onnxio.IntsAttr("starts", []int64{int64(lo)}),
			onnxio.IntsAttr("ends", []int64{int64(hi)}), onnxio.IntsAttr("axes", []int64{int64(axis)}))
	}
	return b.node("Slice", []string{x, b.ints(name+"/starts", int64(lo)), b.ints(name+"/ends", int64(hi)), b.ints(name+"/axes", int64(axis))}, name)
}

// gemmT adds the product x yᵀ of two matrices; before opset 11 Gemm's C is required and is a
// zero scalar.
func (b *builder) gemmT(x, y, name string) string {
	in := []string{x, y}
	if b.opset < 11 {
		if b.zero == "" {
			b.zero = b.fresh("zero")
			b.g.SetInitializer(onnxio.FloatTensor(b.zero, []int64{1}, []float32{0}))
		}
		in = append(in, b.zero)
	}
	return b.node("Gemm", in, name, onnxio.IntAttr("transB", 1))
}

func floatAttr(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

// collectGram is Collect through the capture model gm that gramModel made of m.
func collectGram(m, gm *onnxio.Model, plans []gramPlan, r dataset.Reader, opts Options) (*calib.Result, error) {
	res := calib.NewResult()
	tensors := make([]string, len(plans))
	for i, p := range plans {
		tensors[i] = p.name
	}
	var c, d, g []float64 // float64 scratch
	n, err := Infer(gm, r, nil, opts, func(b Batch) error {
		outs := b.Outputs
		for _, p := range plans {
			shape := outs[0].Data
			if len(shape) < 2 {
				return fmt.Errorf("tensor %q has shape %v; want batch x channels x ...", p.name, shape)
			}
			dims := make([]int64, len(shape))
			for i, v := range shape {
				dims[i] = int64(v)
			}
			count, ch := dims[0], int(dims[1])
			for _, v := range dims[2:] {
				count *= v
			}
			if p.last {
				count, ch = count*dims[1]/dims[len(dims)-1], int(dims[len(dims)-1])
			}
			s := res.Stats[p.name]
			if s == nil {
				s = calib.NewStats(ch)
				res.Stats[p.name] = s
				res.Shapes[p.name] = dims[1:]
			}
			if s.Dim != ch {
				return fmt.Errorf("tensor %q changed from %d to %d channels between batches", p.name, s.Dim, ch)
			}
			if p.c > 0 && p.c != ch {
				return fmt.Errorf("tensor %q has %d channels where the model declares %d", p.name, ch, p.c)
			}
			c, d = widen(c, outs[1].Data), widen(d, outs[2].Data)
			if len(c) != ch || len(d) != ch {
				panic(fmt.Sprintf("calib: tensor %q: %d shifts and %d sums for %d channels", p.name, len(c), len(d), ch))
			}
			if cap(g) < ch*ch {
				g = make([]float64, ch*ch)
			}
			g = g[:ch*ch]
			for k, bl := range p.blocks {
				blk := outs[3+k].Data
				lo, hi := bl.lo, bl.hi
				if hi == 0 {
					hi = ch
				}
				w := ch - lo
				if len(blk) != (hi-lo)*w {
					panic(fmt.Sprintf("calib: tensor %q: Gram block of %d values for rows %d-%d of %d", p.name, len(blk), lo, hi, ch))
				}
				for i := lo; i < hi; i++ {
					row := blk[(i-lo)*w : (i-lo+1)*w]
					dst := g[i*ch+lo : (i+1)*ch]
					for j, v := range row {
						dst[j] = float64(v)
					}
				}
			}
			s.AddShifted(count, c, d, g)
			outs = outs[3+len(p.blocks):]
		}
		return checkFinite(res, m, tensors, b)
	})
	res.Samples = n
	if err != nil {
		return nil, err
	}
	return res, nil
}

// widen returns x as float64, in buf when it is large enough.
func widen(buf []float64, x []float32) []float64 {
	if cap(buf) < len(x) {
		buf = make([]float64, len(x))
	}
	buf = buf[:len(x)]
	for i, v := range x {
		buf[i] = float64(v)
	}
	return buf
}
