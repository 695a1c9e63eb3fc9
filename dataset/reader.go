package dataset

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/convpca/convpca/onnxio"
)

// Reader streams samples of calibration or evaluation data, one sample being one item of the
// model input without its batch dimension.
type Reader interface {
	// Shape is the shape of one sample (without the batch dimension), e.g. [1 28 28].
	Shape() []int
	// Len is the number of samples the source holds.
	Len() int
	// Read fills dst, whose length must be a multiple of the sample size, with the next samples in
	// row-major order, and returns how many samples it read. It returns 0, io.EOF when none are left.
	// A short final read is allowed (n < len(dst)/size with nil error).
	Read(dst []float32) (n int, err error)
	Close() error
}

// Options say how OpenWith reads data that needs more than its name.
type Options struct {
	// Image preprocesses image folders and image files; Height and Width must be set to read
	// them.
	Image ImageOptions
	// Warn receives warnings for the user (files of a folder that are not images); nil
	// discards them.
	Warn func(msg string)
}

// Open opens data by its name with no Options: see OpenWith.
func Open(path string) (Reader, error) { return OpenWith(path, Options{}) }

// OpenWith opens calibration data by its name: ".npy" (float32, or float64 converted; any other
// dtype, fortran order or big-endian is an error naming the dtype), ".pb" (an ONNX TensorProto as
// in ONNX test data sets, FLOAT or DOUBLE, raw_data or float_data/double_data), MNIST IDX image
// files ("...idx3-ubyte", optionally ".gz"; magic 0x00000803; bytes scaled to [0,1] and shaped
// N x 1 x rows x cols), ".npz" (a FieldReader: one array per model input, named after it), and
// a folder of images or one image file (.png, .jpg, .jpeg; preprocessed as o.Image says, see
// ImageOptions). The first dimension of .npy, .pb and .npz arrays is the sample count.
//
// A ".gz" suffix on .npy, .pb and IDX names is read through gzip. The .npy, .npz, IDX and image
// readers stream: each Read reads only the samples it returns.
func OpenWith(path string, o Options) (Reader, error) {
	if st, err := os.Stat(path); (err == nil && st.IsDir()) || IsImage(path) {
		if o.Image.Height == 0 || o.Image.Width == 0 {
			return nil, fmt.Errorf("images %s: no image size given", path)
		}
		r, ignored, err := openImages(path, o.Image)
		if err != nil {
			return nil, err
		}
		if ignored > 0 && o.Warn != nil {
			what := "files are"
			if ignored == 1 {
				what = "file is"
			}
			o.Warn(fmt.Sprintf("%s: %d %s not .png, .jpg or .jpeg and ignored", path, ignored, what))
		}
		return r, nil
	}
	base, gz := baseName(path)
	var kind string
	switch {
	case strings.HasSuffix(base, ".npy"):
		kind = "npy"
	case strings.HasSuffix(base, ".npz") && !gz:
		return openNpz("npz "+path, path)
	case strings.HasSuffix(base, ".pb"):
		kind = "pb"
	case strings.HasSuffix(base, "idx3-ubyte") || strings.HasSuffix(base, ".idx3") || strings.HasSuffix(base, ".idx"):
		kind = "idx"
	default:
		return nil, fmt.Errorf("calibration data %s: unknown format; want .npy, .npz, .pb, an MNIST idx3-ubyte file or a folder of .png/.jpg images", path)
	}
	name := kind + " " + path
	r, size, closer, err := openFile(name, path, gz)
	if err != nil {
		return nil, err
	}
	var s *stream
	switch kind {
	case "pb":
		data, err := io.ReadAll(r)
		closer()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		m, err := decodePB(name, data)
		if err != nil {
			return nil, err
		}
		return m, nil
	case "npy":
		s, err = openNpy(name, r, size)
	default:
		s, err = openIDX(name, r, size)
	}
	if err != nil {
		closer()
		return nil, err
	}
	s.closer = closer
	return s, nil
}

// OpenLabels reads class labels: an IDX1 label file (magic 0x00000801, ".gz" too), or a 1-D .npy of
// int64/int32/uint8. Returns one int per sample.
func OpenLabels(path string) ([]int, error) {
	base, gz := baseName(path)
	var kind string
	switch {
	case strings.HasSuffix(base, ".npy"):
		kind = "npy"
	case strings.HasSuffix(base, "idx1-ubyte") || strings.HasSuffix(base, ".idx1") || strings.HasSuffix(base, ".idx"):
		kind = "idx"
	default:
		return nil, fmt.Errorf("labels %s: unknown format; want .npy or an MNIST idx1-ubyte file", path)
	}
	name := kind + " " + path
	r, size, closer, err := openFile(name, path, gz)
	if err != nil {
		return nil, err
	}
	defer closer()
	if kind == "npy" {
		return readLabelsNpy(name, r, size)
	}
	return readLabelsIDX(name, r, size)
}

// Limit returns a Reader that yields at most n samples of r (Len reports min(n, r.Len())).
// Closing it closes r.
func Limit(r Reader, n int) Reader {
	n = max(0, min(n, r.Len()))
	l := &limited{r: r, n: n, left: n, size: numel(r.Shape())}
	if fr, ok := r.(FieldReader); ok {
		return &limitedFields{limited: l, fr: fr}
	}
	return l
}

// limitedFields is Limit of a FieldReader.
type limitedFields struct {
	*limited
	fr FieldReader
}

func (l *limitedFields) Fields() []Field { return l.fr.Fields() }

func (l *limitedFields) ReadFields(dst [][]byte) (int, error) {
	fields := l.fr.Fields()
	k, err := samplesIn(dst, fields)
	if err != nil {
		return 0, err
	}
	if l.left == 0 {
		return 0, io.EOF
	}
	if k > l.left {
		cut := make([][]byte, len(dst))
		for i, f := range fields {
			cut[i] = dst[i][:l.left*f.Bytes()]
		}
		dst = cut
	}
	n, err := l.fr.ReadFields(dst)
	l.left -= n
	return n, err
}

type limited struct {
	r       Reader
	n, left int // samples allowed in all, and still to read
	size    int // elements per sample
}

func (l *limited) Shape() []int { return l.r.Shape() }
func (l *limited) Len() int     { return l.n }
func (l *limited) Close() error { return l.r.Close() }

func (l *limited) Read(dst []float32) (int, error) {
	if err := checkDst(len(dst), l.size); err != nil {
		return 0, err
	}
	if l.left == 0 {
		return 0, io.EOF
	}
	if len(dst) > l.left*l.size {
		dst = dst[:l.left*l.size]
	}
	n, err := l.r.Read(dst)
	l.left -= n
	return n, err
}

// baseName returns the lower-case base name of path without a ".gz" suffix, and whether it had one.
func baseName(path string) (base string, gz bool) {
	base = strings.ToLower(filepath.Base(path))
	if strings.HasSuffix(base, ".gz") {
		return strings.TrimSuffix(base, ".gz"), true
	}
	return base, false
}

// openFile opens path, through gzip when gz is set; its errors start with name (as "npy
// data.npy"). size is the number of bytes r holds, or -1 when that is unknown (gzip). closer
// closes everything opened.
func openFile(name, path string, gz bool) (r io.Reader, size int64, closer func() error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("%s: %w", name, err)
	}
	if gz {
		z, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, 0, nil, fmt.Errorf("%s: not gzip data: %w", name, err)
		}
		return z, -1, func() error {
			err := z.Close()
			if e := f.Close(); err == nil {
				err = e
			}
			return err
		}, nil
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, fmt.Errorf("%s: %w", name, err)
	}
	return bufio.NewReader(f), st.Size(), f.Close, nil
}

// numel returns the number of elements of shape (1 for a scalar).
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// checkDst returns an error when a read buffer of n values does not hold whole samples of size
// values.
func checkDst(n, size int) error {
	if size <= 0 || n%size != 0 {
		return fmt.Errorf("calib: read buffer of %d values is not a multiple of the sample size %d", n, size)
	}
	return nil
}

// sampleShape checks the dims of a data set whose first dimension is the sample count. It returns
// the count n, the shape of one sample (dims[1:]) and its number of elements, refusing a zero
// count, negative dimensions and samples of no or more than onnxio.MaxElements elements.
func sampleShape(dims []int64) (n int, shape []int, size int, err error) {
	if len(dims) == 0 {
		return 0, nil, 0, errors.New("data is a scalar; its first dimension must be the sample count")
	}
	for _, d := range dims {
		if d < 0 {
			return 0, nil, 0, fmt.Errorf("shape %v has a negative dimension", dims)
		}
	}
	if dims[0] == 0 {
		return 0, nil, 0, fmt.Errorf("data of shape %v holds no samples", dims)
	}
	if uint64(dims[0]) > math.MaxInt {
		return 0, nil, 0, fmt.Errorf("shape %v declares too many samples", dims)
	}
	s := int64(1)
	shape = make([]int, len(dims)-1)
	for i, d := range dims[1:] {
		if d > 0 && s > onnxio.MaxElements/d {
			return 0, nil, 0, fmt.Errorf("shape %v is too large: one sample has more than %d elements", dims, int64(onnxio.MaxElements))
		}
		s *= d
		shape[i] = int(d)
	}
	if s == 0 {
		return 0, nil, 0, fmt.Errorf("shape %v has samples of no elements", dims)
	}
	return int(dims[0]), shape, int(s), nil
}

// checkFits returns an error when n samples of sampleBytes bytes do not fit in avail bytes.
// avail < 0 means unknown (a gzip stream), and then the check is left to the reads.
func checkFits(n int, sampleBytes, avail int64) error {
	if avail >= 0 && int64(n) > avail/sampleBytes {
		return fmt.Errorf("data is truncated: %d samples of %d %s do not fit in the %d bytes after the header", n, sampleBytes, plural(sampleBytes, "byte"), avail)
	}
	return nil
}

// plural returns noun, with an s unless n is 1.
func plural(n int64, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

// chunk is the most bytes a stream reads at once, so that memory stays flat in the sample count
// and in the sample size.
const chunk = 32 << 10

// stream is a Reader decoding fixed-size samples from a byte stream, chunk by chunk.
type stream struct {
	name   string // prefix of errors, e.g. "npy data.npy"
	r      io.Reader
	closer func() error // may be nil
	shape  []int        // of one sample
	size   int          // elements per sample
	n      int          // samples declared
	done   int          // samples read
	width  int          // bytes per element
	decode func(dst []float32, src []byte)
	buf    []byte
	err    error // sticky read error
}

func newStream(name string, r io.Reader, n int, shape []int, size, width int, decode func([]float32, []byte)) *stream {
	return &stream{name: name, r: r, shape: shape, size: size, n: n, width: width, decode: decode}
}

func (s *stream) Shape() []int { return append([]int{}, s.shape...) }
func (s *stream) Len() int     { return s.n }

func (s *stream) Close() error {
	if s.closer == nil {
		return nil
	}
	err := s.closer()
	s.closer = nil
	return err
}

// Read reads the next samples into dst. On a read error it returns the number of samples it
// completed, and the error, which all later calls return too.
func (s *stream) Read(dst []float32) (int, error) {
	if err := checkDst(len(dst), s.size); err != nil {
		return 0, err
	}
	if s.err != nil {
		return 0, s.err
	}
	if s.done == s.n {
		return 0, io.EOF
	}
	k := min(len(dst)/s.size, s.n-s.done)
	dst = dst[:k*s.size]
	if s.buf == nil {
		// At most chunk bytes, and no more than what is left to read.
		left := chunk
		if s.n-s.done < chunk {
			left = min(chunk, s.size*s.width*(s.n-s.done))
		}
		s.buf = make([]byte, left/s.width*s.width)
	}
	per := len(s.buf) / s.width // elements per chunk
	for i := 0; i < len(dst); {
		m := min(len(dst)-i, per)
		got, err := io.ReadFull(s.r, s.buf[:m*s.width])
		if err != nil {
			e := got / s.width
			s.decode(dst[i:i+e], s.buf[:e*s.width])
			full := (i + e) / s.size
			s.done += full
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				s.err = fmt.Errorf("%s: data is truncated: it ends within sample %d of %d", s.name, s.done+1, s.n)
			} else {
				s.err = fmt.Errorf("%s: %w", s.name, err)
			}
			return full, s.err
		}
		s.decode(dst[i:i+m], s.buf[:m*s.width])
		i += m
	}
	s.done += k
	return k, nil
}

// memReader is a Reader over samples held in memory.
type memReader struct {
	data  []float32
	shape []int
	size  int // elements per sample
	n     int // samples
	done  int // samples read
}

func (m *memReader) Shape() []int { return append([]int{}, m.shape...) }
func (m *memReader) Len() int     { return m.n }
func (m *memReader) Close() error { m.data = nil; return nil }

func (m *memReader) Read(dst []float32) (int, error) {
	if err := checkDst(len(dst), m.size); err != nil {
		return 0, err
	}
	if m.done == m.n || m.data == nil {
		return 0, io.EOF
	}
	k := min(len(dst)/m.size, m.n-m.done)
	copy(dst, m.data[m.done*m.size:(m.done+k)*m.size])
	m.done += k
	return k, nil
}

// readLabels reads n labels of width bytes each from r, decoding each with decode and refusing
// negative values. When known is set the caller has checked that r holds them all, and the slice
// is allocated at once; otherwise it grows with the data actually read.
func readLabels(name string, r io.Reader, n, width int, known bool, decode func([]byte) int64) ([]int, error) {
	var out []int
	if known {
		out = make([]int, 0, n)
	}
	m := chunk / width // labels per read
	if n < m {
		m = n
	}
	buf := make([]byte, m*width)
	for len(out) < n {
		k := min(n-len(out), len(buf)/width)
		got, err := io.ReadFull(r, buf[:k*width])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%s: data is truncated: it holds %d of %d labels", name, len(out)+got/width, n)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for j := range k {
			v := decode(buf[j*width:])
			if v < 0 || uint64(v) > math.MaxInt {
				return nil, fmt.Errorf("%s: label %d at index %d is not a class index", name, v, len(out))
			}
			out = append(out, int(v))
		}
	}
	return out, nil
}
