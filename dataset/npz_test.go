package dataset

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// npzEntry is one file of an .npz archive.
type npzEntry struct {
	name string
	data []byte
}

// npzArchive returns an .npz archive of the entries, deflated when compressed.
func npzArchive(compressed bool, entries ...npzEntry) []byte {
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	for _, e := range entries {
		method := zip.Store
		if compressed {
			method = zip.Deflate
		}
		w, err := z.CreateHeader(&zip.FileHeader{Name: e.name, Method: method})
		if err != nil {
			panic(err)
		}
		w.Write(e.data)
	}
	z.Close()
	return b.Bytes()
}

// readFieldsAll reads every sample of r, batch at a time: the bytes of each field.
func readFieldsAll(r FieldReader, batch int) ([][]byte, error) {
	fields := r.Fields()
	out := make([][]byte, len(fields))
	buf := make([][]byte, len(fields))
	for i, f := range fields {
		buf[i] = make([]byte, batch*f.Bytes())
	}
	total := 0
	for {
		n, err := r.ReadFields(buf)
		if n < 0 || n > batch {
			return out, fmt.Errorf("ReadFields returned %d samples for buffers of %d", n, batch)
		}
		total += n
		if total > r.Len() {
			return out, fmt.Errorf("read %d samples of the %d Len reports", total, r.Len())
		}
		for i, f := range fields {
			out[i] = append(out[i], buf[i][:n*f.Bytes()]...)
		}
		if err == io.EOF {
			if n != 0 || total != r.Len() {
				return out, fmt.Errorf("io.EOF with %d samples, after %d of %d", n, total, r.Len())
			}
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, fmt.Errorf("ReadFields returned 0 samples and no error")
		}
	}
}

// TestNpzNumpy reads .npz files written by numpy.savez and savez_compressed, one array of each
// dtype convpca feeds.
func TestNpzNumpy(t *testing.T) {
	needPillow(t)
	dir := t.TempDir()
	script := `
import numpy as np, sys
a = dict(
    x=(np.arange(60, dtype=np.float32) / 7).reshape(5, 3, 4),
    y=(np.arange(10) * 1.1).reshape(5, 2),
    h=(np.arange(15) / 4).astype(np.float16).reshape(5, 3),
    ids=np.arange(5, dtype=np.int64) * 1000000007,
    n=-np.arange(5, dtype=np.int32).reshape(5, 1),
    m=(np.arange(10) % 3 == 0).reshape(5, 2),
    u=(np.arange(10) * 25).astype(np.uint8).reshape(5, 2),
    s=np.arange(5, dtype=np.int8) - 2,
)
np.savez(sys.argv[1], **a)
np.savez_compressed(sys.argv[2], **a)
`
	plain, packed := filepath.Join(dir, "plain.npz"), filepath.Join(dir, "packed.npz")
	if out, err := exec.Command(python, "-c", script, plain, packed).CombinedOutput(); err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	want := map[string]struct {
		t     DType
		shape []int
		value func(i int) float64
	}{
		"x":   {Float32, []int{3, 4}, func(i int) float64 { return float64(float32(i) / 7) }},
		"y":   {Float32, []int{2}, func(i int) float64 { return float64(float32(float64(i) * 1.1)) }},
		"h":   {Float16, []int{3}, func(i int) float64 { return float64(i) / 4 }},
		"ids": {Int64, nil, func(i int) float64 { return float64(i * 1000000007) }},
		"n":   {Int32, []int{1}, func(i int) float64 { return float64(-i) }},
		"m":   {Bool, []int{2}, func(i int) float64 { return float64(1 - min(1, i%3)) }},
		"u":   {Uint8, []int{2}, func(i int) float64 { return float64(i * 25) }},
		"s":   {Int8, nil, func(i int) float64 { return float64(i - 2) }},
	}
	for _, path := range []string{plain, packed} {
		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		fr := r.(FieldReader)
		if fr.Len() != 5 || len(fr.Fields()) != len(want) {
			t.Fatalf("%s: %d samples of %v", path, fr.Len(), fr.Fields())
		}
		data, err := readFieldsAll(fr, 2)
		if err != nil {
			t.Fatal(err)
		}
		for k, f := range fr.Fields() {
			w := want[f.Name]
			if f.Type != w.t || fmt.Sprint(f.Shape) != fmt.Sprint(w.shape) {
				t.Errorf("%s: field %s is %v %v, want %v %v", filepath.Base(path), f.Name, f.Type, f.Shape, w.t, w.shape)
				continue
			}
			for i := 0; i < 5*numel(f.Shape); i++ {
				if got := elem(data[k], f.Type, i); got != w.value(i) {
					t.Errorf("%s: %s[%d] = %v, want %v", filepath.Base(path), f.Name, i, got, w.value(i))
					break
				}
			}
		}
		r.Close()
	}
}

// elem returns element i of host-order values of type t.
func elem(b []byte, t DType, i int) float64 {
	switch t {
	case Float32:
		return float64(math.Float32frombits(binary.NativeEndian.Uint32(b[4*i:])))
	case Float16:
		return float64(Float16ToFloat32(binary.NativeEndian.Uint16(b[2*i:])))
	case Int64:
		return float64(int64(binary.NativeEndian.Uint64(b[8*i:])))
	case Int32:
		return float64(int32(binary.NativeEndian.Uint32(b[4*i:])))
	case Int8:
		return float64(int8(b[i]))
	}
	return float64(b[i])
}

func i8s(v ...int64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return b
}

// TestNpzLimitShard: Limit and Shard keep an .npz a FieldReader and cut every field alike.
func TestNpzLimitShard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.npz")
	os.WriteFile(path, npzArchive(false,
		npzEntry{"x.npy", npy1("<f4", false, "(6, 2)", f4(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11))},
		npzEntry{"k.npy", npy1("<i8", false, "(6,)", i8s(10, 11, 12, 13, 14, 15))},
	), 0o644)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Shard(r, 1, 3) // samples 2, 3
	if err != nil {
		t.Fatal(err)
	}
	fr, ok := s.(FieldReader)
	if !ok || fr.Len() != 2 {
		t.Fatalf("shard is %T of %d samples", s, s.Len())
	}
	data, err := readFieldsAll(fr, 5)
	if err != nil {
		t.Fatal(err)
	}
	if x, k := FloatsOf(append([]byte(nil), data[0]...)), data[1]; fmt.Sprint(x) != "[4 5 6 7]" || elem(k, Int64, 0) != 12 || elem(k, Int64, 1) != 13 {
		t.Errorf("shard 1/3: x %v, k %v", x, k)
	}
	// One float32 array reads as a plain Reader too.
	one := filepath.Join(t.TempDir(), "one.npz")
	os.WriteFile(one, npzArchive(true, npzEntry{"x.npy", npy1("<f8", false, "(3, 2)", f8(1, 2, 3, 4, 5, 6))}), 0o644)
	r1, err := Open(one)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(Limit(r1, 2), 1)
	if err != nil || fmt.Sprint(got) != "[1 2 3 4]" {
		t.Errorf("one array through Read: %v, %v", got, err)
	}
	if _, err := r.Read(make([]float32, 2)); err == nil || !strings.Contains(err.Error(), "not one float32 array") {
		t.Errorf("Read of two arrays: %v", err)
	}
}

// TestNpzHostile: broken archives and arrays give their message.
func TestNpzHostile(t *testing.T) {
	x := npzEntry{"x.npy", npy1("<f4", false, "(2, 2)", f4(1, 2, 3, 4))}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"not a zip", []byte("hello, world"), "not an .npz file"},
		{"empty archive", npzArchive(false), "holds no arrays"},
		{"not an array", npzArchive(false, x, npzEntry{"notes.txt", []byte("x")}), `entry "notes.txt" is not an .npy array`},
		{"twice", npzArchive(false, x, x), `array "x" appears twice`},
		{"counts", npzArchive(false, x, npzEntry{"k.npy", npy1("<i8", false, "(3,)", i8s(1, 2, 3))}), `arrays hold different sample counts (first axes): "x" 2, "k" 3`},
		{"truncated", npzArchive(true, npzEntry{"x.npy", npy1("<f4", false, "(2, 3)", f4(1, 2, 3, 4))}), `array "x": data is truncated: 2 samples of 12 bytes do not fit in the 16 bytes`},
		{"absurd", npzArchive(false, npzEntry{"x.npy", npy1("<f4", false, "(1099511627776, 1099511627776)", f4(1))}), `array "x": shape [1099511627776 1099511627776] is too large`},
		{"big-endian", npzArchive(false, npzEntry{"x.npy", npy1(">i8", false, "(1,)", i8s(1))}), "dtype '>i8' is big-endian"},
		{"complex", npzArchive(false, npzEntry{"x.npy", npy1("<c8", false, "(1,)", f4(1, 2))}), "dtype '<c8' is not supported"},
		{"fortran", npzArchive(false, npzEntry{"x.npy", npy1("<f4", true, "(2, 2)", f4(1, 2, 3, 4))}), "fortran_order"},
		{"no samples", npzArchive(false, npzEntry{"x.npy", npy1("<f4", false, "(0, 2)", nil)}), "holds no samples"},
		{"not npy", npzArchive(false, npzEntry{"x.npy", []byte("garbage")}), `array "x": not a .npy file`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.npz")
			os.WriteFile(path, c.data, 0o644)
			r, err := Open(path)
			if err == nil {
				r.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	// A stored entry whose values do not match the archive's CRC-32 fails when read to its end.
	var raw bytes.Buffer
	z := zip.NewWriter(&raw)
	body := npy1("<f4", false, "(2, 2)", f4(1, 2, 3, 4))
	w, _ := z.CreateRaw(&zip.FileHeader{Name: "x.npy", Method: zip.Store, CRC32: 0xdeadbeef, UncompressedSize64: uint64(len(body)), CompressedSize64: uint64(len(body))})
	w.Write(body)
	z.Close()
	r, err := decodeNpz("npz", bytes.NewReader(raw.Bytes()), int64(raw.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readFieldsAll(r, 1); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("an entry whose checksum fails: %v", err)
	}
}
