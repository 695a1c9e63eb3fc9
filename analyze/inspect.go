package analyze

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
)

// LayerInfo is the cost model of one layer: a Conv, or a Gemm or MatMul by a constant weight.
// Shapes include the batch dimension; Params and MACs are per sample.
//
//	Conv:   MACs = out · in/group · prod(kernel) · prod(output spatial dims)
//	Gemm:   MACs = M·K·N / batch (A' = transA ? Aᵀ : A is M×K, B' is K×N)
//	MatMul: MACs = rows·K·N / batch, A being …×rows×K and the constant B K×N
//
// where batch is the leading dimension of the graph input. Params count the constant weight
// and bias (Gemm: C when constant) elements.
type LayerInfo struct {
	Name   string  `json:"name"` // the node's name, or its first output's when unnamed
	Op     string  `json:"op"`
	Input  []int64 `json:"input"`  // shape of the first input (batch first)
	Output []int64 `json:"output"` // shape of the first output (batch first)
	Group  int     `json:"group"`  // Conv group; 1 for Gemm and MatMul
	Params int64   `json:"params"`
	MACs   int64   `json:"macs"`
}

// Cost returns the layer's MACs and params.
func (l LayerInfo) Cost() rewrite.Cost { return rewrite.Cost{MACs: l.MACs, Params: l.Params} }

// layerWeight reports whether node n is a layer of the cost model (see LayerInfo) and returns
// the name of its weight tensor.
func layerWeight(g *onnxio.Graph, n *onnxio.Node) (string, bool) {
	if n.Domain != "" && n.Domain != "ai.onnx" || len(n.Inputs) < 2 || len(n.Outputs) < 1 || n.Inputs[0] == "" {
		return "", false
	}
	switch n.Op {
	case "Conv":
		return n.Inputs[1], n.Inputs[1] != ""
	case "Gemm", "MatMul":
		if d, ok := constDims(g, n.Inputs[1]); ok && len(d) == 2 && (n.Op == "Gemm" || len(n.Inputs) == 2) {
			return n.Inputs[1], true
		}
	}
	return "", false
}

// IsLayer reports whether node n of g is a layer of the cost model: a Conv, or a Gemm or
// MatMul whose second input is a constant 2-D weight.
func IsLayer(g *onnxio.Graph, n *onnxio.Node) bool {
	_, ok := layerWeight(g, n)
	return ok
}

// constDims returns the dims of a constant tensor: an initializer or the output of a Constant
// node holding a tensor.
func constDims(g *onnxio.Graph, name string) ([]int64, bool) {
	if name == "" {
		return nil, false
	}
	if t := g.Initializer(name); t != nil {
		return t.Dims, true
	}
	if p := g.Producer(name); p != nil && p.Op == "Constant" && (p.Domain == "" || p.Domain == "ai.onnx") {
		if a := p.Attr("value"); a != nil && a.T != nil {
			return a.T.Dims, true
		}
	}
	return nil, false
}

// LayerTensors returns the tensors whose shapes Layers needs: the first input and output of
// every layer, and a Conv weight that is not constant, in graph order, each once. Constants
// are left out.
func LayerTensors(m *onnxio.Model) []string {
	g := m.Graph
	var out []string
	seen := map[string]bool{}
	add := func(t string) {
		if t == "" || seen[t] {
			return
		}
		seen[t] = true
		if _, isConst := constDims(g, t); !isConst {
			out = append(out, t)
		}
	}
	for _, n := range g.Nodes {
		w, ok := layerWeight(g, n)
		if !ok {
			continue
		}
		add(n.Inputs[0])
		add(w)
		add(n.Outputs[0])
	}
	return out
}

// Layers returns the cost of every layer of m (see LayerInfo), in graph order, from the shapes
// of its tensors (batch first; see Shapes). A missing or inconsistent shape is an error naming
// the layer.
func Layers(m *onnxio.Model, shapes map[string][]int64) ([]LayerInfo, error) {
	g := m.Graph
	batch := int64(1)
	if ins := g.Inputs(); len(ins) > 0 {
		if s := shapes[ins[0].GetName()]; len(s) > 0 && s[0] > 0 {
			batch = s[0]
		}
	}
	var layers []LayerInfo
	for _, n := range g.Nodes {
		w, ok := layerWeight(g, n)
		if !ok {
			continue
		}
		l, err := layerInfo(g, n, w, shapes, batch)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", n.Op, n.Label(), err)
		}
		layers = append(layers, l)
	}
	return layers, nil
}

func layerInfo(g *onnxio.Graph, n *onnxio.Node, weight string, shapes map[string][]int64, batch int64) (LayerInfo, error) {
	l := LayerInfo{Name: n.Label(), Op: n.Op, Group: 1}
	var ok bool
	if l.Input, ok = shapes[n.Inputs[0]]; !ok {
		return l, fmt.Errorf("no shape for input %q", n.Inputs[0])
	}
	if l.Output, ok = shapes[n.Outputs[0]]; !ok {
		return l, fmt.Errorf("no shape for output %q", n.Outputs[0])
	}
	w, isConst := constDims(g, weight)
	if !isConst {
		if w, ok = shapes[weight]; !ok {
			return l, fmt.Errorf("no shape for weight %q", weight)
		}
	}
	x, y := l.Input, l.Output
	switch n.Op {
	case "Conv":
		l.Group = int(n.AttrInt("group", 1))
		if len(w) < 3 || len(y) != len(w) || len(x) != len(w) || y[1] != w[0] || l.Group < 1 || x[1] != w[1]*int64(l.Group) {
			return l, fmt.Errorf("weight %v (group %d) does not fit input %v and output %v", w, l.Group, x, y)
		}
		bias := len(n.Inputs) > 2 && n.Inputs[2] != ""
		kernel := prod(w[2:])
		l.MACs = rewrite.ConvMACs(int(w[0]), int(w[1]), int(kernel), prod(y[2:]))
		l.Params = rewrite.ConvParams(int(w[0]), int(w[1]), int(kernel), bias)
	case "Gemm":
		if len(x) != 2 {
			return l, fmt.Errorf("input A has shape %v, want 2-D", x)
		}
		mDim, k := x[0], x[1]
		if n.AttrInt("transA", 0) != 0 {
			mDim, k = k, mDim
		}
		kb, nDim := w[0], w[1]
		if n.AttrInt("transB", 0) != 0 {
			kb, nDim = nDim, kb
		}
		if k != kb {
			return l, fmt.Errorf("A %v and B %v do not fit (transA=%d, transB=%d)", x, w, n.AttrInt("transA", 0), n.AttrInt("transB", 0))
		}
		l.MACs = mDim * k * nDim / batch
		l.Params = prod(w)
		if len(n.Inputs) > 2 {
			if c, ok := constDims(g, n.Inputs[2]); ok {
				l.Params += prod(c)
			}
		}
	case "MatMul":
		if len(x) < 1 || x[len(x)-1] != w[0] {
			return l, fmt.Errorf("A %v and B %v do not fit", x, w)
		}
		l.MACs = prod(x) * w[1] / batch
		l.Params = prod(w)
	}
	return l, nil
}

// prod is the product of dims (1 for none).
func prod(dims []int64) int64 {
	p := int64(1)
	for _, d := range dims {
		p *= d
	}
	return p
}

// Dim is one declared dimension of a tensor: a size, or a symbolic name (dim_param), or
// neither (unknown). In JSON it is a number, a string, or "?".
type Dim struct {
	Size  int64  // > 0 when static
	Param string // the dim_param of a symbolic dimension
}

func (d Dim) String() string {
	switch {
	case d.Size > 0:
		return strconv.FormatInt(d.Size, 10)
	case d.Param != "":
		return d.Param
	}
	return "?"
}

// MarshalJSON writes a static dimension as a number, a symbolic one as its name, else "?".
func (d Dim) MarshalJSON() ([]byte, error) {
	if d.Size > 0 {
		return []byte(strconv.FormatInt(d.Size, 10)), nil
	}
	return json.Marshal(d.String())
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *Dim) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*d = Dim{}
		if s != "?" {
			d.Param = s
		}
		return nil
	}
	*d = Dim{}
	return json.Unmarshal(b, &d.Size)
}

// Decl is a graph input or output as the model declares it. Dims is nil when no shape is
// declared.
type Decl struct {
	Name string `json:"name"`
	Type string `json:"type"` // element type, lower case: "float32", "int64"...
	Dims []Dim  `json:"dims"`
}

// String writes the declaration as "x: float32 Nx3x224x224".
func (d Decl) String() string {
	return d.Name + ": " + d.Type + " " + DimsString(d.Dims)
}

// DimsString writes dims as "Nx3x224x224" ("any shape" for nil).
func DimsString(dims []Dim) string {
	if dims == nil {
		return "any shape"
	}
	parts := make([]string, len(dims))
	for i, d := range dims {
		parts[i] = d.String()
	}
	if len(parts) == 0 {
		return "scalar"
	}
	return strings.Join(parts, "x")
}

// Equal reports whether two declarations have the same name, type and dims.
func (d Decl) Equal(e Decl) bool {
	if d.Name != e.Name || d.Type != e.Type || (d.Dims == nil) != (e.Dims == nil) || len(d.Dims) != len(e.Dims) {
		return false
	}
	for i := range d.Dims {
		if d.Dims[i] != e.Dims[i] {
			return false
		}
	}
	return true
}

// Declare reads the declaration of a value.
func Declare(vi *onnxpb.ValueInfoProto) Decl {
	d := Decl{Name: vi.GetName(), Type: elemName(onnxio.ElemType(vi))}
	tt := vi.GetType().GetTensorType()
	if tt == nil || tt.Shape == nil {
		return d
	}
	d.Dims = make([]Dim, 0, len(tt.Shape.Dim))
	for _, pd := range tt.Shape.Dim {
		var dim Dim
		switch v := pd.Value.(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			if v.DimValue > 0 {
				dim.Size = v.DimValue
			}
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			dim.Param = v.DimParam
		}
		d.Dims = append(d.Dims, dim)
	}
	return d
}

func elemName(t onnxpb.TensorProto_DataType) string {
	switch t {
	case onnxpb.TensorProto_UNDEFINED:
		return "?"
	case onnxpb.TensorProto_FLOAT:
		return "float32"
	case onnxpb.TensorProto_DOUBLE:
		return "float64"
	case onnxpb.TensorProto_FLOAT16:
		return "float16"
	}
	return strings.ToLower(t.String())
}

// Summary is what a model says of itself: versions, producer, and its run-time inputs and
// outputs as declared.
type Summary struct {
	IRVersion int64    `json:"ir_version"`
	Opset     int64    `json:"opset"` // of the default ONNX domain
	Producer  Producer `json:"producer"`
	Inputs    []Decl   `json:"inputs"` // run-time inputs (initializers left out)
	Outputs   []Decl   `json:"outputs"`
}

// Producer names the tool that wrote a model.
type Producer struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

func (p Producer) String() string {
	s := strings.TrimSpace(p.Name + " " + p.Version)
	if s == "" {
		return "unknown"
	}
	return s
}

// Summarize reads a model's Summary.
func Summarize(m *onnxio.Model) Summary {
	s := Summary{
		IRVersion: m.Proto.GetIrVersion(), Opset: m.Opset(),
		Producer: Producer{Name: m.Proto.GetProducerName(), Version: m.Proto.GetProducerVersion()},
		Inputs:   []Decl{}, Outputs: []Decl{},
	}
	for _, vi := range m.Graph.Inputs() {
		s.Inputs = append(s.Inputs, Declare(vi))
	}
	for _, vi := range m.Graph.Proto().GetOutput() {
		s.Outputs = append(s.Outputs, Declare(vi))
	}
	return s
}

// InputShape returns the name of m's one run-time input and the shape Shapes feeds it: given
// when it is not nil (it must have the declared rank and static dimensions), else the declared
// shape with every dynamic dimension set to 1.
func InputShape(m *onnxio.Model, given []int64) (string, []int64, error) {
	in, err := ort.ModelInput(m)
	if err != nil {
		return "", nil, err
	}
	if given == nil {
		if in.Dims == nil {
			return "", nil, fmt.Errorf("model input %q declares no shape; give its shape", in.Name)
		}
		dims := make([]int64, len(in.Dims))
		for i, d := range in.Dims {
			dims[i] = max(d, 1)
		}
		return in.Name, dims, nil
	}
	ok := in.Dims == nil || len(in.Dims) == len(given)
	for i := 0; ok && i < len(given); i++ {
		ok = given[i] > 0 && (in.Dims == nil || in.Dims[i] < 0 || in.Dims[i] == given[i])
	}
	if !ok || len(given) == 0 {
		return "", nil, fmt.Errorf("input shape %s does not fit model input %q, declared %s", shapeString(given), in.Name, in)
	}
	return in.Name, append([]int64(nil), given...), nil
}

// shapeString writes a shape as 1x3x224x224.
func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return strings.Join(parts, "x")
}

// StaticShapes returns the shapes of the graph inputs and of LayerTensors from what the model
// declares (inputs, outputs, value_info), or false when one of them is not declared fully. A
// symbolic dimension counts as known when a graph input has a dimension of the same dim_param
// (ONNX gives equal dim_params equal sizes): it takes that input dimension's size in
// inputShape (nil: the declared shape, with 1 for each dynamic dimension).
func StaticShapes(m *onnxio.Model, inputShape []int64) (map[string][]int64, bool) {
	g := m.Graph
	ins := g.Inputs()
	if inputShape != nil && len(ins) != 1 {
		return nil, false
	}
	shapes := map[string][]int64{}
	bound := map[string]int64{}
	for _, vi := range ins {
		d := Declare(vi)
		if d.Dims == nil || inputShape != nil && len(inputShape) != len(d.Dims) {
			return nil, false
		}
		dims := make([]int64, len(d.Dims))
		for i, dim := range d.Dims {
			dims[i] = max(dim.Size, 1)
			if inputShape != nil {
				if dim.Size > 0 && dim.Size != inputShape[i] || inputShape[i] < 1 {
					return nil, false
				}
				dims[i] = inputShape[i]
			}
			if dim.Param != "" {
				if v, ok := bound[dim.Param]; ok && v != dims[i] {
					return nil, false
				}
				bound[dim.Param] = dims[i]
			}
		}
		shapes[d.Name] = dims
	}
	// A tensor may be declared more than once (as a graph output and in value_info).
	decls := map[string][]Decl{}
	gp := g.Proto()
	for _, list := range [][]*onnxpb.ValueInfoProto{gp.Output, gp.ValueInfo} {
		for _, vi := range list {
			decls[vi.GetName()] = append(decls[vi.GetName()], Declare(vi))
		}
	}
	for _, name := range LayerTensors(m) {
		if _, ok := shapes[name]; ok {
			continue
		}
		for _, d := range decls[name] {
			if dims, ok := resolve(d.Dims, bound); ok {
				shapes[name] = dims
				break
			}
		}
		if _, ok := shapes[name]; !ok {
			return nil, false
		}
	}
	return shapes, true
}

// resolve returns the sizes of declared dims, symbolic ones taken from bound, or false when
// one is unknown.
func resolve(dims []Dim, bound map[string]int64) ([]int64, bool) {
	if dims == nil {
		return nil, false
	}
	out := make([]int64, len(dims))
	for i, dim := range dims {
		v, ok := dim.Size, dim.Size > 0
		if !ok && dim.Param != "" {
			v, ok = bound[dim.Param]
		}
		if !ok {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

// Shapes returns the shapes (batch first) of the graph inputs and of every tensor in
// LayerTensors, for input shape inputShape (see InputShape; nil: the declared shape with each
// dynamic dimension 1). They come from what the model declares when that is complete (see
// StaticShapes), else from one run of the model in onnxruntime on a zero input of that shape.
func Shapes(m *onnxio.Model, inputShape []int64, opts ort.Options) (map[string][]int64, error) {
	if s, ok := StaticShapes(m, inputShape); ok {
		return s, nil
	}
	if ins := ort.ModelInputs(m); inputShape == nil && len(ins) > 1 {
		return multiShapes(m, ins, opts)
	}
	name, dims, err := InputShape(m, inputShape)
	if err != nil {
		return nil, err
	}
	shapes := map[string][]int64{name: dims}
	var capture []string
	for _, t := range LayerTensors(m) {
		if t != name {
			capture = append(capture, t)
		}
	}
	if len(capture) == 0 {
		return shapes, nil
	}
	r := &zeros{n: int(dims[0])}
	for _, d := range dims[1:] {
		r.shape = append(r.shape, int(d))
	}
	opts.Batch, opts.MaxSamples = int(dims[0]), 0
	_, err = ort.Infer(m, r, capture, opts, func(b ort.Batch) error {
		for _, o := range b.Outputs {
			shapes[o.Name] = append([]int64(nil), o.Shape...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("infer shapes on a zero input %s: %w", shapeString(dims), err)
	}
	return shapes, nil
}

// multiShapes is Shapes of a model of several inputs: one run on zeros (class 0, false) of
// each input's declared shape, dynamic dimensions 1.
func multiShapes(m *onnxio.Model, ins []ort.Input, opts ort.Options) (map[string][]int64, error) {
	shapes := map[string][]int64{}
	var fields []dataset.Field
	var data [][]byte
	n := 0
	for _, in := range ins {
		if len(in.Dims) == 0 || in.Type == 0 {
			return nil, fmt.Errorf("model input %q declares no batch dimension or a type convpca cannot feed", in.Name)
		}
		dims := make([]int64, len(in.Dims))
		f := dataset.Field{Name: in.Name, Type: in.Type}
		for i, d := range in.Dims {
			dims[i] = max(d, 1)
			if i > 0 {
				f.Shape = append(f.Shape, int(dims[i]))
			}
		}
		if n > 0 && int(dims[0]) != n {
			return nil, fmt.Errorf("model inputs declare batches of %d and %d", n, dims[0])
		}
		n = int(dims[0])
		shapes[in.Name] = dims
		fields = append(fields, f)
		data = append(data, make([]byte, n*f.Bytes()))
	}
	var capture []string
	for _, t := range LayerTensors(m) {
		if !m.Graph.IsGraphInput(t) {
			capture = append(capture, t)
		}
	}
	if len(capture) == 0 {
		return shapes, nil
	}
	r, err := dataset.FieldsFromMemory(fields, data, n)
	if err != nil {
		return nil, err
	}
	opts.Batch, opts.MaxSamples = n, 0
	_, err = ort.Infer(m, r, capture, opts, func(b ort.Batch) error {
		for _, o := range b.Outputs {
			shapes[o.Name] = append([]int64(nil), o.Shape...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("infer shapes on zero inputs: %w", err)
	}
	return shapes, nil
}

// zeros is a dataset.Reader of n samples of zeros.
type zeros struct {
	shape []int
	n     int
}

func (z *zeros) Shape() []int { return append([]int(nil), z.shape...) }
func (z *zeros) Len() int     { return z.n }
func (z *zeros) Close() error { return nil }

func (z *zeros) Read(dst []float32) (int, error) {
	size := 1
	for _, d := range z.shape {
		size *= d
	}
	if z.n == 0 {
		return 0, io.EOF
	}
	k := min(z.n, len(dst)/max(size, 1))
	clear(dst[:k*size])
	z.n -= k
	return k, nil
}
