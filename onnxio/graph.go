package onnxio

import (
	"container/heap"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio/onnxpb"
)

// Node is one operator of a Graph. Inputs and Outputs are tensor names; an empty input name is
// an omitted optional input.
type Node struct {
	Name    string
	Op      string
	Domain  string
	Inputs  []string
	Outputs []string
	Attrs   []*onnxpb.AttributeProto

	rest *onnxpb.NodeProto // the loaded node's other fields (doc_string, unknown fields)
}

// Attr returns the attribute called name, or nil.
func (n *Node) Attr(name string) *onnxpb.AttributeProto {
	for _, a := range n.Attrs {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// AttrInt returns the integer attribute name, or def when it is absent.
func (n *Node) AttrInt(name string, def int64) int64 {
	if a := n.Attr(name); a != nil {
		return a.GetI()
	}
	return def
}

// AttrInts returns the integer-list attribute name, or nil when it is absent.
func (n *Node) AttrInts(name string) []int64 {
	if a := n.Attr(name); a != nil {
		return a.GetInts()
	}
	return nil
}

// SetAttr adds attribute a to the node, replacing one of the same name.
func (n *Node) SetAttr(a *onnxpb.AttributeProto) {
	for i, b := range n.Attrs {
		if b.GetName() == a.GetName() {
			n.Attrs[i] = a
			return
		}
	}
	n.Attrs = append(n.Attrs, a)
}

// IntsAttr returns an INTS attribute.
func IntsAttr(name string, v []int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

// IntAttr returns an INT attribute.
func IntAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

// Label names the node for people: its name, or its first output's name when it has none.
func (n *Node) Label() string {
	if n.Name != "" {
		return n.Name
	}
	if len(n.Outputs) > 0 {
		return n.Outputs[0]
	}
	return n.Op
}

func (n *Node) toProto() *onnxpb.NodeProto {
	np := new(onnxpb.NodeProto)
	if n.rest != nil {
		np = proto.Clone(n.rest).(*onnxpb.NodeProto)
	}
	np.Input, np.Output, np.Attribute = n.Inputs, n.Outputs, n.Attrs
	setString(&np.Name, n.Name)
	setString(&np.OpType, n.Op)
	setString(&np.Domain, n.Domain)
	return np
}

// setString sets a proto2 string field, leaving it unset for "" when it was unset.
func setString(p **string, s string) {
	if *p == nil && s == "" {
		return
	}
	*p = proto.String(s)
}

// Graph is the editable main graph of a model: nodes in order, initializers by name, and the
// graph's inputs, outputs and value_info. Graph never modifies an initializer tensor in place
// (Model.Clone copies them, SaveWith's working copy shares them): replace them with
// SetInitializer.
type Graph struct {
	Nodes []*Node

	irVersion int64
	model     *onnxpb.ModelProto // the model the graph belongs to (for its opset), or nil
	rest      *onnxpb.GraphProto // everything but nodes and initializers
	inits     map[string]*onnxpb.TensorProto
	initOrder []string
}

// newGraph takes ownership of gp.
func newGraph(gp *onnxpb.GraphProto, irVersion int64) *Graph {
	g := &Graph{irVersion: irVersion, inits: make(map[string]*onnxpb.TensorProto)}
	for _, np := range gp.Node {
		n := &Node{
			Name: np.GetName(), Op: np.GetOpType(), Domain: np.GetDomain(),
			Inputs: np.Input, Outputs: np.Output, Attrs: np.Attribute,
		}
		np.Input, np.Output, np.Attribute = nil, nil, nil
		n.rest = np
		g.Nodes = append(g.Nodes, n)
	}
	for _, t := range gp.Initializer {
		if _, dup := g.inits[t.GetName()]; !dup {
			g.initOrder = append(g.initOrder, t.GetName())
		}
		g.inits[t.GetName()] = t
	}
	gp.Node, gp.Initializer = nil, nil
	g.rest = gp
	return g
}

// Proto returns the graph as a new GraphProto (initializer tensors shared, not copied).
func (g *Graph) Proto() *onnxpb.GraphProto {
	gp := proto.Clone(g.rest).(*onnxpb.GraphProto)
	for _, n := range g.Nodes {
		gp.Node = append(gp.Node, n.toProto())
	}
	for _, name := range g.initOrder {
		gp.Initializer = append(gp.Initializer, g.inits[name])
	}
	return gp
}

// Inputs returns the names of the graph inputs that are fed at run time (not initializers).
func (g *Graph) Inputs() []*onnxpb.ValueInfoProto {
	var in []*onnxpb.ValueInfoProto
	for _, vi := range g.rest.Input {
		if _, ok := g.inits[vi.GetName()]; !ok {
			in = append(in, vi)
		}
	}
	return in
}

// Outputs returns the names of the graph outputs.
func (g *Graph) Outputs() []string {
	var out []string
	for _, vi := range g.rest.Output {
		out = append(out, vi.GetName())
	}
	return out
}

// AddOutput makes tensor name a graph output of element type elem (no shape) unless it is one.
func (g *Graph) AddOutput(name string, elem onnxpb.TensorProto_DataType) {
	for _, vi := range g.rest.Output {
		if vi.GetName() == name {
			return
		}
	}
	g.rest.Output = append(g.rest.Output, TensorInfo(name, elem, nil))
}

// SetOutputs replaces the graph outputs by the named tensors, keeping the value info of those
// that were outputs already.
func (g *Graph) SetOutputs(names []string, elem onnxpb.TensorProto_DataType) {
	old := map[string]*onnxpb.ValueInfoProto{}
	for _, vi := range g.rest.Output {
		old[vi.GetName()] = vi
	}
	g.rest.Output = nil
	for _, name := range names {
		vi := old[name]
		if vi == nil {
			vi = TensorInfo(name, elem, nil)
		}
		g.rest.Output = append(g.rest.Output, vi)
	}
}

// TensorInfo returns a ValueInfoProto for a tensor; dims < 0 are unknown, nil dims no shape.
func TensorInfo(name string, elem onnxpb.TensorProto_DataType, dims []int64) *onnxpb.ValueInfoProto {
	tt := &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(elem))}
	if dims != nil {
		tt.Shape = new(onnxpb.TensorShapeProto)
		for _, d := range dims {
			dim := new(onnxpb.TensorShapeProto_Dimension)
			if d >= 0 {
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
			}
			tt.Shape.Dim = append(tt.Shape.Dim, dim)
		}
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}},
	}
}

// ValueInfo returns what the model declares of tensor name (graph input, output or value_info),
// or nil.
func (g *Graph) ValueInfo(name string) *onnxpb.ValueInfoProto {
	for _, list := range [][]*onnxpb.ValueInfoProto{g.rest.Input, g.rest.Output, g.rest.ValueInfo} {
		for _, vi := range list {
			if vi.GetName() == name {
				return vi
			}
		}
	}
	return nil
}

// SetValueInfo records vi in the graph's value_info, replacing an entry of the same name. Graph
// inputs and outputs keep their own declarations.
func (g *Graph) SetValueInfo(vi *onnxpb.ValueInfoProto) {
	for i, old := range g.rest.ValueInfo {
		if old.GetName() == vi.GetName() {
			g.rest.ValueInfo[i] = vi
			return
		}
	}
	g.rest.ValueInfo = append(g.rest.ValueInfo, vi)
}

// Initializer returns the constant tensor called name, or nil.
func (g *Graph) Initializer(name string) *onnxpb.TensorProto { return g.inits[name] }

// Initializers returns the initializers in model order.
func (g *Graph) Initializers() []*onnxpb.TensorProto {
	out := make([]*onnxpb.TensorProto, len(g.initOrder))
	for i, name := range g.initOrder {
		out[i] = g.inits[name]
	}
	return out
}

// SetInitializer adds t as an initializer, replacing one of the same name. In models of IR
// version below 4, where initializers must also be graph inputs, it declares the input too.
func (g *Graph) SetInitializer(t *onnxpb.TensorProto) {
	name := t.GetName()
	if _, ok := g.inits[name]; !ok {
		g.initOrder = append(g.initOrder, name)
		if g.irVersion < 4 {
			dims := append([]int64{}, t.Dims...) // a scalar has a shape of no dimensions, not none
			g.rest.Input = append(g.rest.Input, TensorInfo(name, onnxpb.TensorProto_DataType(t.GetDataType()), dims))
		}
	}
	g.inits[name] = t
}

// IsGraphInput reports whether tensor name is fed at run time (a graph input without initializer).
func (g *Graph) IsGraphInput(name string) bool {
	if _, ok := g.inits[name]; ok {
		return false
	}
	for _, vi := range g.rest.Input {
		if vi.GetName() == name {
			return true
		}
	}
	return false
}

// Producer returns the node that outputs tensor name, or nil.
func (g *Graph) Producer(name string) *Node {
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o == name {
				return n
			}
		}
	}
	return nil
}

// Consumers returns the nodes that read tensor name, directly or from inside a subgraph.
func (g *Graph) Consumers(name string) []*Node {
	var out []*Node
	for _, n := range g.Nodes {
		for _, in := range reads(n) {
			if in == name {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// reads lists the outer-scope tensors node n reads: its inputs and the names its subgraphs use
// without defining them.
func reads(n *Node) []string {
	var out []string
	for _, in := range n.Inputs {
		if in != "" {
			out = append(out, in)
		}
	}
	for _, a := range n.Attrs {
		subs := a.GetGraphs()
		if a.G != nil {
			subs = append(subs, a.G)
		}
		for _, sg := range subs {
			out = append(out, implicitReads(sg)...)
		}
	}
	return out
}

// implicitReads lists the names a subgraph reads without defining them itself.
func implicitReads(gp *onnxpb.GraphProto) []string {
	defined := map[string]bool{}
	for _, vi := range gp.Input {
		defined[vi.GetName()] = true
	}
	for _, t := range gp.Initializer {
		defined[t.GetName()] = true
	}
	for _, np := range gp.Node {
		for _, o := range np.Output {
			defined[o] = true
		}
	}
	var out []string
	for _, np := range gp.Node {
		n := &Node{Inputs: np.Input, Attrs: np.Attribute}
		for _, in := range reads(n) {
			if !defined[in] {
				out = append(out, in)
			}
		}
	}
	for _, vi := range gp.Output {
		if !defined[vi.GetName()] {
			out = append(out, vi.GetName())
		}
	}
	return out
}

// names returns every name in use in the graph: nodes, tensors and value_info.
func (g *Graph) names() map[string]bool {
	used := map[string]bool{}
	for _, n := range g.Nodes {
		used[n.Name] = true
		for _, s := range n.Inputs {
			used[s] = true
		}
		for _, s := range n.Outputs {
			used[s] = true
		}
	}
	for name := range g.inits {
		used[name] = true
	}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.rest.Input, g.rest.Output, g.rest.ValueInfo} {
		for _, vi := range list {
			used[vi.GetName()] = true
		}
	}
	return used
}

// UniqueName returns prefix, or prefix with the smallest numeric suffix "_N", that names
// nothing in the graph yet.
func (g *Graph) UniqueName(prefix string) string {
	used := g.names()
	if !used[prefix] {
		return prefix
	}
	for i := 1; ; i++ {
		s := prefix + "_" + strconv.Itoa(i)
		if !used[s] {
			return s
		}
	}
}

// Check verifies that the graph is well formed: no tensor is defined twice, every tensor a node
// reads is defined (as a graph input, initializer or node output) and every graph output is.
func (g *Graph) Check() error {
	defined := map[string]string{}
	define := func(name, by string) error {
		if prev, ok := defined[name]; ok && name != "" {
			return fmt.Errorf("tensor %q is defined twice (%s and %s)", name, prev, by)
		}
		defined[name] = by
		return nil
	}
	for _, vi := range g.rest.Input {
		if err := define(vi.GetName(), "graph input"); err != nil {
			return err
		}
	}
	for _, name := range g.initOrder {
		if _, ok := defined[name]; ok { // an initializer may also be declared as an input
			continue
		}
		defined[name] = "initializer"
	}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if err := define(o, fmt.Sprintf("node %q", n.Label())); err != nil {
				return err
			}
		}
	}
	for _, n := range g.Nodes {
		for _, in := range reads(n) {
			if _, ok := defined[in]; !ok {
				return fmt.Errorf("tensor %q read by node %q is never defined", in, n.Label())
			}
		}
	}
	for _, name := range g.Outputs() {
		if _, ok := defined[name]; !ok {
			return fmt.Errorf("graph output %q is never defined", name)
		}
	}
	return nil
}

// Cleanup removes what no longer contributes to a graph output: nodes whose outputs nobody
// needs, unused initializers (and their graph input entries), and value_info of tensors that
// are gone. Graph inputs fed at run time and graph outputs are never removed.
func (g *Graph) Cleanup() {
	live := map[string]bool{}
	for _, o := range g.Outputs() {
		live[o] = true
	}
	keep := make([]bool, len(g.Nodes))
	for changed := true; changed; {
		changed = false
		for i := len(g.Nodes) - 1; i >= 0; i-- {
			if keep[i] {
				continue
			}
			n := g.Nodes[i]
			for _, o := range n.Outputs {
				if live[o] {
					keep[i], changed = true, true
					break
				}
			}
			if keep[i] {
				for _, in := range reads(n) {
					live[in] = true
				}
			}
		}
	}
	nodes := g.Nodes[:0]
	present := map[string]bool{}
	for i, n := range g.Nodes {
		if keep[i] {
			nodes = append(nodes, n)
			for _, o := range n.Outputs {
				present[o] = true
			}
		}
	}
	g.Nodes = nodes
	removed := map[string]bool{}
	order := g.initOrder[:0]
	for _, name := range g.initOrder {
		if live[name] {
			order = append(order, name)
			present[name] = true
		} else {
			delete(g.inits, name)
			removed[name] = true
		}
	}
	g.initOrder = order
	inputs := g.rest.Input[:0]
	for _, vi := range g.rest.Input {
		if !removed[vi.GetName()] { // a run-time input stays even when unused
			inputs = append(inputs, vi)
			present[vi.GetName()] = true
		}
	}
	g.rest.Input = inputs
	vis := g.rest.ValueInfo[:0]
	for _, vi := range g.rest.ValueInfo {
		if present[vi.GetName()] {
			vis = append(vis, vi)
		}
	}
	g.rest.ValueInfo = vis
}

// Toposort orders the nodes so that each comes after the producers of what it reads, keeping
// the current order wherever it is already valid. It fails on a cycle.
func (g *Graph) Toposort() error {
	producer := map[string]int{}
	for i, n := range g.Nodes {
		for _, o := range n.Outputs {
			producer[o] = i
		}
	}
	waiting := make([]int, len(g.Nodes))
	next := make([][]int, len(g.Nodes))
	for i, n := range g.Nodes {
		for _, in := range reads(n) {
			if p, ok := producer[in]; ok && p != i {
				waiting[i]++
				next[p] = append(next[p], i)
			}
		}
	}
	ready := &intHeap{}
	for i := range g.Nodes {
		if waiting[i] == 0 {
			heap.Push(ready, i)
		}
	}
	sorted := make([]*Node, 0, len(g.Nodes))
	for ready.Len() > 0 {
		i := heap.Pop(ready).(int)
		sorted = append(sorted, g.Nodes[i])
		for _, j := range next[i] {
			if waiting[j]--; waiting[j] == 0 {
				heap.Push(ready, j)
			}
		}
	}
	if len(sorted) != len(g.Nodes) {
		return fmt.Errorf("graph has a cycle")
	}
	g.Nodes = sorted
	return nil
}

type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
