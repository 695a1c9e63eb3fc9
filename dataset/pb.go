package dataset

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio/onnxpb"
)

// decodePB decodes a serialized ONNX TensorProto of type FLOAT or DOUBLE (raw_data, float_data or
// double_data) into a Reader of its samples, the first dimension being the sample count. The data
// length is checked against the dims before any value is decoded. Errors start with name.
func decodePB(name string, data []byte) (*memReader, error) {
	var t onnxpb.TensorProto
	if err := proto.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("%s: not an ONNX TensorProto: %w", name, err)
	}
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return nil, fmt.Errorf("%s: tensors with external data are not supported", name)
	}
	dims := t.GetDims()
	n, shape, size, err := sampleShape(dims)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// All elements: size <= onnxio.MaxElements, and n fits in the data checked below.
	var have, width int
	var field string
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	switch {
	case dt != onnxpb.TensorProto_FLOAT && dt != onnxpb.TensorProto_DOUBLE:
		return nil, fmt.Errorf("%s: element type %v is not supported; want FLOAT or DOUBLE", name, dt)
	case t.RawData != nil:
		field, have, width = "raw_data", len(t.RawData), 4
		if dt == onnxpb.TensorProto_DOUBLE {
			width = 8
		}
	case dt == onnxpb.TensorProto_FLOAT:
		field, have, width = "float_data", len(t.FloatData), 1
	default:
		field, have, width = "double_data", len(t.DoubleData), 1
	}
	// have is bounded by len(data), so this check also bounds n*size.
	if have%width != 0 || n > have/width/size || n*size != have/width {
		return nil, fmt.Errorf("%s: %s holds %d %s but shape %v needs %d samples of %d %s",
			name, field, have, unit(width), dims, n, size*width, unit(width))
	}
	out := make([]float32, n*size)
	switch {
	case t.RawData != nil && dt == onnxpb.TensorProto_FLOAT:
		decodeF32(out, t.RawData)
	case t.RawData != nil:
		decodeF64(out, t.RawData)
	case dt == onnxpb.TensorProto_FLOAT:
		copy(out, t.FloatData)
	default:
		for i, v := range t.DoubleData {
			out[i] = float32(v)
		}
	}
	return &memReader{data: out, shape: shape, size: size, n: n}, nil
}

// unit names what a data field of width bytes per element counts.
func unit(width int) string {
	if width == 1 {
		return "values"
	}
	return "bytes"
}
