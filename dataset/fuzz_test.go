package dataset

import (
	"bytes"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"strings"
	"testing"
)

// maxFuzzBuf bounds the read buffer the fuzz targets allocate, in values. A stream of unknown
// size may declare samples of up to 2^31 elements; the reader itself never buffers more than
// chunk bytes, but a caller's buffer must hold a whole sample, so such streams are opened and
// not read.
const maxFuzzBuf = 1 << 16

// checkReader reads r to its end and checks the Reader contract. When complete is set the data
// was checked against its declared size on opening, so reading must not fail.
func checkReader(t *testing.T, r Reader, complete bool) {
	t.Helper()
	defer r.Close()
	size := numel(r.Shape())
	if r.Len() <= 0 || size <= 0 {
		t.Fatalf("opened a reader of %d samples of shape %v", r.Len(), r.Shape())
	}
	if size > maxFuzzBuf {
		return
	}
	batch := max(1, min(3, maxFuzzBuf/size))
	buf := make([]float32, batch*size)
	total := 0
	for {
		n, err := r.Read(buf)
		if n < 0 || n > batch {
			t.Fatalf("Read returned %d samples for a buffer of %d", n, batch)
		}
		total += n
		if total > r.Len() {
			t.Fatalf("read %d samples of the %d Len reports", total, r.Len())
		}
		if err == io.EOF {
			if n != 0 || total != r.Len() {
				t.Fatalf("io.EOF with %d samples, after %d of %d", n, total, r.Len())
			}
			return
		}
		if err != nil {
			if complete {
				t.Fatalf("reading data that fits its header: %v", err)
			}
			if n2, err2 := r.Read(buf); n2 != 0 || err2 == nil {
				t.Fatalf("Read after the error %v = %d, %v", err, n2, err2)
			}
			return
		}
		if n == 0 {
			t.Fatal("Read returned 0 samples and no error")
		}
	}
}

// checkFitted checks that a stream opened from size bytes (-1 when unknown) declares no more
// data than that.
func checkFitted(t *testing.T, s *stream, size int64) {
	t.Helper()
	if size >= 0 && int64(s.n)*int64(s.size)*int64(s.width) > size {
		t.Fatalf("%d samples of %d bytes opened from %d bytes", s.n, s.size*s.width, size)
	}
}

// checkLabels checks labels read without an error.
func checkLabels(t *testing.T, labels []int, err error) {
	t.Helper()
	if err != nil {
		return
	}
	if len(labels) == 0 {
		t.Fatal("no labels and no error")
	}
	for i, l := range labels {
		if l < 0 {
			t.Fatalf("label %d is %d", i, l)
		}
	}
}

// FuzzNpy parses .npy data, once of known size as from a file and once of unknown size as from a
// gzip stream, as samples and as labels.
func FuzzNpy(f *testing.F) {
	f.Add(npy1("<f4", false, "(3, 2)", f4(1, 2, 3, 4, 5, 6)))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, size := range []int64{int64(len(data)), -1} {
			if s, err := openNpy("npy", bytes.NewReader(data), size); err == nil {
				checkFitted(t, s, size)
				checkReader(t, s, size >= 0)
			}
			labels, err := readLabelsNpy("npy", bytes.NewReader(data), size)
			checkLabels(t, labels, err)
		}
	})
}

// FuzzIDX parses IDX data, once of known size and once of unknown size, as images and as labels.
func FuzzIDX(f *testing.F) {
	f.Add(idxFile(idxImages, []uint32{2, 2, 2}, []byte{0, 1, 2, 3, 4, 5, 6, 255}))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, size := range []int64{int64(len(data)), -1} {
			if s, err := openIDX("idx", bytes.NewReader(data), size); err == nil {
				checkFitted(t, s, size)
				checkReader(t, s, size >= 0)
			}
			labels, err := readLabelsIDX("idx", bytes.NewReader(data), size)
			checkLabels(t, labels, err)
		}
	})
}

// FuzzPB decodes ONNX TensorProto data.
func FuzzPB(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodePB("pb", data)
		if err != nil {
			return
		}
		if len(r.data) > len(data) {
			t.Fatalf("decoded %d values from %d bytes", len(r.data), len(data))
		}
		checkReader(t, r, true)
	})
}

// FuzzNpz decodes .npz archives and reads every array they declare, checking that no array
// declares more than the archive holds for it.
func FuzzNpz(f *testing.F) {
	f.Add(npzArchive(false, npzEntry{"x.npy", npy1("<f4", false, "(2, 2)", f4(1, 2, 3, 4))}, npzEntry{"k.npy", npy1("<i8", false, "(2,)", i8s(7, 8))}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeNpz("npz", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		defer r.Close()
		per := 0
		for _, fd := range r.Fields() {
			if fd.Bytes() <= 0 {
				t.Fatalf("field %+v of no bytes", fd)
			}
			per += fd.Bytes()
		}
		if r.Len() <= 0 {
			t.Fatalf("opened %d samples", r.Len())
		}
		if int64(r.Len())*int64(per) > int64(len(data))*1100 {
			t.Fatalf("%d samples of %d bytes declared by %d bytes", r.Len(), per, len(data))
		}
		if per > maxFuzzBuf {
			return
		}
		if _, err := readFieldsAll(r, max(1, min(3, maxFuzzBuf/per))); err != nil && !strings.Contains(err.Error(), "npz") {
			t.Fatalf("an error without the reader's name: %v", err)
		}
	})
}

// FuzzImage decodes PNG and JPEG data as an image folder would, header check first, and
// preprocesses what decodes in each resize mode.
func FuzzImage(f *testing.F) {
	var b bytes.Buffer
	m := image.NewNRGBA(image.Rect(0, 0, 5, 3))
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 7)
	}
	png.Encode(&b, m)
	f.Add(b.Bytes())
	b.Reset()
	jpeg.Encode(&b, m, nil)
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := checkImageConfig(bytes.NewReader(data), int64(len(data))); err != nil {
			return
		}
		cfg, _, _ := image.DecodeConfig(bytes.NewReader(data))
		if cfg.Width*cfg.Height > 1<<20 {
			return // fits the file, but too slow to decode at fuzzing speed
		}
		img, _, err := image.Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, mode := range []string{ResizeStretch, ResizeCrop, ResizePad} {
			o, err := ImageOptions{Height: 6, Width: 4, Mode: mode}.Resolve()
			if err != nil {
				t.Fatal(err)
			}
			dst := make([]float32, 3*6*4)
			o.sample(img, dst)
			for i, v := range dst {
				if v != v || v < -1e-6 || v > 1+1e-6 {
					t.Fatalf("%s: value %d is %v, outside [0, 1]", mode, i, v)
				}
			}
		}
	})
}
