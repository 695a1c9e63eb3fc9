package onnxio

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio/onnxpb"
)

// MaxElements bounds the element count of any tensor convpca decodes (2^31), so that a declared
// shape that is absurd is refused before anything is allocated.
const MaxElements = 1 << 31

// NumElements returns the product of dims, or an error when a dimension is negative or the
// product exceeds MaxElements.
func NumElements(dims []int64) (int, error) {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", dims)
		}
		if d > 0 && n > MaxElements/d {
			return 0, fmt.Errorf("shape %v has more than %d elements", dims, int64(MaxElements))
		}
		n *= d
	}
	return int(n), nil
}

// Float64s decodes a FLOAT or DOUBLE tensor (raw_data, float_data or double_data) into float64
// values in row-major order.
func Float64s(t *onnxpb.TensorProto) ([]float64, error) {
	n, err := NumElements(t.Dims)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return nil, fmt.Errorf("tensor %q: external data is not supported", t.GetName())
	}
	// Sizes are checked against the stored data before anything of size n is allocated.
	var out []float64
	switch dt := onnxpb.TensorProto_DataType(t.GetDataType()); dt {
	case onnxpb.TensorProto_FLOAT:
		if raw := t.RawData; raw != nil {
			if len(raw) != 4*n {
				return nil, fmt.Errorf("tensor %q: raw_data has %d bytes, shape %v needs %d", t.GetName(), len(raw), t.Dims, 4*n)
			}
			out = make([]float64, 0, n)
			for i := 0; i < n; i++ {
				out = append(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))))
			}
			return out, nil
		}
		if len(t.FloatData) != n {
			return nil, fmt.Errorf("tensor %q: float_data has %d values, shape %v needs %d", t.GetName(), len(t.FloatData), t.Dims, n)
		}
		out = make([]float64, 0, n)
		for _, v := range t.FloatData {
			out = append(out, float64(v))
		}
	case onnxpb.TensorProto_DOUBLE:
		if raw := t.RawData; raw != nil {
			if len(raw) != 8*n {
				return nil, fmt.Errorf("tensor %q: raw_data has %d bytes, shape %v needs %d", t.GetName(), len(raw), t.Dims, 8*n)
			}
			out = make([]float64, 0, n)
			for i := 0; i < n; i++ {
				out = append(out, math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
			}
			return out, nil
		}
		if len(t.DoubleData) != n {
			return nil, fmt.Errorf("tensor %q: double_data has %d values, shape %v needs %d", t.GetName(), len(t.DoubleData), t.Dims, n)
		}
		out = append(make([]float64, 0, n), t.DoubleData...)
	default:
		return nil, fmt.Errorf("tensor %q: element type %v is not float or double", t.GetName(), dt)
	}
	return out, nil
}

// Float32s is Float64s rounded to float32.
func Float32s(t *onnxpb.TensorProto) ([]float32, error) {
	v, err := Float64s(t)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out, nil
}

// FloatTensor returns a FLOAT tensor with the given name, dims and row-major values (stored as
// raw_data). It panics when len(data) does not match dims.
func FloatTensor(name string, dims []int64, data []float32) *onnxpb.TensorProto {
	n, err := NumElements(dims)
	if err != nil || n != len(data) {
		panic(fmt.Sprintf("onnxio: FloatTensor %q: %d values for shape %v", name, len(data), dims))
	}
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &onnxpb.TensorProto{
		Name:     proto.String(name),
		DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
		Dims:     append([]int64(nil), dims...),
		RawData:  raw,
	}
}

// Shape returns the dims a ValueInfoProto declares for a tensor: -1 for a dimension that is
// unknown or symbolic, nil (with ok false) when no shape is declared.
func Shape(vi *onnxpb.ValueInfoProto) (dims []int64, ok bool) {
	tt := vi.GetType().GetTensorType()
	if tt == nil || tt.Shape == nil {
		return nil, false
	}
	dims = make([]int64, len(tt.Shape.Dim))
	for i, d := range tt.Shape.Dim {
		dims[i] = -1
		if v, isVal := d.Value.(*onnxpb.TensorShapeProto_Dimension_DimValue); isVal && v.DimValue > 0 {
			dims[i] = v.DimValue
		}
	}
	return dims, true
}

// ElemType returns the element type a ValueInfoProto declares (UNDEFINED when it has none).
func ElemType(vi *onnxpb.ValueInfoProto) onnxpb.TensorProto_DataType {
	return onnxpb.TensorProto_DataType(vi.GetType().GetTensorType().GetElemType())
}
