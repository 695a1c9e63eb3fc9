package dataset

import (
	"archive/zip"
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// maxNpzArrays bounds the arrays of an .npz file: one per model input.
const maxNpzArrays = 256

// maxDeflateRatio is the most deflate expands data.
const maxDeflateRatio = 1032

// npzType returns the DType an .npy dtype is read as, the width of its elements in the file and
// the conversion of file bytes to host bytes (nil: the bytes are copied as they are).
func npzType(descr string) (DType, int, func(dst, src []byte), error) {
	switch descr {
	case "<f4":
		return Float32, 4, leCopy(4), nil
	case "<f8":
		return Float32, 8, func(dst, src []byte) {
			for i := 0; 8*i < len(src); i++ {
				binary.NativeEndian.PutUint32(dst[4*i:], math.Float32bits(float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))))
			}
		}, nil
	case "<f2":
		return Float16, 2, leCopy(2), nil
	case "<i8":
		return Int64, 8, leCopy(8), nil
	case "<i4":
		return Int32, 4, leCopy(4), nil
	case "|i1", "<i1":
		return Int8, 1, nil, nil
	case "|u1", "<u1":
		return Uint8, 1, nil, nil
	case "|b1", "<b1":
		return Bool, 1, func(dst, src []byte) {
			for i, v := range src {
				dst[i] = 0
				if v != 0 {
					dst[i] = 1
				}
			}
		}, nil
	}
	if len(descr) == 3 && descr[0] == '>' {
		return 0, 0, nil, fmt.Errorf("dtype '%s' is big-endian; save the array as little-endian '<%s'", descr, descr[1:])
	}
	return 0, 0, nil, fmt.Errorf("dtype '%s' is not supported; want float32 ('<f4'), float64 ('<f8', read as float32), float16 ('<f2'), int64 ('<i8'), int32 ('<i4'), int8, uint8 or bool", descr)
}

// littleEndian says whether the host stores numbers little-endian (as .npy files written on
// ordinary machines do).
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// leCopy returns the conversion of little-endian values of width bytes to host bytes: none on a
// little-endian host.
func leCopy(width int) func(dst, src []byte) {
	if littleEndian {
		return nil
	}
	return func(dst, src []byte) {
		for i := 0; i < len(src); i += width {
			for j := range width {
				dst[i+j] = src[i+width-1-j]
			}
		}
	}
}

// column streams the samples of one array of an .npz file.
type column struct {
	field  Field
	r      io.Reader
	closer io.Closer
	width  int // bytes per element in the file
	conv   func(dst, src []byte)
	buf    []byte
}

// read reads k samples into dst (k samples of the field in host bytes).
func (c *column) read(dst []byte, k int) error {
	elems := k * numel(c.field.Shape)
	if c.conv == nil {
		_, err := io.ReadFull(c.r, dst[:elems*c.width])
		return err
	}
	if c.buf == nil {
		c.buf = make([]byte, min(chunk, elems*c.width)/c.width*c.width)
	}
	per := len(c.buf) / c.width
	out := c.field.Type.Size()
	for i := 0; i < elems; {
		m := min(elems-i, per)
		if _, err := io.ReadFull(c.r, c.buf[:m*c.width]); err != nil {
			return err
		}
		c.conv(dst[i*out:(i+m)*out], c.buf[:m*c.width])
		i += m
	}
	return nil
}

// npzReader is a FieldReader over the arrays of an .npz file (a zip archive of .npy files, as
// numpy.savez and savez_compressed write), each array one input, its first axis the sample.
type npzReader struct {
	name   string
	file   io.Closer
	fields []Field
	cols   []*column
	n      int
	done   int
	err    error // sticky
}

// openNpz opens the .npz file at path. Errors start with name.
func openNpz(name, path string) (*npzReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r, err := decodeNpz(name, f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file = f
	return r, nil
}

// decodeNpz reads the directory of an .npz archive of size bytes and the header of each of its
// arrays, checking each array's declared size against the size the archive declares for it.
func decodeNpz(name string, ra io.ReaderAt, size int64) (*npzReader, error) {
	z, err := zip.NewReader(ra, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return nil, fmt.Errorf("%s: not an .npz file (a zip archive of .npy arrays): %w", name, err)
	}
	if len(z.File) == 0 {
		return nil, fmt.Errorf("%s: the archive holds no arrays", name)
	}
	if len(z.File) > maxNpzArrays {
		return nil, fmt.Errorf("%s: the archive holds %d entries; convpca reads at most %d arrays", name, len(z.File), maxNpzArrays)
	}
	r := &npzReader{name: name, n: -1}
	ok := false
	defer func() {
		if !ok {
			r.closeCols()
		}
	}()
	seen := map[string]bool{}
	for _, zf := range z.File {
		key, isNpy := strings.CutSuffix(zf.Name, ".npy")
		if !isNpy || key == "" {
			return nil, fmt.Errorf("%s: entry %q is not an .npy array", name, zf.Name)
		}
		if seen[key] {
			return nil, fmt.Errorf("%s: array %q appears twice", name, key)
		}
		seen[key] = true
		c, n, err := openColumn(key, zf, size)
		if err != nil {
			return nil, fmt.Errorf("%s: array %q: %w", name, key, err)
		}
		r.cols = append(r.cols, c)
		r.fields = append(r.fields, c.field)
		if r.n >= 0 && n != r.n {
			return nil, fmt.Errorf("%s: arrays hold different sample counts (first axes): %q %d, %q %d", name, r.fields[0].Name, r.n, key, n)
		}
		r.n = n
	}
	ok = true
	return r, nil
}

// openColumn opens one array of an .npz archive and reads its header; it returns the column
// and the array's sample count.
func openColumn(key string, zf *zip.File, fileSize int64) (*column, int, error) {
	if zf.Mode().IsDir() {
		return nil, 0, errors.New("is a folder")
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, 0, err
	}
	c := &column{r: bufio.NewReader(rc), closer: rc}
	h, err := readNpyHeader(c.r)
	if err != nil {
		rc.Close()
		return nil, 0, err
	}
	dt, width, conv, err := npzType(h.descr)
	if err != nil {
		rc.Close()
		return nil, 0, err
	}
	if h.fortran {
		rc.Close()
		return nil, 0, errors.New("fortran_order arrays are not supported; save the array in C order")
	}
	n, shape, sz, err := sampleShape(h.shape)
	if err != nil {
		rc.Close()
		return nil, 0, err
	}
	// The bytes the array may hold: what the archive declares, bounded by what its compressed
	// bytes, which must lie in the file, can expand to (deflate: at most 1032 to 1).
	stored := zf.CompressedSize64
	if stored > uint64(fileSize) {
		return nil, 0, fmt.Errorf("the archive declares %d bytes for the array, more than the file holds", stored)
	}
	if zf.Method != zip.Store {
		stored *= maxDeflateRatio
	}
	avail := max(0, int64(min(zf.UncompressedSize64, stored))-h.size)
	if err := checkFits(n, int64(sz)*int64(width), avail); err != nil {
		rc.Close()
		return nil, 0, err
	}
	c.field = Field{Name: key, Type: dt, Shape: shape}
	c.width, c.conv = width, conv
	return c, n, nil
}

func (r *npzReader) closeCols() {
	for _, c := range r.cols {
		c.closer.Close()
	}
	r.cols = nil
}

func (r *npzReader) Fields() []Field { return cloneFields(r.fields) }
func (r *npzReader) Shape() []int    { return append([]int{}, r.fields[0].Shape...) }
func (r *npzReader) Len() int        { return r.n }

func (r *npzReader) Close() error {
	r.closeCols()
	if r.file == nil {
		return nil
	}
	err := r.file.Close()
	r.file = nil
	return err
}

func (r *npzReader) Read(dst []float32) (int, error) {
	if err := checkDst(len(dst), numel(r.fields[0].Shape)); err != nil {
		return 0, err
	}
	if len(r.fields) != 1 || r.fields[0].Type != Float32 {
		return 0, fmt.Errorf("%s: holds %s, not one float32 array", r.name, describeFields(r.fields))
	}
	return r.ReadFields([][]byte{BytesOf(dst)})
}

func (r *npzReader) ReadFields(dst [][]byte) (int, error) {
	k, err := samplesIn(dst, r.fields)
	if err != nil {
		return 0, err
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.done == r.n {
		return 0, io.EOF
	}
	if r.cols == nil {
		return 0, fmt.Errorf("%s: read after Close", r.name)
	}
	k = min(k, r.n-r.done)
	for i, c := range r.cols {
		if err := c.read(dst[i], k); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				r.err = fmt.Errorf("%s: array %q is truncated: it ends within samples %d-%d of %d", r.name, c.field.Name, r.done+1, r.done+k, r.n)
			} else {
				r.err = fmt.Errorf("%s: array %q: %w", r.name, c.field.Name, err)
			}
			return 0, r.err
		}
	}
	r.done += k
	if r.done == r.n {
		// Reading past the end makes archive/zip check the entry's CRC-32.
		var one [1]byte
		for _, c := range r.cols {
			if _, err := io.ReadFull(c.r, one[:]); err != nil && !errors.Is(err, io.EOF) {
				r.err = fmt.Errorf("%s: array %q: %w", r.name, c.field.Name, err)
				return 0, r.err
			}
		}
	}
	return k, nil
}
