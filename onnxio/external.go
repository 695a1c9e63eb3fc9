package onnxio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio/onnxpb"
)

// External data: ONNX keeps large tensors outside the model file when data_location is
// EXTERNAL, with external_data entries "location" (a path relative to the model's folder),
// "offset" and "length" (bytes). Load reads them into the tensors, so the rest of convpca sees
// ordinary tensors; SaveWith writes them out again when asked or when the model would exceed
// protobuf's 2 GB limit. A location that is absolute or climbs out of the model's folder is
// refused, as is a range that does not fit the file.

// protoLimit is the largest message protobuf serializes (2 GiB - 1).
const protoLimit = 1<<31 - 1

// externalMin is the smallest tensor (in bytes) that SaveWith moves to the external file.
const externalMin = 1024

// ErrExternal is returned (wrapped) for external data that cannot be used.
var ErrExternal = errors.New("bad external data")

func readExternal(t *onnxpb.TensorProto, dir string) error {
	var location string
	offset, length := int64(0), int64(-1)
	for _, kv := range t.ExternalData {
		var err error
		switch kv.GetKey() {
		case "location":
			location = kv.GetValue()
		case "offset":
			offset, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		case "length":
			length, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		}
		if err != nil || offset < 0 || (kv.GetKey() == "length" && length < 0) {
			return fmt.Errorf("%w: %s %q is not a byte count", ErrExternal, kv.GetKey(), kv.GetValue())
		}
	}
	if location == "" {
		return fmt.Errorf("%w: no location", ErrExternal)
	}
	if filepath.IsAbs(location) || !filepath.IsLocal(location) {
		return fmt.Errorf("%w: location %q is outside the model's folder", ErrExternal, location)
	}
	f, err := os.Open(filepath.Join(dir, location))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrExternal, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrExternal, err)
	}
	if length < 0 {
		length = st.Size() - offset
	}
	if offset > st.Size() || length > st.Size()-offset {
		return fmt.Errorf("%w: bytes %d to %d of %s, which holds %d", ErrExternal, offset, offset+length, location, st.Size())
	}
	if n, err := NumElements(t.Dims); err != nil {
		return err
	} else if size := elemSize(onnxpb.TensorProto_DataType(t.GetDataType())); size > 0 && int64(n)*size != length {
		return fmt.Errorf("%w: %d bytes for shape %v of %d-byte elements", ErrExternal, length, t.Dims, size)
	}
	raw := make([]byte, length)
	if _, err := f.ReadAt(raw, offset); err != nil && !(err == io.EOF && length == 0) {
		return fmt.Errorf("%w: %v", ErrExternal, err)
	}
	t.RawData, t.ExternalData, t.DataLocation = raw, nil, nil
	return nil
}

// elemSize is the byte size of fixed-size element types (0 when not fixed or unknown).
func elemSize(dt onnxpb.TensorProto_DataType) int64 {
	switch dt {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_INT32, onnxpb.TensorProto_UINT32:
		return 4
	case onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_INT64, onnxpb.TensorProto_UINT64:
		return 8
	case onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16, onnxpb.TensorProto_INT16, onnxpb.TensorProto_UINT16:
		return 2
	case onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT8, onnxpb.TensorProto_BOOL:
		return 1
	}
	return 0
}

// SaveOptions say how SaveWith writes a model.
type SaveOptions struct {
	// External writes every initializer of at least 1 KiB to PATH.data beside the model (the
	// model then names it by its base name). Models over 2 GB are always saved so.
	External bool
}

// SaveWith is Save with options. With external data, the data file is written (atomically)
// before the model, so a model on disk never names data that is not there yet.
func SaveWith(path string, m *Model, opts SaveOptions) error {
	if !opts.External {
		size := 0
		for _, t := range m.Graph.Initializers() {
			size += len(t.RawData) + 4*len(t.FloatData) + 8*len(t.DoubleData)
		}
		if size < protoLimit-(64<<20) { // leave room for the rest of the model
			return Save(path, m)
		}
	}
	data := filepath.Base(path) + ".data"
	out := m.clone(false) // only replaces initializers: no need to copy their bytes
	var moved []*onnxpb.TensorProto
	g := out.Graph
	for _, t := range g.Initializers() {
		if len(t.RawData) >= externalMin {
			moved = append(moved, t)
		}
	}
	err := WriteFileAtomic(filepath.Join(filepath.Dir(path), data), func(w io.Writer) error {
		var offset int64
		for _, t := range moved {
			if _, err := w.Write(t.RawData); err != nil {
				return err
			}
			ext := proto.Clone(t).(*onnxpb.TensorProto)
			ext.RawData = nil
			ext.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
			ext.ExternalData = []*onnxpb.StringStringEntryProto{
				{Key: proto.String("location"), Value: proto.String(data)},
				{Key: proto.String("offset"), Value: proto.String(strconv.FormatInt(offset, 10))},
				{Key: proto.String("length"), Value: proto.String(strconv.Itoa(len(t.RawData)))},
			}
			g.SetInitializer(ext)
			offset += int64(len(t.RawData))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return Save(path, out)
}
