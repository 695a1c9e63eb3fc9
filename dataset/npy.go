package dataset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// npyMagic starts every .npy file.
const npyMagic = "\x93NUMPY"

// maxNpyHeader bounds the length of a .npy header dict (numpy writes under 100 bytes for
// ordinary arrays and by default refuses to read more than 10000).
const maxNpyHeader = 1 << 16

// npyHeader is the header of a .npy file.
type npyHeader struct {
	descr   string  // dtype, e.g. "<f4"
	fortran bool    // fortran_order
	shape   []int64 // array shape; empty for a scalar
	size    int64   // bytes before the data: magic, version, header length and dict
}

// readNpyHeader reads the preamble and the header dict of a .npy file, versions 1.0, 2.0 and 3.0.
func readNpyHeader(r io.Reader) (npyHeader, error) {
	var pre [12]byte
	if _, err := io.ReadFull(r, pre[:8]); err != nil {
		return npyHeader{}, shortHeader("not a .npy file", err)
	}
	if string(pre[:6]) != npyMagic {
		return npyHeader{}, errors.New("not a .npy file (bad magic)")
	}
	major, minor := pre[6], pre[7]
	var hlen uint32
	var off int64
	switch major {
	case 1:
		if _, err := io.ReadFull(r, pre[8:10]); err != nil {
			return npyHeader{}, shortHeader("header is truncated", err)
		}
		hlen, off = uint32(binary.LittleEndian.Uint16(pre[8:])), 10
	case 2, 3:
		if _, err := io.ReadFull(r, pre[8:12]); err != nil {
			return npyHeader{}, shortHeader("header is truncated", err)
		}
		hlen, off = binary.LittleEndian.Uint32(pre[8:]), 12
	default:
		return npyHeader{}, fmt.Errorf("format version %d.%d is not supported", major, minor)
	}
	if hlen > maxNpyHeader {
		return npyHeader{}, fmt.Errorf("header length %d is too large", hlen)
	}
	buf := make([]byte, hlen)
	if _, err := io.ReadFull(r, buf); err != nil {
		return npyHeader{}, shortHeader("header is truncated", err)
	}
	h, err := parseNpyHeader(string(buf))
	if err != nil {
		return npyHeader{}, err
	}
	h.size = off + int64(hlen)
	return h, nil
}

// shortHeader returns msg as an error when err is an end of file, else err.
func shortHeader(msg string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New(msg)
	}
	return err
}

// parseNpyHeader parses a .npy header dict, a Python literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (2000, 1, 28, 28), }.
// Keys other than descr, fortran_order and shape are ignored.
func parseNpyHeader(s string) (npyHeader, error) {
	var h npyHeader
	p := &dictParser{s: s}
	bad := func() (npyHeader, error) {
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		return npyHeader{}, fmt.Errorf("malformed header %q", strings.TrimSpace(s))
	}
	var haveDescr, haveOrder, haveShape bool
	if !p.eat('{') {
		return bad()
	}
	for !p.eat('}') {
		key, ok := p.str()
		if !ok || !p.eat(':') {
			return bad()
		}
		if key == "descr" && p.peek() == '[' {
			return npyHeader{}, errors.New("structured dtypes are not supported; want float32 ('<f4') or float64 ('<f8')")
		}
		v, ok := p.value()
		if !ok {
			if p.err != nil {
				return npyHeader{}, p.err
			}
			return bad()
		}
		switch key {
		case "descr":
			h.descr, haveDescr = v.(string)
		case "fortran_order":
			h.fortran, haveOrder = v.(bool)
		case "shape":
			h.shape, haveShape = v.([]int64)
		}
		if !p.eat(',') {
			if !p.eat('}') {
				return bad()
			}
			break
		}
	}
	if p.skip(); p.i != len(p.s) || !haveDescr || !haveOrder || !haveShape {
		return bad()
	}
	return h, nil
}

// dictParser parses the small subset of Python literals that .npy headers use.
type dictParser struct {
	s   string
	i   int
	err error // a specific error, when a value is well formed but out of range
}

func (p *dictParser) skip() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

// peek returns the next byte that is not a space, or 0 at the end.
func (p *dictParser) peek() byte {
	if p.skip(); p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// eat consumes c when it is the next byte that is not a space.
func (p *dictParser) eat(c byte) bool {
	if p.peek() == c && c != 0 {
		p.i++
		return true
	}
	return false
}

// str parses a quoted string without escapes.
func (p *dictParser) str() (string, bool) {
	q := p.peek()
	if q != '\'' && q != '"' {
		return "", false
	}
	j := strings.IndexByte(p.s[p.i+1:], q)
	if j < 0 {
		return "", false
	}
	v := p.s[p.i+1 : p.i+1+j]
	if strings.IndexByte(v, '\\') >= 0 {
		return "", false
	}
	p.i += j + 2
	return v, true
}

// value parses a string, True or False, or a tuple of integers.
func (p *dictParser) value() (any, bool) {
	switch c := p.peek(); {
	case c == '\'' || c == '"':
		return p.str()
	case c == '(':
		return p.tuple()
	case strings.HasPrefix(p.s[p.i:], "True"):
		p.i += 4
		return true, true
	case strings.HasPrefix(p.s[p.i:], "False"):
		p.i += 5
		return false, true
	}
	return nil, false
}

// tuple parses a tuple of integers, e.g. (), (3,) or (2000, 1, 28, 28).
func (p *dictParser) tuple() ([]int64, bool) {
	if !p.eat('(') {
		return nil, false
	}
	dims := []int64{}
	for !p.eat(')') {
		d, ok := p.int()
		if !ok {
			return nil, false
		}
		dims = append(dims, d)
		if !p.eat(',') {
			if !p.eat(')') {
				return nil, false
			}
			break
		}
	}
	return dims, true
}

// int parses a decimal integer, allowing Python 2's long suffix L.
func (p *dictParser) int() (int64, bool) {
	p.skip()
	j := p.i
	if j < len(p.s) && p.s[j] == '-' {
		j++
	}
	for j < len(p.s) && '0' <= p.s[j] && p.s[j] <= '9' {
		j++
	}
	lit := p.s[p.i:j]
	v, err := strconv.ParseInt(lit, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			p.err = fmt.Errorf("dimension %s in the header is too large", lit)
		}
		return 0, false
	}
	if j < len(p.s) && p.s[j] == 'L' {
		j++
	}
	p.i = j
	return v, true
}

// npyFloat returns the element width and decoder of a float dtype.
func npyFloat(descr string) (int, func([]float32, []byte), error) {
	switch descr {
	case "<f4":
		return 4, decodeF32, nil
	case "<f8":
		return 8, decodeF64, nil
	case ">f4", ">f8":
		return 0, nil, fmt.Errorf("dtype '%s' is big-endian; save the array as little-endian '<%s'", descr, descr[1:])
	}
	return 0, nil, fmt.Errorf("dtype '%s' is not supported; want float32 ('<f4') or float64 ('<f8')", descr)
}

func decodeF32(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

func decodeF64(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
	}
}

// openNpy reads the header of a .npy stream of size bytes (-1 when unknown) and returns a stream
// of its samples, the first dimension being the sample count. Errors start with name.
func openNpy(name string, r io.Reader, size int64) (*stream, error) {
	h, err := readNpyHeader(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	width, decode, err := npyFloat(h.descr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if h.fortran {
		return nil, fmt.Errorf("%s: fortran_order arrays are not supported; save the array in C order", name)
	}
	n, shape, sz, err := sampleShape(h.shape)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if size >= 0 {
		size -= h.size
	}
	if err := checkFits(n, int64(sz)*int64(width), size); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return newStream(name, r, n, shape, sz, width, decode), nil
}

// readLabelsNpy reads the labels of a 1-D .npy stream of size bytes (-1 when unknown) of dtype
// int64, int32 or uint8.
func readLabelsNpy(name string, r io.Reader, size int64) ([]int, error) {
	h, err := readNpyHeader(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var width int
	var decode func([]byte) int64
	switch h.descr {
	case "<i8":
		width, decode = 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) }
	case "<i4":
		width, decode = 4, func(b []byte) int64 { return int64(int32(binary.LittleEndian.Uint32(b))) }
	case "|u1", "<u1":
		width, decode = 1, func(b []byte) int64 { return int64(b[0]) }
	default:
		return nil, fmt.Errorf("%s: label dtype '%s' is not supported; want int64 ('<i8'), int32 ('<i4') or uint8 ('|u1')", name, h.descr)
	}
	if len(h.shape) != 1 {
		return nil, fmt.Errorf("%s: labels must be a 1-D array, not of shape %v", name, h.shape)
	}
	n, _, _, err := sampleShape(h.shape)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if size >= 0 {
		size -= h.size
	}
	if err := checkFits(n, int64(width), size); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return readLabels(name, r, n, width, size >= 0, decode)
}
