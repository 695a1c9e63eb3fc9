package dataset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"unsafe"
)

// DType is the element type of one input of a sample.
type DType int

// The element types a FieldReader yields. Data of float64 is converted to Float32 on reading,
// as .npy data is.
const (
	Float32 DType = iota + 1
	Float16
	Int64
	Int32
	Int8
	Uint8
	Bool
)

var dtypeNames = map[DType]string{Float32: "float32", Float16: "float16", Int64: "int64", Int32: "int32", Int8: "int8", Uint8: "uint8", Bool: "bool"}

func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", int(d))
}

// Size is the number of bytes of one element.
func (d DType) Size() int {
	switch d {
	case Float32, Int32:
		return 4
	case Float16:
		return 2
	case Int64:
		return 8
	case Int8, Uint8, Bool:
		return 1
	}
	return 0
}

// Field describes one input of a sample.
type Field struct {
	// Name is the model input the values feed; "" for data that names no input (.npy, .pb,
	// IDX, images), which feeds a model's only input.
	Name  string
	Type  DType
	Shape []int // of one sample, without the batch dimension
}

// Bytes is the size of one sample of the field in bytes.
func (f Field) Bytes() int { return numel(f.Shape) * f.Type.Size() }

// FieldReader is a Reader whose samples are one or more named inputs of any DType (an .npz
// file). Shape and Read of its Reader side describe and read its first field, and Read fails
// unless that is its only field and is float32.
type FieldReader interface {
	Reader
	// Fields describes the inputs of one sample, in a fixed order.
	Fields() []Field
	// ReadFields fills dst[i], which holds a whole number k of samples of Fields()[i] (the same
	// k for every field), with the next samples, in the host's byte order (as onnxruntime takes
	// them), and returns how many it read: 0, io.EOF when none are left. A short final read is
	// allowed. After an error, every call returns an error.
	ReadFields(dst [][]byte) (n int, err error)
}

// FieldsOf returns the inputs of r's samples: its Fields when it is a FieldReader, else one
// unnamed float32 input of r.Shape().
func FieldsOf(r Reader) []Field {
	if fr, ok := r.(FieldReader); ok {
		return fr.Fields()
	}
	return []Field{{Type: Float32, Shape: r.Shape()}}
}

// samplesIn returns the number k of whole samples of each field that dst holds, or an error
// when the buffers do not hold the same whole number of samples.
func samplesIn(dst [][]byte, fields []Field) (int, error) {
	if len(dst) != len(fields) {
		return 0, fmt.Errorf("calib: %d read buffers for %d fields", len(dst), len(fields))
	}
	k := -1
	for i, f := range fields {
		b := f.Bytes()
		if b <= 0 || len(dst[i])%b != 0 || (k >= 0 && len(dst[i])/b != k) {
			return 0, fmt.Errorf("calib: read buffers of %d bytes for field %q hold no whole number of samples of %d bytes, the same for every field", len(dst[i]), f.Name, b)
		}
		k = len(dst[i]) / b
	}
	return k, nil
}

// BytesOf returns the memory of x as bytes, in the host's byte order.
func BytesOf(x []float32) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))
}

// FloatsOf returns the memory of b, which must be 4-byte aligned, as float32 values in the host's
// byte order.
func FloatsOf(b []byte) []float32 {
	if len(b) < 4 {
		return nil
	}
	if uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		panic("calib: FloatsOf of unaligned bytes")
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// Float16 holds no NaN or infinity when its exponent bits are not all ones.
const f16ExpMask = 0x7c00

// FirstNonFinite returns the index of the first NaN or infinite value of the float32 or float16
// values b holds (host byte order), or -1; other types hold no such values.
func FirstNonFinite(b []byte, t DType) int {
	switch t {
	case Float32:
		for i, v := range FloatsOf(b) {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return i
			}
		}
	case Float16:
		for i := 0; i+1 < len(b); i += 2 {
			if binary.NativeEndian.Uint16(b[i:])&f16ExpMask == f16ExpMask {
				return i / 2
			}
		}
	}
	return -1
}

// Float16ToFloat32 converts an IEEE 754 half-precision value.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: frac * 2^-24
		v := float32(frac) / (1 << 24)
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}

// bufferedFields is a FieldReader over samples held in memory, for tests.
type bufferedFields struct {
	fields []Field
	data   [][]byte // per field, every sample
	n      int
	done   int
}

// FieldsFromMemory returns a FieldReader of n samples whose field i is data[i] (n samples of
// fields[i], host byte order).
func FieldsFromMemory(fields []Field, data [][]byte, n int) (FieldReader, error) {
	if n <= 0 {
		return nil, errors.New("no samples")
	}
	for i, f := range fields {
		if i >= len(data) || len(data[i]) != n*f.Bytes() || f.Bytes() == 0 {
			return nil, fmt.Errorf("field %q: %d bytes for %d samples of %v %v", f.Name, len(data[min(i, len(data)-1)]), n, f.Type, f.Shape)
		}
	}
	return &bufferedFields{fields: fields, data: data, n: n}, nil
}

func (m *bufferedFields) Fields() []Field { return cloneFields(m.fields) }
func (m *bufferedFields) Shape() []int    { return append([]int{}, m.fields[0].Shape...) }
func (m *bufferedFields) Len() int        { return m.n }
func (m *bufferedFields) Close() error    { return nil }
func (m *bufferedFields) Read(dst []float32) (int, error) {
	return readFirst(m, dst)
}

func (m *bufferedFields) ReadFields(dst [][]byte) (int, error) {
	k, err := samplesIn(dst, m.fields)
	if err != nil {
		return 0, err
	}
	if m.done == m.n {
		return 0, io.EOF
	}
	k = min(k, m.n-m.done)
	for i, f := range m.fields {
		b := f.Bytes()
		copy(dst[i], m.data[i][m.done*b:(m.done+k)*b])
	}
	m.done += k
	return k, nil
}

// readFirst is Read of a FieldReader whose only field is float32.
func readFirst(r FieldReader, dst []float32) (int, error) {
	f := r.Fields()
	if len(f) != 1 || f[0].Type != Float32 {
		return 0, fmt.Errorf("data holds %s, not one float32 array", describeFields(f))
	}
	return r.ReadFields([][]byte{BytesOf(dst)})
}

func cloneFields(f []Field) []Field {
	out := make([]Field, len(f))
	for i, x := range f {
		out[i] = Field{Name: x.Name, Type: x.Type, Shape: append([]int{}, x.Shape...)}
	}
	return out
}

// describeFields lists fields as `x (float32 3x8x8), ids (int64 1)`.
func describeFields(fields []Field) string {
	s := ""
	for i, f := range fields {
		if i > 0 {
			s += ", "
		}
		name := f.Name
		if name == "" {
			name = "unnamed"
		}
		s += fmt.Sprintf("%s (%v %s)", name, f.Type, shapeText(f.Shape))
	}
	return s
}

// shapeText writes a sample shape as 3x8x8, or "scalar".
func shapeText(shape []int) string {
	if len(shape) == 0 {
		return "scalar"
	}
	s := ""
	for i, d := range shape {
		if i > 0 {
			s += "x"
		}
		s += fmt.Sprint(d)
	}
	return s
}
