package rewrite

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
)

// graphBuilder writes small NCHW models for Simplify's tests.
type graphBuilder struct {
	nodes []*onnxpb.NodeProto
	inits []*onnxpb.TensorProto
	rng   *rand.Rand
	n     int
}

func (b *graphBuilder) name(p string) string { b.n++; return fmt.Sprintf("%s%d", p, b.n) }

func (b *graphBuilder) constant(dims []int64, v ...float32) string {
	if v == nil {
		n := 1
		for _, d := range dims {
			n *= int(d)
		}
		v = make([]float32, n)
		for i := range v {
			v[i] = float32(b.rng.NormFloat64())
		}
	}
	t := onnxio.FloatTensor(b.name("c"), dims, v)
	b.inits = append(b.inits, t)
	return t.GetName()
}

func (b *graphBuilder) node(op string, in []string, attrs ...*onnxpb.AttributeProto) string {
	out := b.name(strings.ToLower(op))
	b.nodes = append(b.nodes, &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(out), Input: in, Output: []string{out}, Attribute: attrs})
	return out
}

// conv adds a 3x3 (k) Conv with bias of in -> out channels, group g, pads p.
func (b *graphBuilder) conv(x string, in, out, k, g, p int) string {
	w := b.constant([]int64{int64(out), int64(in / g), int64(k), int64(k)})
	bias := b.constant([]int64{int64(out)})
	return b.node("Conv", []string{x, w, bias}, IntAttr("group", g), IntsAttr("pads", p, p, p, p), IntsAttr("kernel_shape", k, k))
}

func (b *graphBuilder) model(t *testing.T, opset int64, in string, c int, outs ...string) *onnxio.Model {
	t.Helper()
	vi := func(name string) *onnxpb.ValueInfoProto {
		return onnxio.TensorInfo(name, onnxpb.TensorProto_FLOAT, []int64{-1, int64(c), 6, 7})
	}
	g := &onnxpb.GraphProto{Name: proto.String("g"), Input: []*onnxpb.ValueInfoProto{vi(in)}}
	for _, n := range b.nodes {
		g.Node = append(g.Node, proto.Clone(n).(*onnxpb.NodeProto))
	}
	for _, t := range b.inits {
		g.Initializer = append(g.Initializer, proto.Clone(t).(*onnxpb.TensorProto))
	}
	for _, o := range outs {
		g.Output = append(g.Output, &onnxpb.ValueInfoProto{Name: proto.String(o)})
	}
	mp := &onnxpb.ModelProto{IrVersion: proto.Int64(7), Graph: g, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(opset)}}}
	m, err := onnxio.FromProto(mp) // owns g, so the builder's nodes and constants were cloned
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func IntAttr(name string, v int) *onnxpb.AttributeProto { return onnxio.IntAttr(name, int64(v)) }
func IntsAttr(name string, v ...int) *onnxpb.AttributeProto {
	w := make([]int64, len(v))
	for i, x := range v {
		w[i] = int64(x)
	}
	return onnxio.IntsAttr(name, w)
}

// tensor is an NCHW float64 tensor of the reference evaluator; a constant has its own dims.
type tensor struct {
	dims []int
	v    []float64
}

// evalGraph is a reference evaluator of the ops Simplify reads and writes, written apart from
// it: Conv (2-D, group, symmetric pads, stride 1), Mul, Add, Sub, Div (numpy broadcasting of a
// constant against NCHW), Clip (attributes or inputs), HardSigmoid and HardSwish.
func evalGraph(t *testing.T, m *onnxio.Model, x tensor) map[string]tensor {
	t.Helper()
	g := m.Graph
	env := map[string]tensor{g.Inputs()[0].GetName(): x}
	get := func(name string) tensor {
		if v, ok := env[name]; ok {
			return v
		}
		it := g.Initializer(name)
		if it == nil {
			t.Fatalf("tensor %q undefined", name)
		}
		v, err := onnxio.Float64s(it)
		if err != nil {
			t.Fatal(err)
		}
		d := make([]int, len(it.Dims))
		for i, x := range it.Dims {
			d[i] = int(x)
		}
		return tensor{d, v}
	}
	for _, n := range g.Nodes {
		var y tensor
		switch n.Op {
		case "Conv":
			pad := 0
			if p := n.AttrInts("pads"); p != nil {
				pad = int(p[0])
			}
			y = refConv(get(n.Inputs[0]), get(n.Inputs[1]), get(n.Inputs[2]), int(n.AttrInt("group", 1)), pad)
		case "Mul", "Add", "Sub", "Div":
			y = refBinary(t, n.Op, get(n.Inputs[0]), get(n.Inputs[1]))
		case "Clip":
			lo, hi := math.Inf(-1), math.Inf(1)
			if a := n.Attr("min"); a != nil {
				lo = float64(a.GetF())
			}
			if a := n.Attr("max"); a != nil {
				hi = float64(a.GetF())
			}
			if len(n.Inputs) > 2 {
				lo, hi = get(n.Inputs[1]).v[0], get(n.Inputs[2]).v[0]
			}
			y = refMap(get(n.Inputs[0]), func(v float64) float64 { return math.Min(math.Max(v, lo), hi) })
		case "HardSigmoid":
			a, b := float64(n.Attr("alpha").GetF()), float64(n.Attr("beta").GetF())
			y = refMap(get(n.Inputs[0]), func(v float64) float64 { return math.Max(0, math.Min(1, a*v+b)) })
		case "HardSwish":
			y = refMap(get(n.Inputs[0]), func(v float64) float64 { return v * math.Max(0, math.Min(1, v/6+0.5)) })
		default:
			t.Fatalf("evalGraph: op %s", n.Op)
		}
		env[n.Outputs[0]] = y
	}
	return env
}

func refMap(x tensor, f func(float64) float64) tensor {
	y := tensor{x.dims, make([]float64, len(x.v))}
	for i, v := range x.v {
		y.v[i] = f(v)
	}
	return y
}

// refBinary broadcasts a and b, one of them NCHW and the other NCHW or a smaller constant.
func refBinary(t *testing.T, op string, a, b tensor) tensor {
	t.Helper()
	full := a.dims
	if len(b.dims) == 4 && len(b.v) > len(a.v) {
		full = b.dims
	}
	at := func(x tensor, i [4]int) float64 {
		off, stride := 0, 1
		for k := len(x.dims) - 1; k >= 0; k-- {
			j := i[4-len(x.dims)+k]
			if x.dims[k] == 1 {
				j = 0
			}
			off += j * stride
			stride *= x.dims[k]
		}
		return x.v[off]
	}
	y := tensor{full, make([]float64, full[0]*full[1]*full[2]*full[3])}
	p := 0
	for n := range full[0] {
		for c := range full[1] {
			for h := range full[2] {
				for w := range full[3] {
					i := [4]int{n, c, h, w}
					u, v := at(a, i), at(b, i)
					switch op {
					case "Mul":
						y.v[p] = u * v
					case "Add":
						y.v[p] = u + v
					case "Sub":
						y.v[p] = u - v
					case "Div":
						y.v[p] = u / v
					}
					p++
				}
			}
		}
	}
	return y
}

func refConv(x, w, b tensor, group, pad int) tensor {
	n, c, h, wd := x.dims[0], x.dims[1], x.dims[2], x.dims[3]
	out, cg, k := w.dims[0], w.dims[1], w.dims[2]
	oh, ow := h+2*pad-k+1, wd+2*pad-k+1
	y := tensor{[]int{n, out, oh, ow}, make([]float64, n*out*oh*ow)}
	for s := range n {
		for o := range out {
			for i := range oh {
				for j := range ow {
					sum := b.v[o]
					for ci := range cg {
						ch := o/(out/group)*cg + ci
						for u := range k {
							for v := range k {
								r, q := i+u-pad, j+v-pad
								if r < 0 || q < 0 || r >= h || q >= wd {
									continue
								}
								sum += w.v[((o*cg+ci)*k+u)*k+v] * x.v[((s*c+ch)*h+r)*wd+q]
							}
						}
					}
					y.v[((s*out+o)*oh+i)*ow+j] = sum
				}
			}
		}
	}
	return y
}

// TestSimplify: folds and hard-swish rewrites leave the outputs equal (float32 rounding) by an
// evaluator of its own, remove the nodes they should, and decline what is not exact.
func TestSimplify(t *testing.T) {
	const C = 4
	scalar := []int64{1}
	perChannel := []int64{C, 1, 1}
	for _, tc := range []struct {
		name  string
		opset int64
		build func(b *graphBuilder, x string) []string // graph outputs
		want  Simplified
		ops   []string // ops left, in order
	}{
		{"after conv: paddle affine, constant first", 9, func(b *graphBuilder, x string) []string {
			y := b.conv(x, C, C, 3, 1, 1)
			y = b.node("Mul", []string{b.constant(scalar), y})
			y = b.node("Add", []string{y, b.constant(perChannel)})
			y = b.node("Sub", []string{y, b.constant([]int64{1, C, 1, 1})})
			y = b.node("Div", []string{y, b.constant(scalar, 4)})
			return []string{b.node("Sub", []string{b.constant(scalar), y})}
		}, Simplified{Folded: 5}, []string{"Conv"}},
		{"before 1x1 conv: scale and shift per channel", 11, func(b *graphBuilder, x string) []string {
			y := b.node("Div", []string{x, b.constant(perChannel)})
			y = b.node("Add", []string{b.constant(perChannel), y})
			return []string{b.conv(y, C, 6, 1, 1, 0)}
		}, Simplified{Folded: 2}, []string{"Conv"}},
		{"before padded depthwise: s·x + c becomes x + c/s", 9, func(b *graphBuilder, x string) []string {
			y := b.node("Mul", []string{x, b.constant(scalar)})
			y = b.node("Add", []string{y, b.constant(scalar)})
			return []string{b.conv(y, C, C, 3, C, 1)}
		}, Simplified{Folded: 1}, []string{"Add", "Conv"}},
		{"hard-swish at opset 9 (Clip attributes), then the affine into the next conv", 9, func(b *graphBuilder, x string) []string {
			y := b.conv(x, C, C, 1, 1, 0)
			a := b.node("Add", []string{y, b.constant(scalar, 3)})
			c := b.node("Clip", []string{a}, floatAttr("min", 0), floatAttr("max", 6))
			h := b.node("Mul", []string{y, c})
			h = b.node("Div", []string{h, b.constant(scalar, 6)})
			h = b.node("Mul", []string{b.constant(scalar), h})
			h = b.node("Add", []string{h, b.constant(scalar)})
			return []string{b.conv(h, C, C, 1, 1, 0)}
		}, Simplified{Folded: 2, HardSwish: 1}, []string{"Conv", "HardSigmoid", "Mul", "Conv"}},
		{"hard-swish at opset 14, hard-sigmoid at opset 11 (Clip inputs)", 14, func(b *graphBuilder, x string) []string {
			a := b.node("Add", []string{b.constant(scalar, 3), x})
			c := b.node("Clip", []string{a, b.constant(nil, 0), b.constant(nil, 6)})
			h := b.node("Mul", []string{c, x})
			h = b.node("Mul", []string{h, b.constant(scalar, float32(1.0/6))})
			a2 := b.node("Add", []string{h, b.constant(scalar, 3)})
			c2 := b.node("Clip", []string{a2, b.constant(nil, 0), b.constant(nil, 6)})
			return []string{b.node("Div", []string{c2, b.constant(nil, 6)})}
		}, Simplified{HardSwish: 1, HardSigmoid: 1}, []string{"HardSwish", "HardSigmoid"}},
		{"declined: output read twice, graph output, spatial constant, c / x, clip to 5", 9, func(b *graphBuilder, x string) []string {
			y := b.conv(x, C, C, 3, 1, 1)
			m1 := b.node("Mul", []string{y, b.constant(scalar)})
			m2 := b.node("Add", []string{y, b.constant(scalar)})
			z := b.conv(m1, C, C, 3, 1, 1)
			s := b.node("Add", []string{z, b.constant([]int64{1, C, 6, 7})})
			u := b.conv(m2, C, C, 3, 1, 1)
			d := b.node("Div", []string{b.constant(scalar), u})
			v := b.conv(d, C, C, 3, 1, 1)
			a := b.node("Add", []string{v, b.constant(scalar, 3)})
			c := b.node("Clip", []string{a}, floatAttr("min", 0), floatAttr("max", 5))
			return []string{m1, s, v, b.node("Div", []string{b.node("Mul", []string{v, c}), b.constant(scalar, 6)})}
		}, Simplified{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &graphBuilder{rng: rand.New(rand.NewPCG(1, 2))}
			outs := tc.build(b, "x")
			orig := b.model(t, tc.opset, "x", C, outs...)
			m := b.model(t, tc.opset, "x", C, outs...)
			got, err := Simplify(m.Graph)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Simplify: %+v, want %+v", got, tc.want)
			}
			var ops []string
			for _, n := range m.Graph.Nodes {
				ops = append(ops, n.Op)
			}
			if tc.ops != nil && !slices.Equal(ops, tc.ops) {
				t.Errorf("ops left %v, want %v", ops, tc.ops)
			}
			if tc.ops == nil && len(ops) != len(orig.Graph.Nodes) {
				t.Errorf("%d ops left, want all %d", len(ops), len(orig.Graph.Nodes))
			}
			x := tensor{[]int{2, C, 6, 7}, make([]float64, 2*C*6*7)}
			for i := range x.v {
				x.v[i] = 4 * b.rng.NormFloat64() // across the hard-swish's bends at -3 and 3
			}
			want, have := evalGraph(t, orig, x), evalGraph(t, m, x)
			for _, o := range outs {
				var d, s float64
				for i, v := range want[o].v {
					d = math.Max(d, math.Abs(have[o].v[i]-v))
					s = math.Max(s, math.Abs(v))
				}
				if len(have[o].v) != len(want[o].v) || d > 1e-5*s {
					t.Errorf("output %s: max difference %.3g of max %.3g", o, d, s)
				}
			}
		})
	}
}

// TestSimplifyOld: below opset 7 (broadcast by attribute) nothing is folded.
func TestSimplifyOld(t *testing.T) {
	b := &graphBuilder{rng: rand.New(rand.NewPCG(1, 2))}
	y := b.conv("x", 2, 2, 1, 1, 0)
	m := b.model(t, 6, "x", 2, b.node("Mul", []string{y, b.constant([]int64{1})}))
	if s, err := Simplify(m.Graph); err != nil || s.Any() || len(m.Graph.Nodes) != 2 {
		t.Errorf("opset 6: %+v, %v, %d nodes", s, err, len(m.Graph.Nodes))
	}
}

// TestBlocked: a HardSigmoid gets an identity depthwise Conv before it and a scalar shift
// becomes a depthwise Conv, where the channels are a multiple of the block; outputs do not
// change.
func TestBlocked(t *testing.T) {
	for _, tc := range []struct {
		c, block, want int
		ops            []string
	}{
		{16, 16, 2, []string{"Conv", "Conv", "HardSigmoid", "Mul", "Conv", "Conv"}},
		{8, 8, 2, []string{"Conv", "Conv", "HardSigmoid", "Mul", "Conv", "Conv"}},
		{12, 16, 0, []string{"Conv", "HardSigmoid", "Mul", "Add", "Conv"}},
	} {
		b := &graphBuilder{rng: rand.New(rand.NewPCG(1, 2))}
		y := b.conv("x", tc.c, tc.c, 1, 1, 0)
		h := b.node("HardSigmoid", []string{y}, floatAttr("alpha", 0.2), floatAttr("beta", 0.5))
		s := b.node("Add", []string{b.node("Mul", []string{y, h}), b.constant([]int64{1}, 0.7)})
		out := b.conv(s, tc.c, tc.c, 3, tc.c, 1)
		orig := b.model(t, 13, "x", tc.c, out)
		m := b.model(t, 13, "x", tc.c, out)
		if n := Blocked(m.Graph, tc.block); n != tc.want {
			t.Errorf("%d channels, block %d: %d rewritten, want %d", tc.c, tc.block, n, tc.want)
		}
		var ops []string
		for _, n := range m.Graph.Nodes {
			ops = append(ops, n.Op)
		}
		if !slices.Equal(ops, tc.ops) {
			t.Errorf("%d channels, block %d: ops %v, want %v", tc.c, tc.block, ops, tc.ops)
		}
		x := tensor{[]int{2, tc.c, 6, 7}, make([]float64, 2*tc.c*6*7)}
		for i := range x.v {
			x.v[i] = 3 * b.rng.NormFloat64()
		}
		want, have := evalGraph(t, orig, x)[out], evalGraph(t, m, x)[out]
		for i, v := range want.v {
			if math.Abs(have.v[i]-v) > 1e-9*(1+math.Abs(v)) {
				t.Fatalf("%d channels: output %d is %g, want %g", tc.c, i, have.v[i], v)
			}
		}
	}
}

// TestBlockedMismatch: a tensor whose channels the Convs before it do not settle (a Mul of a
// one-channel map by a C-channel one) is left alone.
func TestBlockedMismatch(t *testing.T) {
	b := &graphBuilder{rng: rand.New(rand.NewPCG(1, 2))}
	one := b.conv("x", 16, 1, 1, 1, 0)
	all := b.conv("x", 16, 16, 1, 1, 0)
	h := b.node("HardSigmoid", []string{b.node("Mul", []string{all, one})}, floatAttr("alpha", 0.2), floatAttr("beta", 0.5))
	m := b.model(t, 13, "x", 16, h)
	if n := Blocked(m.Graph, 16); n != 0 {
		t.Errorf("%d nodes rewritten, want none", n)
	}
}
