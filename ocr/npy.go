package ocr

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// npyMagic starts every .npy file.
const npyMagic = "\x93NUMPY"

// WriteNpyFloat32 writes data as a NumPy .npy file (format version 1.0, dtype '<f4', C
// order) of the given shape, atomically: a temporary file beside path renamed onto it.
func WriteNpyFloat32(path string, shape []int, data []float32) error {
	return writeNpy(path, "<f4", shape, len(data), func(w io.Writer) error {
		return writeChunks(w, len(data), 4, func(b []byte, i int) {
			binary.LittleEndian.PutUint32(b, math.Float32bits(data[i]))
		})
	})
}

// WriteNpyInt64 writes data as a .npy file of dtype '<i8' (see WriteNpyFloat32), e.g. labels.
func WriteNpyInt64(path string, shape []int, data []int64) error {
	return writeNpy(path, "<i8", shape, len(data), func(w io.Writer) error {
		return writeChunks(w, len(data), 8, func(b []byte, i int) {
			binary.LittleEndian.PutUint64(b, uint64(data[i]))
		})
	})
}

// writeChunks writes n values of size bytes each, encoded by put, in chunks of 64 KiB.
func writeChunks(w io.Writer, n, size int, put func(b []byte, i int)) error {
	buf := make([]byte, 0, 64<<10)
	for i := range n {
		buf = buf[:len(buf)+size]
		put(buf[len(buf)-size:], i)
		if len(buf)+size > cap(buf) || i == n-1 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	return nil
}

// npyHeader is the version 1.0 header for descr and shape: magic, version, little-endian
// uint16 length, then the dictionary padded with spaces and a newline so that the data start
// at a multiple of 64 bytes.
func npyHeader(descr string, shape []int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	tuple := "(" + strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	tuple += ")"
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, tuple)
	total := len(npyMagic) + 2 + 2 + len(dict) + 1
	pad := (64 - total%64) % 64
	dict += strings.Repeat(" ", pad) + "\n"
	var b bytes.Buffer
	b.WriteString(npyMagic)
	b.Write([]byte{1, 0})
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(dict)))
	b.WriteString(dict)
	return b.Bytes()
}

func writeNpy(path, descr string, shape []int, n int, data func(io.Writer) error) (err error) {
	count := 1
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("write %s: negative dimension in shape %v", path, shape)
		}
		count *= d
	}
	if count != n {
		return fmt.Errorf("write %s: shape %v holds %d values, data has %d", path, shape, count, n)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write npy: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 1<<16)
	if _, err := w.Write(npyHeader(descr, shape)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := data(w); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadNpyFloat32 reads a .npy file of dtype '<f4' in C order (format 1.0, 2.0 or 3.0), as
// this package writes them, returning its values and shape. The declared shape is checked
// against the file's size before anything is allocated.
func ReadNpyFloat32(path string) ([]float32, []int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read npy: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("read npy: %w", err)
	}
	r := bufio.NewReaderSize(f, 1<<20)
	descr, fortran, shape, hlen, err := readNpyHeader(r)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	if descr != "<f4" || fortran {
		return nil, nil, fmt.Errorf("read %s: dtype %s (fortran order %v), want '<f4' in C order", path, descr, fortran)
	}
	count := int64(1)
	for _, d := range shape {
		if d < 0 || (d > 0 && count > math.MaxInt64/4/int64(d)) {
			return nil, nil, fmt.Errorf("read %s: shape %v too large", path, shape)
		}
		count *= int64(d)
	}
	if got := fi.Size() - hlen; got != 4*count {
		return nil, nil, fmt.Errorf("read %s: shape %v needs %d data bytes, file has %d", path, shape, 4*count, got)
	}
	raw := make([]byte, 4*count)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	out := make([]float32, count)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out, shape, nil
}

// readNpyHeader parses the magic, version and header dictionary, returning the total header
// length in bytes.
func readNpyHeader(r io.Reader) (descr string, fortran bool, shape []int, hlen int64, err error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil || string(pre[:6]) != npyMagic {
		return "", false, nil, 0, errors.New("not a .npy file")
	}
	var n int64
	switch pre[6] {
	case 1:
		var l uint16
		if err := binary.Read(r, binary.LittleEndian, &l); err != nil {
			return "", false, nil, 0, errors.New("truncated .npy header")
		}
		n, hlen = int64(l), 10+int64(l)
	case 2, 3:
		var l uint32
		if err := binary.Read(r, binary.LittleEndian, &l); err != nil {
			return "", false, nil, 0, errors.New("truncated .npy header")
		}
		n, hlen = int64(l), 12+int64(l)
	default:
		return "", false, nil, 0, fmt.Errorf("unsupported .npy version %d.%d", pre[6], pre[7])
	}
	if n > 1<<20 {
		return "", false, nil, 0, fmt.Errorf(".npy header of %d bytes is too long", n)
	}
	h := make([]byte, n)
	if _, err := io.ReadFull(r, h); err != nil {
		return "", false, nil, 0, errors.New("truncated .npy header")
	}
	dict := string(h)
	descr, ok := npyField(dict, "descr")
	if !ok {
		return "", false, nil, 0, errors.New(".npy header has no descr")
	}
	descr = strings.Trim(descr, `'"`)
	fo, ok := npyField(dict, "fortran_order")
	if !ok {
		return "", false, nil, 0, errors.New(".npy header has no fortran_order")
	}
	st, ok := npyField(dict, "shape")
	if !ok || !strings.HasPrefix(st, "(") || !strings.HasSuffix(st, ")") {
		return "", false, nil, 0, errors.New(".npy header has no shape tuple")
	}
	for _, p := range strings.Split(strings.Trim(st, "()"), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		d, err := strconv.Atoi(p)
		if err != nil || d < 0 {
			return "", false, nil, 0, fmt.Errorf(".npy shape %s is not a tuple of sizes", st)
		}
		shape = append(shape, d)
	}
	return descr, fo == "True", shape, hlen, nil
}

// npyField returns the value of 'key' in a .npy header dictionary: a quoted string, a tuple
// or a bare word.
func npyField(dict, key string) (string, bool) {
	i := strings.Index(dict, "'"+key+"'")
	if i < 0 {
		return "", false
	}
	rest := strings.TrimLeft(dict[i+len(key)+2:], " ")
	if !strings.HasPrefix(rest, ":") {
		return "", false
	}
	rest = strings.TrimLeft(rest[1:], " ")
	var end int
	switch {
	case strings.HasPrefix(rest, "("):
		end = strings.IndexByte(rest, ')') + 1
	case strings.HasPrefix(rest, "'"):
		end = strings.IndexByte(rest[1:], '\'') + 2
	default:
		end = strings.IndexAny(rest, ",}")
	}
	if end <= 0 {
		return "", false
	}
	return strings.TrimSpace(rest[:end]), true
}
