package onnxio

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/testmodels"
)

const testdata = "/usr/share/libonnx-testdata/data"

// TestRoundTripLibonnx loads, marshals and re-parses every model of Debian's libonnx-testdata
// and checks the result is proto-equal to the file as protobuf decodes it.
func TestRoundTripLibonnx(t *testing.T) {
	var models []string
	for _, dir := range []string{"node", "pytorch-converted", "pytorch-operator", "simple"} {
		m, _ := filepath.Glob(filepath.Join(testdata, dir, "*", "model.onnx"))
		models = append(models, m...)
	}
	if len(models) == 0 {
		testmodels.RequireOrSkip(t, errors.New("libonnx-testdata is not installed (apt-get install libonnx-testdata)"))
	}
	for _, path := range models {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want := new(onnxpb.ModelProto)
		if err := proto.Unmarshal(data, want); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		m, err := Parse(data)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		out, err := m.Marshal()
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		got := new(onnxpb.ModelProto)
		if err := proto.Unmarshal(out, got); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: round trip changed the model", path)
		}
		// Clone must be independent of the original and equal to it.
		c := m.Clone()
		c.Graph.Nodes = nil
		again, _ := m.Marshal()
		if !proto.Equal(mustParse(t, again), want) {
			t.Errorf("%s: editing a clone changed the original", path)
		}
	}
	t.Logf("%d models round-tripped", len(models))
}

func mustParse(t *testing.T, b []byte) *onnxpb.ModelProto {
	t.Helper()
	m := new(onnxpb.ModelProto)
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseErrors(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(testdata, "pytorch-converted", "test_Conv2d", "model.onnx"))
	testmodels.RequireOrSkip(t, err)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "file is empty"},
		{"text", []byte("this is not a model\n"), "not a valid ONNX model"},
		{"truncated", good[:len(good)/2], "not a valid ONNX model"},
		{"truncated-early", good[:40], "not a valid ONNX model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.onnx")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Load(missing) error = %v", err)
	}
}

func TestSaveAtomic(t *testing.T) {
	dir := t.TempDir()
	m := tinyModel()
	path := filepath.Join(dir, "m.onnx")
	if err := Save(path, m); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Graph.Nodes) != 1 {
		t.Fatalf("saved model has %d nodes, want 1", len(back.Graph.Nodes))
	}
	// A model that fails its check is not written, and nothing is left behind.
	m.Graph.Nodes[0].Inputs[0] = "nowhere"
	bad := filepath.Join(dir, "bad.onnx")
	if err := Save(bad, m); err == nil || !strings.Contains(err.Error(), `"nowhere"`) {
		t.Fatalf("Save(broken) error = %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries after a failed save, want 1", len(entries))
	}
	// An unwritable folder gives an error and no file.
	if err := Save(filepath.Join(dir, "no", "such", "dir.onnx"), back); err == nil {
		t.Error("Save into a missing folder succeeded")
	}
}

// tinyModel is x -> Relu -> y.
func tinyModel() *Model {
	mp := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name:   proto.String("g"),
			Input:  []*onnxpb.ValueInfoProto{TensorInfo("x", onnxpb.TensorProto_FLOAT, []int64{1, 2})},
			Output: []*onnxpb.ValueInfoProto{TensorInfo("y", onnxpb.TensorProto_FLOAT, []int64{1, 2})},
			Node:   []*onnxpb.NodeProto{{OpType: proto.String("Relu"), Input: []string{"x"}, Output: []string{"y"}}},
		},
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		panic(err)
	}
	m, err := Parse(b)
	if err != nil {
		panic(err)
	}
	return m
}
