package onnxio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio/onnxpb"
)

// extModel returns the chain model with a 600-value initializer w (2,400 bytes).
func extModel() *Model {
	m := chain()
	vals := make([]float32, 600)
	for i := range vals {
		vals[i] = float32(i) / 7
	}
	m.Graph.SetInitializer(FloatTensor("w", []int64{1, 600}, vals))
	return m
}

func TestExternalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.onnx")
	m := extModel()
	if err := SaveWith(path, m, SaveOptions{External: true}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path + ".data"); err != nil || st.Size() != 2400 {
		t.Fatalf("data file: %v, %v", st, err)
	}
	raw, _ := os.ReadFile(path)
	if len(raw) > 1000 {
		t.Errorf("model file holds %d bytes: the weight was not moved out", len(raw))
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Float32s(m.Graph.Initializer("w"))
	got, err := Float32s(back.Graph.Initializer("w"))
	if err != nil || len(got) != len(want) || got[599] != want[599] {
		t.Fatalf("external tensor read back wrong: %v", err)
	}
	// The original model is untouched by SaveWith.
	if m.Graph.Initializer("w").GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		t.Error("SaveWith changed the model it saved")
	}
}

// TestExternalHostile: locations outside the model's folder and ranges that do not fit are
// refused with a clear error.
func TestExternalHostile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "w.bin"), make([]byte, 2400), 0o644)
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	tests := []struct {
		name string
		kv   map[string]string
		want string
	}{
		{"absolute", map[string]string{"location": "/etc/passwd"}, `location "/etc/passwd" is outside the model's folder`},
		{"climbs", map[string]string{"location": "../w.bin"}, `location "../w.bin" is outside the model's folder`},
		{"no location", map[string]string{"offset": "0"}, "no location"},
		{"missing file", map[string]string{"location": "none.bin"}, "no such file"},
		{"past end", map[string]string{"location": "w.bin", "offset": "2000", "length": "2400"}, "bytes 2000 to 4400 of w.bin, which holds 2400"},
		{"bad offset", map[string]string{"location": "w.bin", "offset": "-5"}, `offset "-5" is not a byte count`},
		{"wrong length", map[string]string{"location": "w.bin", "length": "100"}, "100 bytes for shape [1 600]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := extModel()
			w := proto.Clone(m.Graph.Initializer("w")).(*onnxpb.TensorProto)
			w.RawData = nil
			w.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
			for _, k := range []string{"location", "offset", "length"} {
				if v, ok := tt.kv[k]; ok {
					w.ExternalData = append(w.ExternalData, &onnxpb.StringStringEntryProto{Key: proto.String(k), Value: proto.String(v)})
				}
			}
			m.Graph.SetInitializer(w)
			path := filepath.Join(sub, "m.onnx")
			if tt.name != "climbs" {
				path = filepath.Join(dir, "m.onnx")
			}
			if err := Save(path, m); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
