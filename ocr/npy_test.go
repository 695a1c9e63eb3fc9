package ocr

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseNpy reads a .npy file by the format's definition, independently of npy.go: magic,
// version 1.0, little-endian uint16 header length, the header text, then the data.
func parseNpy(t *testing.T, path string) (header string, data []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:6]) != "\x93NUMPY" || b[6] != 1 || b[7] != 0 {
		t.Fatalf("magic/version % x", b[:8])
	}
	n := int(binary.LittleEndian.Uint16(b[8:10]))
	if (10+n)%64 != 0 {
		t.Errorf("data start at byte %d, not a multiple of 64", 10+n)
	}
	header = string(b[10 : 10+n])
	if !strings.HasSuffix(header, "\n") {
		t.Errorf("header %q does not end in a newline", header)
	}
	return header, b[10+n:]
}

func TestNpyFloat32(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.npy")
	data := []float32{0, 1, -2.5, float32(math.Inf(1)), 1e-30, 3}
	if err := WriteNpyFloat32(path, []int{2, 3}, data); err != nil {
		t.Fatal(err)
	}
	header, raw := parseNpy(t, path)
	for _, want := range []string{"'descr': '<f4'", "'fortran_order': False", "'shape': (2, 3)"} {
		if !strings.Contains(header, want) {
			t.Errorf("header %q lacks %s", header, want)
		}
	}
	if len(raw) != 4*len(data) {
		t.Fatalf("%d data bytes, want %d", len(raw), 4*len(data))
	}
	for i, v := range data {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); got != v {
			t.Errorf("value %d = %g, want %g", i, got, v)
		}
	}
	back, shape, err := ReadNpyFloat32(path)
	if err != nil || len(shape) != 2 || shape[0] != 2 || shape[1] != 3 {
		t.Fatalf("ReadNpyFloat32: shape %v, %v", shape, err)
	}
	for i := range data {
		if back[i] != data[i] {
			t.Errorf("read back value %d = %g, want %g", i, back[i], data[i])
		}
	}
}

func TestNpyInt64AndShapes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "l.npy")
	if err := WriteNpyInt64(p, []int{3}, []int64{0, 1, -7}); err != nil {
		t.Fatal(err)
	}
	header, raw := parseNpy(t, p)
	if !strings.Contains(header, "'descr': '<i8'") || !strings.Contains(header, "'shape': (3,)") {
		t.Errorf("header %q", header)
	}
	if int64(binary.LittleEndian.Uint64(raw[16:])) != -7 {
		t.Error("int64 value not little-endian two's complement")
	}
	// A scalar and an empty array.
	if err := WriteNpyFloat32(filepath.Join(dir, "s.npy"), nil, []float32{5}); err != nil {
		t.Fatal(err)
	}
	if h, _ := parseNpy(t, filepath.Join(dir, "s.npy")); !strings.Contains(h, "'shape': ()") {
		t.Errorf("scalar header %q", h)
	}
	if err := WriteNpyFloat32(filepath.Join(dir, "e.npy"), []int{0, 3}, nil); err != nil {
		t.Fatal(err)
	}
	if _, shape, err := ReadNpyFloat32(filepath.Join(dir, "e.npy")); err != nil || shape[0] != 0 || shape[1] != 3 {
		t.Errorf("empty array read back as %v, %v", shape, err)
	}
	// Shape and data disagreeing is refused and leaves no file.
	bad := filepath.Join(dir, "bad.npy")
	if err := WriteNpyFloat32(bad, []int{2, 2}, []float32{1}); err == nil {
		t.Error("shape [2 2] with one value accepted")
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("refused write left a file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("%d files in the folder, want 3 (no temporary files)", len(entries))
	}
}

func TestReadNpyRefuses(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "g.npy")
	if err := WriteNpyFloat32(good, []int{4}, []float32{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	for name, content := range map[string][]byte{
		"truncated data": b[:len(b)-1],
		"truncated head": b[:20],
		"not npy":        []byte("hello world, not an array"),
		"int64":          []byte(strings.Replace(string(b), "<f4", "<i8", 1)),
		"big-endian":     []byte(strings.Replace(string(b), "<f4", ">f4", 1)),
		"fortran":        []byte(strings.Replace(string(b), "False", "True ", 1)),
		"absurd shape":   []byte(strings.Replace(string(b), "(4,)", "(9999999999999999,)", 1)),
	} {
		p := filepath.Join(dir, "bad.npy")
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ReadNpyFloat32(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
