package ort

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
)

// Several inputs. Data that names no input (.npy, .pb, IDX, images: one unnamed float32 field)
// feeds a model's one float32 input, through Session.Run as it always has. Data whose fields are
// named (an .npz, a dataset.FieldReader) feeds the model's inputs by name, of any type in
// dataset.DType, through Session.RunFeeds: every run-time input needs a field of its name and
// element type, and every field an input.

// Fed is one input of a batch as it was fed to the model.
type Fed struct {
	Name  string
	Type  dataset.DType
	Shape []int64 // batch first
	Data  []byte  // the values, in the host's byte order
}

// Floats returns the values of a float32 input, nil for another type. They share Data's memory.
func (f Fed) Floats() []float32 {
	if f.Type != dataset.Float32 {
		return nil
	}
	return dataset.FloatsOf(f.Data)
}

// dtypes maps the ONNX element types convpca feeds to the types of data sets.
var dtypes = map[onnxpb.TensorProto_DataType]dataset.DType{
	onnxpb.TensorProto_FLOAT:   dataset.Float32,
	onnxpb.TensorProto_FLOAT16: dataset.Float16,
	onnxpb.TensorProto_INT64:   dataset.Int64,
	onnxpb.TensorProto_INT32:   dataset.Int32,
	onnxpb.TensorProto_INT8:    dataset.Int8,
	onnxpb.TensorProto_UINT8:   dataset.Uint8,
	onnxpb.TensorProto_BOOL:    dataset.Bool,
}

// ModelInputs returns every run-time input of the model, in the graph's order.
func ModelInputs(m *onnxio.Model) []Input {
	var out []Input
	for _, vi := range m.Graph.Inputs() {
		dims, _ := onnxio.Shape(vi)
		et := onnxio.ElemType(vi)
		out = append(out, Input{Name: vi.GetName(), Elem: et, Type: dtypes[et], Dims: dims})
	}
	return out
}

// describeInputs lists inputs as `x (float32 ?x3x8x8), ids (int64 ?)`.
func describeInputs(ins []Input) string {
	parts := make([]string, len(ins))
	for i, in := range ins {
		parts[i] = fmt.Sprintf("%s (%s %s)", in.Name, in.typeName(), in)
	}
	return strings.Join(parts, ", ")
}

func (in Input) typeName() string {
	if in.Type != 0 {
		return in.Type.String()
	}
	return strings.ToLower(in.Elem.String())
}

// feed says which model input each field of the data feeds.
type feed struct {
	fields []dataset.Field
	inputs []Input // inputs[i] takes fields[i]
	batch  int
	// single is set for unnamed float32 data fed to the model's one input (Session.Run).
	single bool
}

// planFeed matches the fields of r to the model's inputs and returns the batch size to use: the
// model's fixed batch size when it has one, else want.
func planFeed(m *onnxio.Model, r dataset.Reader, want int) (*feed, error) {
	fields := dataset.FieldsOf(r)
	if len(fields) == 1 && fields[0].Name == "" {
		in, err := ModelInput(m)
		if err != nil {
			return nil, err
		}
		batch, err := in.fit(fields[0].Shape, want)
		if err != nil {
			return nil, err
		}
		return &feed{fields: fields, inputs: []Input{in}, batch: batch, single: fields[0].Type == dataset.Float32}, nil
	}
	ins := ModelInputs(m)
	byName := map[string]Input{}
	for _, in := range ins {
		byName[in.Name] = in
	}
	f := &feed{fields: fields, batch: -1}
	have := map[string]bool{}
	for _, fd := range fields {
		in, ok := byName[fd.Name]
		if !ok {
			return nil, fmt.Errorf("the data's array %q is no input of the model (its inputs: %s)", fd.Name, describeInputs(ins))
		}
		have[fd.Name] = true
		if in.Type == 0 {
			return nil, fmt.Errorf("model input %q has element type %s, which convpca cannot feed", in.Name, in.typeName())
		}
		if in.Type != fd.Type {
			return nil, fmt.Errorf("model input %q is %v but the data's array %q is %v", in.Name, in.Type, fd.Name, fd.Type)
		}
		batch, err := in.fit(fd.Shape, want)
		if err != nil {
			return nil, err
		}
		if in.Dims != nil && in.Dims[0] > 0 && f.batch >= 0 && batch != f.batch {
			return nil, fmt.Errorf("model inputs declare different fixed batch sizes (%d and %d)", f.batch, batch)
		}
		if f.batch < 0 || (in.Dims != nil && in.Dims[0] > 0) {
			f.batch = batch
		}
		f.inputs = append(f.inputs, in)
	}
	for _, in := range ins {
		if !have[in.Name] {
			return nil, fmt.Errorf("the data has no array for model input %q (%s %s); it holds %s", in.Name, in.typeName(), in, describeFields(fields))
		}
	}
	return f, nil
}

// fixedBatch returns the name of an input fed that has a fixed batch size, or "".
func (f *feed) fixedBatch() string {
	for _, in := range f.inputs {
		if len(in.Dims) > 0 && in.Dims[0] > 0 {
			return in.Name
		}
	}
	return ""
}

func (f *feed) names() []string {
	out := make([]string, len(f.inputs))
	for i, in := range f.inputs {
		out[i] = in.Name
	}
	return out
}

func describeFields(fields []dataset.Field) string {
	parts := make([]string, len(fields))
	for i, fd := range fields {
		name := fd.Name
		if name == "" {
			name = "unnamed"
		}
		parts[i] = fmt.Sprintf("%s (%v %s)", name, fd.Type, dimsString(fd.Shape))
	}
	return strings.Join(parts, ", ")
}

// inferFields is Infer's loop for data of named fields (see planFeed).
func inferFields(sess *Session, f *feed, r dataset.Reader, opts Options, fn func(b Batch) error) (int, error) {
	fr, ok := r.(dataset.FieldReader)
	if !ok {
		return 0, errors.New("data of named arrays must be a dataset.FieldReader")
	}
	bufs := make([][]byte, len(f.fields))
	feeds := make([]Fed, len(f.fields))
	for i, fd := range f.fields {
		words := make([]uint64, (f.batch*fd.Bytes()+7)/8) // 8-byte aligned for any type
		bufs[i] = unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), 8*len(words))[:f.batch*fd.Bytes()]
		dims := []int64{0}
		for _, d := range fd.Shape {
			dims = append(dims, int64(d))
		}
		feeds[i] = Fed{Name: f.inputs[i].Name, Type: fd.Type, Shape: dims}
	}
	dst := make([][]byte, len(bufs))
	read := func(i int) (int, error) {
		for j, fd := range f.fields {
			dst[j] = bufs[j][i*fd.Bytes() : f.batch*fd.Bytes()]
		}
		return fr.ReadFields(dst)
	}
	return f.batches(r, opts, read, func(first, n int) error {
		for i, fd := range f.fields {
			feeds[i].Shape[0] = int64(n)
			feeds[i].Data = bufs[i][:n*fd.Bytes()]
			if j := dataset.FirstNonFinite(feeds[i].Data, fd.Type); j >= 0 {
				return fmt.Errorf("data sample %d of input %q holds a NaN or infinite value; calibration needs finite values", first+j/max(1, fd.Bytes()/fd.Type.Size()), fd.Name)
			}
		}
		b := Batch{First: first, N: n, Inputs: feeds}
		if len(feeds) == 1 {
			b.Input = feeds[0].Floats()
		}
		return sess.RunFeeds(feeds, func(outs []Output) error {
			b.Outputs = outs
			return fn(b)
		})
	})
}
