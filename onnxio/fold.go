package onnxio

// Constant folding, in the manner of onnx-graphsurgeon's fold_constants(): exporters write
// weights as Constant nodes (paddle2onnx, tf2onnx) or as chains such as
// Constant -> Cast -> Reshape -> Transpose -> Conv (older PyTorch, tf2onnx), and below IR
// version 4 every initializer is also listed as a graph input. FoldConstants turns all of these
// into plain initializers, so that a rewrite rule only ever matches initializers and never cares
// which exporter wrote the weight.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio/onnxpb"
)

// IsConstant reports whether tensor name holds a value fixed in the model, that is, whether it
// is an initializer. An initializer is a constant even when it is also listed as a graph input:
// below IR version 4 every initializer must be (the format requires it, and onnxruntime does not
// let a caller override them), and some exporters list them at later versions too, where
// onnxruntime would let a caller feed another value in their place. convpca assumes nobody does;
// DropInitializerInputs makes that explicit in the saved model. The output of a Constant node
// is not an initializer until FoldConstants makes it one.
func (g *Graph) IsConstant(name string) bool {
	_, ok := g.inits[name]
	return ok
}

// DropInitializerInputs removes from the graph inputs every entry that names an initializer, so
// that no initializer can be overridden at run time (as onnxruntime's
// remove_initializer_from_input.py does), and returns how many entries it removed. Below IR
// version 4, where every initializer must be a graph input, it removes nothing and returns 0.
func (g *Graph) DropInitializerInputs() int {
	if g.irVersion < 4 {
		return 0
	}
	kept := g.rest.Input[:0]
	for _, vi := range g.rest.Input {
		if _, ok := g.inits[vi.GetName()]; !ok {
			kept = append(kept, vi)
		}
	}
	n := len(g.rest.Input) - len(kept)
	clear(g.rest.Input[len(kept):])
	g.rest.Input = kept
	return n
}

// errMalformed marks a constant whose data does not match its declared shape or type.
var errMalformed = errors.New("malformed constant")

// FoldConstants replaces constant subexpressions of the main graph by initializers and returns
// how many nodes it removed:
//
//   - a Constant node (attribute value, value_float, value_floats, value_int, value_ints,
//     value_string or value_strings) becomes an initializer named as its output;
//   - an Identity, Cast, Reshape, Transpose, Squeeze, Unsqueeze or Flatten node whose inputs are
//     all constants (see IsConstant), or outputs of nodes folded before it, is computed here and
//     becomes an initializer named as its output. Squeeze and Unsqueeze take their axes from the
//     attribute (opset < 13) or from the second input (opset >= 13), and Reshape its shape from
//     the attribute (opset < 5) or the second input, whichever the node has.
//
// Tensor names do not change, so the nodes that read a folded tensor stay as they are. A node
// is left unfolded, never an error, when its output is a graph output, when it is of another
// domain, or when FoldConstants does not handle its element types, attributes or data: a Cast
// other than to FLOAT or DOUBLE (from any float or integer type) or to INT32 or INT64 (from an
// integer type, value in range), a Constant with sparse or external data, or operands that
// break the operator's rules. A Reshape to a shape of another element count is such a case: the
// model is invalid and its runtime says so; FoldConstants leaves the node for it.
//
// Afterwards the initializers that only folded nodes read, and the value_info of tensors that
// are gone, are removed. Nothing else is: not a graph input, not an initializer that is also a
// graph input (call Cleanup to drop those that nothing reads), not a dead node that folding did
// not touch. So a graph with nothing to fold is left exactly as it was, and a second call folds
// nothing. Below IR version 4 each new initializer is also declared as a graph input, as the
// format requires.
//
// The error reports a constant whose data does not match its shape or type, with the node and
// tensor; the graph is then unchanged.
func (g *Graph) FoldConstants() (int, error) {
	outputs := map[string]bool{}
	for _, o := range g.Outputs() {
		outputs[o] = true
	}
	folded := map[string]*onnxpb.TensorProto{} // outputs of folded nodes
	var foldedOrder []string
	value := func(name string) *onnxpb.TensorProto {
		if t, ok := folded[name]; ok {
			return t
		}
		return g.inits[name]
	}
	const (
		pending = iota
		done
		left
	)
	state := make([]int, len(g.Nodes))
	// Nodes are visited in order until nothing more folds, so a graph out of topological order
	// folds as well; a sorted one takes a single pass and a check.
	for progress := true; progress; {
		progress = false
		for i, n := range g.Nodes {
			if state[i] != pending {
				continue
			}
			if !foldable(n, outputs) {
				state[i] = left
				continue
			}
			var in []*onnxpb.TensorProto
			ready := true
			for _, name := range n.Inputs {
				var t *onnxpb.TensorProto
				if name != "" {
					if t = value(name); t == nil {
						ready = false
						break
					}
				}
				in = append(in, t)
			}
			if !ready {
				continue
			}
			t, err := foldNode(n, in)
			if err != nil {
				return 0, fmt.Errorf("fold constants: node %q (%s): %w", n.Label(), n.Op, err)
			}
			if t == nil {
				state[i] = left
				continue
			}
			t.Name = proto.String(n.Outputs[0])
			folded[n.Outputs[0]] = t
			foldedOrder = append(foldedOrder, n.Outputs[0])
			state[i], progress = done, true
		}
	}
	if len(foldedOrder) == 0 {
		return 0, nil
	}

	// Apply: drop the folded nodes, add the folded tensors that something still reads, drop the
	// initializers that only folded nodes read.
	kept := make([]*Node, 0, len(g.Nodes)-len(foldedOrder))
	var foldedReads []string
	for i, n := range g.Nodes {
		if state[i] == done {
			foldedReads = append(foldedReads, n.Inputs...)
		} else {
			kept = append(kept, n)
		}
	}
	g.Nodes = kept
	read := map[string]bool{}
	for _, n := range g.Nodes {
		for _, name := range reads(n) {
			read[name] = true
		}
	}
	gone := map[string]bool{}
	for _, name := range foldedOrder {
		if read[name] {
			g.SetInitializer(folded[name])
		} else {
			gone[name] = true
		}
	}
	declared := map[string]bool{}
	for _, vi := range g.rest.Input {
		declared[vi.GetName()] = true
	}
	drop := map[string]bool{}
	for _, name := range foldedReads {
		if _, ok := g.inits[name]; ok && !read[name] && !outputs[name] && !declared[name] {
			drop[name], gone[name] = true, true
		}
	}
	if len(drop) > 0 {
		order := g.initOrder[:0]
		for _, name := range g.initOrder {
			if drop[name] {
				delete(g.inits, name)
			} else {
				order = append(order, name)
			}
		}
		g.initOrder = order
	}
	vis := g.rest.ValueInfo[:0]
	for _, vi := range g.rest.ValueInfo {
		if !gone[vi.GetName()] {
			vis = append(vis, vi)
		}
	}
	clear(g.rest.ValueInfo[len(vis):])
	g.rest.ValueInfo = vis
	return len(foldedOrder), nil
}

// foldable reports whether FoldConstants may replace node n by an initializer: an operator it
// computes, of the default domain, with one output that is not a graph output.
func foldable(n *Node, outputs map[string]bool) bool {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return false
	}
	if len(n.Outputs) != 1 || n.Outputs[0] == "" || outputs[n.Outputs[0]] {
		return false
	}
	switch n.Op {
	case "Constant":
		return len(n.Inputs) == 0
	case "Identity", "Cast", "Transpose", "Flatten":
		return len(n.Inputs) == 1 && n.Inputs[0] != ""
	case "Reshape": // the shape is the second input, or an attribute before opset 5
		return (len(n.Inputs) == 2 && n.Inputs[0] != "" && n.Inputs[1] != "") ||
			(len(n.Inputs) == 1 && n.Inputs[0] != "" && n.Attr("shape") != nil)
	case "Squeeze", "Unsqueeze":
		return len(n.Inputs) >= 1 && len(n.Inputs) <= 2 && n.Inputs[0] != ""
	}
	return false
}

// foldNode computes the output of node n from its constant inputs in (nil for an omitted
// optional input). It returns nil, and no error, for a node it leaves as it is, and an error
// wrapping errMalformed for an input whose data does not match its shape or type.
func foldNode(n *Node, in []*onnxpb.TensorProto) (*onnxpb.TensorProto, error) {
	if n.Op == "Constant" {
		return constantValue(n)
	}
	if n.Op == "Identity" {
		if !plain(in[0]) {
			return nil, nil
		}
		if err := checkData(in[0]); err != nil {
			return nil, err
		}
		return proto.Clone(in[0]).(*onnxpb.TensorProto), nil
	}
	x, err := denseOf(in[0])
	if x == nil || err != nil {
		return nil, err
	}
	var y *dense
	switch n.Op {
	case "Cast":
		a := n.Attr("to")
		if a == nil {
			return nil, nil
		}
		y = x.cast(onnxpb.TensorProto_DataType(a.GetI()))
	case "Reshape":
		var shape []int64
		if len(in) == 1 {
			shape = n.AttrInts("shape") // opset < 5
		} else if shape, err = intsOf(in[1]); shape == nil || err != nil {
			return nil, err
		}
		y = x.reshape(shape, n.AttrInt("allowzero", 0) != 0)
	case "Transpose":
		var perm []int64
		if a := n.Attr("perm"); a != nil {
			perm = a.GetInts()
		} else {
			for i := len(x.dims) - 1; i >= 0; i-- {
				perm = append(perm, int64(i))
			}
		}
		y = x.transpose(perm)
	case "Squeeze", "Unsqueeze":
		axes := n.AttrInts("axes") // opset < 13
		if len(in) == 2 && in[1] != nil {
			if n.Attr("axes") != nil {
				return nil, nil
			}
			if axes, err = intsOf(in[1]); axes == nil || err != nil {
				return nil, err
			}
		}
		if n.Op == "Squeeze" {
			y = x.squeeze(axes)
		} else {
			y = x.unsqueeze(axes)
		}
	case "Flatten":
		y = x.flatten(n.AttrInt("axis", 1))
	}
	if y == nil {
		return nil, nil
	}
	return y.tensor(), nil
}

// constantValue returns the tensor a Constant node holds, or nil for one it leaves (sparse or
// external data, an attribute it does not know).
func constantValue(n *Node) (*onnxpb.TensorProto, error) {
	if len(n.Attrs) != 1 || n.Attrs[0].RefAttrName != nil {
		return nil, nil
	}
	a := n.Attrs[0]
	t := new(onnxpb.TensorProto)
	switch a.GetName() {
	case "value":
		if a.T == nil {
			return nil, fmt.Errorf("%w: attribute value holds no tensor", errMalformed)
		}
		if !plain(a.T) {
			return nil, nil
		}
		if err := checkData(a.T); err != nil {
			return nil, fmt.Errorf("attribute value: %w", err)
		}
		return proto.Clone(a.T).(*onnxpb.TensorProto), nil
	case "value_float":
		t = FloatTensor("", nil, []float32{a.GetF()})
	case "value_floats":
		t = FloatTensor("", []int64{int64(len(a.Floats))}, a.Floats)
	case "value_int":
		t = (&dense{dt: onnxpb.TensorProto_INT64, raw: binary.LittleEndian.AppendUint64(nil, uint64(a.GetI()))}).tensor()
	case "value_ints":
		d := &dense{dt: onnxpb.TensorProto_INT64, dims: []int64{int64(len(a.Ints))}}
		for _, v := range a.Ints {
			d.raw = binary.LittleEndian.AppendUint64(d.raw, uint64(v))
		}
		t = d.tensor()
	case "value_string":
		t.DataType = proto.Int32(int32(onnxpb.TensorProto_STRING))
		t.StringData = [][]byte{bytes.Clone(a.S)}
	case "value_strings":
		t.DataType = proto.Int32(int32(onnxpb.TensorProto_STRING))
		t.Dims = []int64{int64(len(a.Strings))}
		for _, s := range a.Strings {
			t.StringData = append(t.StringData, bytes.Clone(s))
		}
	default:
		return nil, nil
	}
	return t, nil
}

// plain reports whether t holds its data in the tensor itself (not external, not segmented).
func plain(t *onnxpb.TensorProto) bool {
	return t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL && t.Segment == nil
}

// checkData returns an error wrapping errMalformed when a tensor of a fixed-size element type
// holds more or fewer values than its shape needs. Other element types are not checked.
func checkData(t *onnxpb.TensorProto) error {
	size := elemSize(onnxpb.TensorProto_DataType(t.GetDataType()))
	if size == 0 {
		return nil
	}
	n, err := NumElements(t.Dims)
	if err != nil {
		return fmt.Errorf("%w: tensor %q: %v", errMalformed, t.GetName(), err)
	}
	if t.RawData != nil {
		if int64(len(t.RawData)) != int64(n)*size {
			return fmt.Errorf("%w: tensor %q: raw_data has %d bytes, shape %v needs %d",
				errMalformed, t.GetName(), len(t.RawData), t.Dims, int64(n)*size)
		}
		return nil
	}
	field, have := typedField(t)
	if have != n {
		return fmt.Errorf("%w: tensor %q: %s has %d values, shape %v needs %d",
			errMalformed, t.GetName(), field, have, t.Dims, n)
	}
	return nil
}

// typedField names the field that holds the values of t when it has no raw_data, and gives
// their count.
func typedField(t *onnxpb.TensorProto) (string, int) {
	switch onnxpb.TensorProto_DataType(t.GetDataType()) {
	case onnxpb.TensorProto_FLOAT:
		return "float_data", len(t.FloatData)
	case onnxpb.TensorProto_DOUBLE:
		return "double_data", len(t.DoubleData)
	case onnxpb.TensorProto_INT64:
		return "int64_data", len(t.Int64Data)
	case onnxpb.TensorProto_UINT32, onnxpb.TensorProto_UINT64:
		return "uint64_data", len(t.Uint64Data)
	}
	return "int32_data", len(t.Int32Data)
}

// dense is a tensor of a fixed-size element type: dims, and the elements in row-major order as
// little-endian bytes (elemSize(dt) bytes each).
type dense struct {
	dt   onnxpb.TensorProto_DataType
	dims []int64
	raw  []byte
}

// denseOf decodes t, or returns nil for a tensor it does not handle (element type of no fixed
// size, external or segmented data). The error wraps errMalformed.
func denseOf(t *onnxpb.TensorProto) (*dense, error) {
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	size := elemSize(dt)
	if size == 0 || !plain(t) {
		return nil, nil
	}
	if err := checkData(t); err != nil {
		return nil, err
	}
	d := &dense{dt: dt, dims: t.Dims}
	if t.RawData != nil {
		d.raw = t.RawData // never written: every operation below makes new bytes
		return d, nil
	}
	n, _ := NumElements(t.Dims) // checked by checkData
	d.raw = make([]byte, 0, int64(n)*size)
	le := binary.LittleEndian
	switch dt {
	case onnxpb.TensorProto_FLOAT:
		for _, v := range t.FloatData {
			d.raw = le.AppendUint32(d.raw, math.Float32bits(v))
		}
	case onnxpb.TensorProto_DOUBLE:
		for _, v := range t.DoubleData {
			d.raw = le.AppendUint64(d.raw, math.Float64bits(v))
		}
	case onnxpb.TensorProto_INT64:
		for _, v := range t.Int64Data {
			d.raw = le.AppendUint64(d.raw, uint64(v))
		}
	case onnxpb.TensorProto_UINT32:
		for _, v := range t.Uint64Data {
			d.raw = le.AppendUint32(d.raw, uint32(v))
		}
	case onnxpb.TensorProto_UINT64:
		for _, v := range t.Uint64Data {
			d.raw = le.AppendUint64(d.raw, v)
		}
	default: // int32_data holds INT32 and the types narrower than it (their bits, low first)
		var b [4]byte
		for _, v := range t.Int32Data {
			le.PutUint32(b[:], uint32(v))
			d.raw = append(d.raw, b[:size]...)
		}
	}
	return d, nil
}

// intsOf decodes a 1-D INT64 tensor (a shape or axes operand), or returns nil for another type
// or rank.
func intsOf(t *onnxpb.TensorProto) ([]int64, error) {
	if onnxpb.TensorProto_DataType(t.GetDataType()) != onnxpb.TensorProto_INT64 || len(t.Dims) != 1 {
		return nil, nil
	}
	d, err := denseOf(t)
	if d == nil || err != nil {
		return nil, err
	}
	out := make([]int64, 0, len(d.raw)/8)
	for i := 0; i < len(d.raw); i += 8 {
		out = append(out, int64(binary.LittleEndian.Uint64(d.raw[i:])))
	}
	return out, nil
}

// tensor returns d as an unnamed TensorProto with raw_data.
func (d *dense) tensor() *onnxpb.TensorProto {
	return &onnxpb.TensorProto{
		DataType: proto.Int32(int32(d.dt)),
		Dims:     append([]int64(nil), d.dims...),
		RawData:  d.raw,
	}
}

// withDims returns d with other dims and a copy of its bytes, or nil when dims hold another
// number of elements.
func (d *dense) withDims(dims []int64) *dense {
	n, err := NumElements(dims)
	if err != nil || int64(n)*elemSize(d.dt) != int64(len(d.raw)) {
		return nil
	}
	return &dense{dt: d.dt, dims: dims, raw: bytes.Clone(d.raw)}
}

// reshape is ONNX Reshape: a 0 in shape copies the input's dimension at that index (unless
// allowZero, where it is a dimension of 0), and one -1 takes what remains. It returns nil for a
// shape that breaks these rules or holds another number of elements.
func (d *dense) reshape(shape []int64, allowZero bool) *dense {
	n := int64(len(d.raw)) / elemSize(d.dt)
	out := make([]int64, len(shape))
	infer, zero := -1, false
	known := int64(1)
	for i, s := range shape {
		switch {
		case s == -1:
			if infer >= 0 {
				return nil
			}
			infer = i
			continue
		case s == 0 && !allowZero:
			if i >= len(d.dims) {
				return nil
			}
			s = d.dims[i]
		case s < 0:
			return nil
		}
		zero = zero || s == 0
		out[i] = s
		if s > 0 && known > MaxElements/s { // more elements than any tensor holds
			return nil
		}
		known *= s
	}
	if infer >= 0 {
		if zero || known == 0 || n%known != 0 {
			return nil // a 0 beside -1 leaves -1 undetermined
		}
		out[infer] = n / known
	}
	return d.withDims(out)
}

// transpose is ONNX Transpose: output dimension i is input dimension perm[i]. It returns nil
// when perm is not a permutation of the input's axes.
func (d *dense) transpose(perm []int64) *dense {
	r := len(d.dims)
	if len(perm) != r {
		return nil
	}
	seen := make([]bool, r)
	for _, p := range perm {
		if p < 0 || p >= int64(r) || seen[p] {
			return nil
		}
		seen[p] = true
	}
	size := int(elemSize(d.dt))
	stride := make([]int, r) // of the input, in elements
	for i, s := r-1, 1; i >= 0; i-- {
		stride[i] = s
		s *= int(d.dims[i])
	}
	dims := make([]int64, r)
	step := make([]int, r) // input stride of each output axis
	for i, p := range perm {
		dims[i], step[i] = d.dims[p], stride[p]
	}
	out := make([]byte, len(d.raw))
	if len(out) == 0 {
		return &dense{dt: d.dt, dims: dims, raw: out}
	}
	idx := make([]int64, r)
	src := 0
	for o := 0; o < len(out); o += size {
		copy(out[o:o+size], d.raw[src*size:])
		for a := r - 1; a >= 0; a-- { // next output index, last axis fastest
			idx[a]++
			src += step[a]
			if idx[a] < dims[a] {
				break
			}
			src -= int(idx[a]) * step[a]
			idx[a] = 0
		}
	}
	return &dense{dt: d.dt, dims: dims, raw: out}
}

// squeeze is ONNX Squeeze: it removes the axes listed (negative ones count from the end), all
// of size 1, or every axis of size 1 when axes is empty. It returns nil for an axis out of range,
// repeated, or not of size 1.
func (d *dense) squeeze(axes []int64) *dense {
	r := int64(len(d.dims))
	drop := make([]bool, r)
	for _, a := range axes {
		if a < 0 {
			a += r
		}
		if a < 0 || a >= r || drop[a] || d.dims[a] != 1 {
			return nil
		}
		drop[a] = true
	}
	dims := []int64{}
	for i, s := range d.dims {
		if !drop[i] && (len(axes) > 0 || s != 1) {
			dims = append(dims, s)
		}
	}
	return d.withDims(dims)
}

// unsqueeze is ONNX Unsqueeze: it inserts axes of size 1 at the positions listed, in the output
// (negative ones count from its end). It returns nil for no axes, an axis out of range or a
// repeated one.
func (d *dense) unsqueeze(axes []int64) *dense {
	r := int64(len(d.dims) + len(axes))
	if len(axes) == 0 {
		return nil
	}
	one := make([]bool, r)
	for _, a := range axes {
		if a < 0 {
			a += r
		}
		if a < 0 || a >= r || one[a] {
			return nil
		}
		one[a] = true
	}
	dims := make([]int64, 0, r)
	next := 0
	for i := range one {
		if one[i] {
			dims = append(dims, 1)
		} else {
			dims = append(dims, d.dims[next])
			next++
		}
	}
	return d.withDims(dims)
}

// flatten is ONNX Flatten: a 2-D tensor of the dimensions before axis times those from axis on
// (a negative axis counts from the end). It returns nil for an axis out of range.
func (d *dense) flatten(axis int64) *dense {
	r := int64(len(d.dims))
	if axis < 0 {
		axis += r
	}
	if axis < 0 || axis > r {
		return nil
	}
	outer, err1 := NumElements(d.dims[:axis])
	inner, err2 := NumElements(d.dims[axis:])
	if err1 != nil || err2 != nil {
		return nil
	}
	return d.withDims([]int64{int64(outer), int64(inner)})
}

// cast is ONNX Cast for the conversions it is exact or IEEE-rounded for: to FLOAT or DOUBLE from
// any float or integer type (rounded to nearest even), and to INT32 or INT64 from an integer
// type or BOOL when every value fits. It returns nil for any other conversion.
func (d *dense) cast(to onnxpb.TensorProto_DataType) *dense {
	n := len(d.raw) / int(elemSize(d.dt))
	out := &dense{dt: to, dims: d.dims, raw: make([]byte, 0, n*int(elemSize(to)))}
	le := binary.LittleEndian
	switch {
	case isFloat(d.dt) && (to == onnxpb.TensorProto_FLOAT || to == onnxpb.TensorProto_DOUBLE):
		for i := 0; i < n; i++ {
			v := d.floatAt(i)
			if to == onnxpb.TensorProto_FLOAT {
				out.raw = le.AppendUint32(out.raw, math.Float32bits(float32(v)))
			} else {
				out.raw = le.AppendUint64(out.raw, math.Float64bits(v))
			}
		}
	case isInt(d.dt):
		for i := 0; i < n; i++ {
			v, ok := d.intAt(i)
			if !ok {
				return nil // a uint64 above the int64 range
			}
			switch to {
			case onnxpb.TensorProto_FLOAT:
				out.raw = le.AppendUint32(out.raw, math.Float32bits(float32(v)))
			case onnxpb.TensorProto_DOUBLE:
				out.raw = le.AppendUint64(out.raw, math.Float64bits(float64(v)))
			case onnxpb.TensorProto_INT64:
				out.raw = le.AppendUint64(out.raw, uint64(v))
			case onnxpb.TensorProto_INT32:
				if v != int64(int32(v)) {
					return nil
				}
				out.raw = le.AppendUint32(out.raw, uint32(int32(v)))
			default:
				return nil
			}
		}
	default:
		return nil
	}
	return out
}

func isFloat(dt onnxpb.TensorProto_DataType) bool {
	switch dt {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16:
		return true
	}
	return false
}

func isInt(dt onnxpb.TensorProto_DataType) bool {
	switch dt {
	case onnxpb.TensorProto_INT8, onnxpb.TensorProto_INT16, onnxpb.TensorProto_INT32, onnxpb.TensorProto_INT64,
		onnxpb.TensorProto_UINT8, onnxpb.TensorProto_UINT16, onnxpb.TensorProto_UINT32, onnxpb.TensorProto_UINT64,
		onnxpb.TensorProto_BOOL:
		return true
	}
	return false
}

// floatAt returns element i of a float tensor (isFloat), exactly.
func (d *dense) floatAt(i int) float64 {
	le := binary.LittleEndian
	switch d.dt {
	case onnxpb.TensorProto_FLOAT:
		return float64(math.Float32frombits(le.Uint32(d.raw[4*i:])))
	case onnxpb.TensorProto_DOUBLE:
		return math.Float64frombits(le.Uint64(d.raw[8*i:]))
	case onnxpb.TensorProto_FLOAT16:
		return halfToFloat64(le.Uint16(d.raw[2*i:]))
	case onnxpb.TensorProto_BFLOAT16:
		return float64(math.Float32frombits(uint32(le.Uint16(d.raw[2*i:])) << 16))
	}
	panic("onnxio: floatAt of " + d.dt.String())
}

// intAt returns element i of an integer or BOOL tensor (isInt); ok is false for a UINT64 value
// above the int64 range. A BOOL is 1 for any non-zero byte.
func (d *dense) intAt(i int) (v int64, ok bool) {
	le := binary.LittleEndian
	switch d.dt {
	case onnxpb.TensorProto_INT8:
		return int64(int8(d.raw[i])), true
	case onnxpb.TensorProto_UINT8:
		return int64(d.raw[i]), true
	case onnxpb.TensorProto_BOOL:
		if d.raw[i] != 0 {
			return 1, true
		}
		return 0, true
	case onnxpb.TensorProto_INT16:
		return int64(int16(le.Uint16(d.raw[2*i:]))), true
	case onnxpb.TensorProto_UINT16:
		return int64(le.Uint16(d.raw[2*i:])), true
	case onnxpb.TensorProto_INT32:
		return int64(int32(le.Uint32(d.raw[4*i:]))), true
	case onnxpb.TensorProto_UINT32:
		return int64(le.Uint32(d.raw[4*i:])), true
	case onnxpb.TensorProto_INT64:
		return int64(le.Uint64(d.raw[8*i:])), true
	case onnxpb.TensorProto_UINT64:
		u := le.Uint64(d.raw[8*i:])
		return int64(u), u <= math.MaxInt64
	}
	panic("onnxio: intAt of " + d.dt.String())
}

// halfToFloat64 decodes an IEEE 754 half-precision number (exactly: every half is a float64).
func halfToFloat64(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, frac := int(h>>10)&0x1f, float64(h&0x3ff)
	switch exp {
	case 0: // zero or subnormal: frac * 2^-24
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	}
	return sign * math.Ldexp(1024+frac, exp-25)
}
