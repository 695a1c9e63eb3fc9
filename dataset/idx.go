package dataset

import (
	"encoding/binary"
	"fmt"
	"io"
)

// IDX magic numbers: two zero bytes, the element type (0x08, unsigned byte) and the number of
// dimensions.
const (
	idxImages = 0x00000803 // N x rows x cols bytes
	idxLabels = 0x00000801 // N bytes
)

// readIDXHeader reads the magic number and the ndim big-endian uint32 dimensions of an IDX
// stream, refusing a magic other than want.
func readIDXHeader(r io.Reader, want uint32, ndim int) ([]int64, error) {
	buf := make([]byte, 4+4*ndim)
	if _, err := io.ReadFull(r, buf[:4]); err != nil {
		return nil, shortHeader("not an IDX file: it is too short", err)
	}
	if m := binary.BigEndian.Uint32(buf); m != want {
		return nil, fmt.Errorf("bad magic 0x%08x; want 0x%08x", m, want)
	}
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		return nil, shortHeader("header is truncated", err)
	}
	dims := make([]int64, ndim)
	for i := range dims {
		dims[i] = int64(binary.BigEndian.Uint32(buf[4+4*i:]))
	}
	return dims, nil
}

// openIDX reads the header of an IDX image stream (magic 0x00000803) of size bytes (-1 when
// unknown) and returns a stream of its images as samples of shape [1 rows cols], bytes scaled to
// [0,1]. Errors start with name.
func openIDX(name string, r io.Reader, size int64) (*stream, error) {
	d, err := readIDXHeader(r, idxImages, 3)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	n, shape, sz, err := sampleShape([]int64{d[0], 1, d[1], d[2]})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if size >= 0 {
		size -= 16
	}
	if err := checkFits(n, int64(sz), size); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return newStream(name, r, n, shape, sz, 1, decodeU8), nil
}

// decodeU8 scales bytes to [0,1].
func decodeU8(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = float32(src[i]) / 255
	}
}

// readLabelsIDX reads the labels of an IDX label stream (magic 0x00000801) of size bytes (-1 when
// unknown).
func readLabelsIDX(name string, r io.Reader, size int64) ([]int, error) {
	d, err := readIDXHeader(r, idxLabels, 1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	n, _, _, err := sampleShape(d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if size >= 0 {
		size -= 8
	}
	if err := checkFits(n, 1, size); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return readLabels(name, r, n, 1, size >= 0, func(b []byte) int64 { return int64(b[0]) })
}
