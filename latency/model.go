package latency

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
)

// Program is one model a Runner times: a serialized ONNX model with one float input.
type Program struct {
	Name    string   // what it is, for messages: "original", "both r=16 k=32", "down r=16"...
	Model   []byte   // serialized ModelProto
	Input   string   // its graph input
	Dims    []int64  // the input's shape, batch first
	Outputs []string // the outputs it computes
	MACs    int64    // multiply-adds of one run
	Sweep   int64    // bytes read before each run, then the input (Layer.Sweep); 0: none
}

// part says which model of a layer a program is: a whole candidate (chain) or one node of it.
type part int

const (
	chain part = iota // down (r > 0), core, up (k > 0); (0, 0) is the original layer
	down              // the 1x1 down alone: in -> r
	core              // the core alone: r (in when 0) -> k (out when 0)
	up                // the 1x1 up alone: k -> out
)

func (p part) String() string { return [...]string{"chain", "down", "core", "up"}[p] }

// spec names one program of a layer: a part at ranks r, k (0: that side untouched).
type spec struct {
	Part part
	R, K int
}

func (s spec) String() string {
	switch s.Part {
	case down:
		return fmt.Sprintf("down r=%d", s.R)
	case up:
		return fmt.Sprintf("up k=%d", s.K)
	case core:
		return fmt.Sprintf("core r=%d k=%d", s.R, s.K)
	}
	switch {
	case s.R == 0 && s.K == 0:
		return "original"
	case s.K == 0:
		return fmt.Sprintf("input r=%d", s.R)
	case s.R == 0:
		return fmt.Sprintf("output k=%d", s.K)
	}
	return fmt.Sprintf("both r=%d k=%d", s.R, s.K)
}

// macs is the multiply-adds of one run of the spec's program.
func (s spec) macs(l Layer) int64 {
	pin, pout := l.positions()
	b := int64(l.batch())
	switch s.Part {
	case down:
		return b * pin * int64(s.R) * int64(l.In)
	case up:
		return b * pout * int64(l.Out) * int64(s.K)
	case core:
		return b * pout * int64(nz(s.R, l.In)) * int64(nz(s.K, l.Out)) * l.kernelSize()
	}
	return l.MACs(s.R, s.K)
}

// nz returns v, or def when v is 0.
func nz(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// weightFunc returns the weights of one node of a program in Conv layout: out x (in·kernel),
// row-major; for a bias (role ending in "bias") a vector of out values (in and kernel are 1).
type weightFunc func(role string, out, in int, kernel int64) []float32

// randomWeights fills every weight with normal numbers of variance 1/(in·kernel), the same for
// the same role and shape (the values do not change the time; they only keep outputs finite).
func randomWeights(role string, out, in int, kernel int64) []float32 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s %d %d %d", role, out, in, kernel)
	rng := rand.New(rand.NewPCG(h.Sum64(), 1))
	n := int64(out) * int64(in) * kernel
	scale := 1 / math.Sqrt(float64(int64(in)*kernel))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * scale)
	}
	return w
}

// build returns the program of spec s of layer l, with weights from wf (nil: random). With
// block > 0, the program is set in context (see context).
func build(l Layer, s spec, wf weightFunc, block int) (Program, error) {
	if err := l.Check(); err != nil {
		return Program{}, err
	}
	if s.R < 0 || s.R > l.In || s.K < 0 || s.K > l.Out || (s.Part == down && s.R == 0) || (s.Part == up && s.K == 0) {
		return Program{}, fmt.Errorf("latency: %s of %s: ranks out of range", s, l)
	}
	if wf == nil {
		wf = randomWeights
	}
	b := &builder{l: l, wf: wf, g: &onnxpb.GraphProto{Name: proto.String("latency")}}
	var x, y string
	var inC, outC int
	switch s.Part {
	case down:
		inC, outC = l.In, s.R
		x, y = "x", "y"
		b.pointwise("down", x, y, l.In, s.R, false)
	case up:
		inC, outC = s.K, l.Out
		x, y = "x", "y"
		b.pointwise("up", x, y, s.K, l.Out, true)
	case core:
		inC, outC = nz(s.R, l.In), nz(s.K, l.Out)
		x, y = "x", "y"
		b.core(x, y, inC, outC, s.K == 0 && l.Bias)
	default:
		inC, outC = l.In, l.Out
		x, y = "x", "y"
		if s.R == 0 && s.K == 0 {
			b.original(x, y)
			break
		}
		coreIn, coreOut := x, y
		if s.R > 0 {
			coreIn = "x_down"
			b.pointwise("down", x, coreIn, l.In, s.R, false)
		}
		if s.K > 0 {
			coreOut = "y_core"
		}
		b.core(coreIn, coreOut, nz(s.R, l.In), nz(s.K, l.Out), s.K == 0 && l.Bias)
		if s.K > 0 {
			b.pointwise("up", coreOut, y, s.K, l.Out, true)
		}
	}
	outerIn := s.Part == chain || s.Part == down || s.Part == core && s.R == 0
	outerOut := s.Part == chain || s.Part == up || s.Part == core && s.K == 0
	x, y = b.context(x, y, inC, outC, block, outerIn, outerOut)
	dims := l.inDims(inC)
	if s.Part == up {
		dims = l.outDims(inC)
	}
	b.g.Input = []*onnxpb.ValueInfoProto{onnxio.TensorInfo(x, onnxpb.TensorProto_FLOAT, dims)}
	outDims := l.outDims(outC)
	if s.Part == down {
		outDims = l.inDims(outC)
	}
	b.g.Output = []*onnxpb.ValueInfoProto{onnxio.TensorInfo(y, onnxpb.TensorProto_FLOAT, outDims)}
	m := &onnxpb.ModelProto{
		IrVersion:    proto.Int64(8),
		ProducerName: proto.String("convpca latency"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph:        b.g,
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return Program{}, fmt.Errorf("latency: marshal %s: %w", s, err)
	}
	return Program{Name: s.String(), Model: data, Input: x, Dims: dims, Outputs: []string{y}, MACs: s.macs(l), Sweep: l.Sweep}, nil
}

type builder struct {
	l  Layer
	wf weightFunc
	g  *onnxpb.GraphProto
}

// init adds an initializer of the given dims.
func (b *builder) init(name string, dims []int64, v []float32) string {
	b.g.Initializer = append(b.g.Initializer, onnxio.FloatTensor(name, dims, v))
	return name
}

func (b *builder) node(op, name string, in []string, out string, attrs ...*onnxpb.AttributeProto) {
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{
		Name: proto.String(name), OpType: proto.String(op), Input: in, Output: []string{out}, Attribute: attrs,
	})
}

// transpose returns the cols x rows transpose of a rows x cols row-major matrix.
func transpose(w []float32, rows, cols int) []float32 {
	t := make([]float32, len(w))
	for i := range rows {
		for j := range cols {
			t[j*rows+i] = w[i*cols+j]
		}
	}
	return t
}

// dense adds out = x·Wᵀ (+ bias) for W out x in: a Gemm with transB = 1 on a 2-D input, as
// package rewrite writes factors, else a MatMul by Wᵀ and an Add.
func (b *builder) dense(role, x, y string, in, out int, bias bool) {
	w := b.wf(role, out, in, 1)
	if len(b.l.Input) == 1 {
		inputs := []string{x, b.init(role+"_W", []int64{int64(out), int64(in)}, w)}
		if bias {
			inputs = append(inputs, b.init(role+"_B", []int64{int64(out)}, b.wf(role+"_bias", out, 1, 1)))
		}
		b.node("Gemm", role, inputs, y, onnxio.IntAttr("transB", 1))
		return
	}
	mm := y
	if bias {
		mm = y + "_mm"
	}
	b.node("MatMul", role, []string{x, b.init(role+"_W", []int64{int64(in), int64(out)}, transpose(w, out, in))}, mm)
	if bias {
		b.node("Add", role+"_add", []string{mm, b.init(role+"_B", []int64{int64(out)}, b.wf(role+"_bias", out, 1, 1))}, y)
	}
}

func (b *builder) convWeight(role string, out, in int, kernel []int) string {
	dims := []int64{int64(out), int64(in)}
	for _, k := range kernel {
		dims = append(dims, int64(k))
	}
	return b.init(role+"_W", dims, b.wf(role, out, in, kernelSize(kernel)))
}

func kernelSize(kernel []int) int64 {
	k := int64(1)
	for _, d := range kernel {
		k *= int64(d)
	}
	return k
}

// pointwise adds a 1x1 Conv (a dense layer for Gemm and MatMul) from in to out channels.
func (b *builder) pointwise(role, x, y string, in, out int, bias bool) {
	if b.l.dense() {
		b.dense(role, x, y, in, out, bias)
		return
	}
	ones := make([]int, len(b.l.Kernel))
	for i := range ones {
		ones[i] = 1
	}
	inputs := []string{x, b.convWeight(role, out, in, ones)}
	if bias {
		inputs = append(inputs, b.init(role+"_B", []int64{int64(out)}, b.wf(role+"_bias", out, 1, 1)))
	}
	b.node("Conv", role, inputs, y, onnxio.IntsAttr("kernel_shape", int64s(ones)))
}

// core adds the core from in to out channels with the layer's kernel and attributes.
func (b *builder) core(x, y string, in, out int, bias bool) {
	if b.l.dense() {
		b.dense("core", x, y, in, out, bias)
		return
	}
	inputs := []string{x, b.convWeight("core", out, in, b.l.Kernel)}
	if bias {
		inputs = append(inputs, b.init("core_B", []int64{int64(out)}, b.wf("core_bias", out, 1, 1)))
	}
	b.node("Conv", "core", inputs, y, b.convAttrs()...)
}

func (b *builder) convAttrs() []*onnxpb.AttributeProto {
	l := b.l
	attrs := []*onnxpb.AttributeProto{onnxio.IntsAttr("kernel_shape", int64s(l.Kernel))}
	if l.Strides != nil {
		attrs = append(attrs, onnxio.IntsAttr("strides", int64s(l.Strides)))
	}
	if l.Dilations != nil {
		attrs = append(attrs, onnxio.IntsAttr("dilations", int64s(l.Dilations)))
	}
	if l.AutoPad != "" && l.AutoPad != "NOTSET" {
		attrs = append(attrs, &onnxpb.AttributeProto{Name: proto.String("auto_pad"), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(l.AutoPad)})
	} else if l.Pads != nil {
		attrs = append(attrs, onnxio.IntsAttr("pads", int64s(l.Pads)))
	}
	return attrs
}

// original adds the layer as the model has it: Conv, Gemm (with its transB) or MatMul.
func (b *builder) original(x, y string) {
	l := b.l
	switch l.Op {
	case "Conv":
		inputs := []string{x, b.convWeight("weight", l.Out, l.In, l.Kernel)}
		if l.Bias {
			inputs = append(inputs, b.init("bias", []int64{int64(l.Out)}, b.wf("bias", l.Out, 1, 1)))
		}
		b.node("Conv", "layer", inputs, y, b.convAttrs()...)
	case "Gemm":
		w := b.wf("weight", l.Out, l.In, 1)
		dims := []int64{int64(l.Out), int64(l.In)}
		if !l.TransB {
			w, dims = transpose(w, l.Out, l.In), []int64{int64(l.In), int64(l.Out)}
		}
		inputs := []string{x, b.init("weight", dims, w)}
		if l.Bias {
			inputs = append(inputs, b.init("bias", []int64{int64(l.Out)}, b.wf("bias", l.Out, 1, 1)))
		}
		var attrs []*onnxpb.AttributeProto
		if l.TransB {
			attrs = append(attrs, onnxio.IntAttr("transB", 1))
		}
		b.node("Gemm", "layer", inputs, y, attrs...)
	default:
		w := transpose(b.wf("weight", l.Out, l.In, 1), l.Out, l.In)
		b.node("MatMul", "layer", []string{x, b.init("weight", []int64{int64(l.In), int64(l.Out)}, w)}, y)
	}
}

func int64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// context sets a program of a 2-D Conv layer in the layout its neighbours give it in a model
// that onnxruntime's CPU provider runs in its blocked NCHWc layout (block > 0: MLAS's NCHWc
// block, NCHWcBlock): where the layer's input comes blocked (Layer.BlockedIn) an identity
// depthwise 1x1 Conv goes in front of the program's input x, and where its output is taken
// blocked (BlockedOut) one behind its output y, on the layer's own input and output only
// (outerIn, outerOut: not on a rank-r tensor inside a factorization) and where the channels
// (in, out) are a multiple of 4, which onnxruntime pads to the block. onnxruntime converts
// between layouts only where a blocked node meets one that is not; alone, every program
// starts and ends with such conversions, which the layer does not have in the model. The
// depthwise Convs are the same in a layer's original and in all of its candidates, so they
// cancel in what a rank saves. Measured: on the bundled MNIST model at batch 64, without
// context, the tables overstated what the chosen ranks save by 9-12% and the compressed
// model's predicted latency was 18-26% optimistic. It returns the program's new input and
// output names.
func (b *builder) context(x, y string, in, out, block int, outerIn, outerOut bool) (string, string) {
	l := b.l
	if block <= 0 || l.Op != "Conv" || len(l.Kernel) != 2 {
		return x, y
	}
	dw := func(name, from, to string, c int) {
		w := make([]float32, c)
		for i := range w {
			w[i] = 1
		}
		b.node("Conv", name, []string{from, b.init(name+"_W", []int64{int64(c), 1, 1, 1}, w)}, to,
			onnxio.IntsAttr("kernel_shape", []int64{1, 1}), onnxio.IntAttr("group", int64(c)))
	}
	if outerIn && l.BlockedIn && in%nchwcAlign == 0 {
		dw("context_in", "context_x", x, in)
		nodes := b.g.Node // the new node goes first, before the nodes that read x
		b.g.Node = append([]*onnxpb.NodeProto{nodes[len(nodes)-1]}, nodes[:len(nodes)-1]...)
		x = "context_x"
	}
	if outerOut && l.BlockedOut && out%nchwcAlign == 0 {
		dw("context_out", y, "context_y", out)
		y = "context_y"
	}
	return x, y
}

// nchwcAlign: onnxruntime runs a Conv blocked only where its input channels (unless fewer than
// a block) and a depthwise Conv's channels are multiples of it, padding them to the block.
const nchwcAlign = 4
