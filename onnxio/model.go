// Package onnxio loads and saves ONNX models and gives their main graph as an editable Graph of
// nodes over named tensors, in the manner of onnx-graphsurgeon: FoldConstants turns Constant nodes
// and constant chains (Cast, Reshape, Transpose...) into initializers, then edit nodes and
// initializers, then Cleanup and Toposort. Protobuf appears only at the edges (Load, Save,
// Marshal); what convpca does not edit goes back out unchanged, so a load-save round trip gives
// a proto-equal model.
package onnxio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio/onnxpb"
)

// Model is an ONNX model: the protobuf for everything convpca leaves alone, and the main graph
// as an editable Graph. Marshal puts the Graph back into the protobuf.
type Model struct {
	Proto *onnxpb.ModelProto
	Graph *Graph
}

// Load reads an ONNX model file, and the external data of its initializers (see SaveWith).
// The error says plainly when the file is missing, is not an ONNX model, or is truncated.
func Load(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	for _, t := range m.Graph.Initializers() {
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			if err := readExternal(t, filepath.Dir(path)); err != nil {
				return nil, fmt.Errorf("load model %s: tensor %q: %w", path, t.GetName(), err)
			}
		}
	}
	return m, nil
}

// ErrNotONNX is returned (wrapped) for data that is not a complete ONNX model.
var ErrNotONNX = errors.New("not a valid ONNX model (corrupt or truncated file?)")

// Parse decodes a serialized ModelProto and checks that its graph is complete: every tensor a
// node reads is defined, and every graph output is produced.
func Parse(data []byte) (*Model, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: file is empty", ErrNotONNX)
	}
	mp := new(onnxpb.ModelProto)
	if err := proto.Unmarshal(data, mp); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotONNX, err)
	}
	return FromProto(mp)
}

// FromProto is Parse of a decoded ModelProto (a model built in memory): it takes ownership of mp
// and checks its graph as Parse does.
func FromProto(mp *onnxpb.ModelProto) (*Model, error) {
	if mp.GetIrVersion() <= 0 || mp.Graph == nil {
		return nil, fmt.Errorf("%w: no IR version or no graph", ErrNotONNX)
	}
	g := newGraph(mp.Graph, mp.GetIrVersion())
	g.model = mp
	if err := g.Check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotONNX, err)
	}
	return &Model{Proto: mp, Graph: g}, nil
}

// Opset returns the model's opset version for the default ONNX domain (0 when absent).
func (m *Model) Opset() int64 { return opset(m.Proto) }

// Opset returns the version of the default ONNX domain the graph's model imports (0 when it
// imports none, or for a graph that belongs to no model).
func (g *Graph) Opset() int64 { return opset(g.model) }

func opset(mp *onnxpb.ModelProto) int64 {
	for _, o := range mp.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return o.GetVersion()
		}
	}
	return 0
}

// Marshal returns the serialized model with the current Graph. It is deterministic: the same
// model always gives the same bytes.
func (m *Model) Marshal() ([]byte, error) {
	if err := m.Graph.Check(); err != nil {
		return nil, fmt.Errorf("marshal model: %w", err)
	}
	out := proto.Clone(m.Proto).(*onnxpb.ModelProto)
	out.Graph = m.Graph.Proto()
	return proto.MarshalOptions{Deterministic: true}.Marshal(out)
}

// Clone returns a deep copy of the model, initializer data included: edits of one, even in
// place (a node's input slice, an attribute, a tensor's bytes), do not show in the other.
func (m *Model) Clone() *Model { return m.clone(true) }

// clone copies the model; with tensors false the copy shares the initializer tensors (which
// Graph never modifies in place) and copies everything else.
func (m *Model) clone(tensors bool) *Model {
	mp := proto.Clone(m.Proto).(*onnxpb.ModelProto)
	gp := m.Graph.Proto()
	inits := gp.Initializer
	gp.Initializer = nil
	gp = proto.Clone(gp).(*onnxpb.GraphProto) // nodes, attributes, value_info: no slice shared
	for _, t := range inits {
		if tensors {
			t = proto.Clone(t).(*onnxpb.TensorProto)
		}
		gp.Initializer = append(gp.Initializer, t)
	}
	mp.Graph = gp
	g := newGraph(gp, mp.GetIrVersion())
	g.model = mp
	return &Model{Proto: mp, Graph: g}
}

// Save writes the model to path atomically: the bytes go to a temporary file in the same folder,
// which is synced and then renamed over path, so path never holds a partial model.
func Save(path string, m *Model) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFileAtomic calls write with a temporary file beside path and renames it to path once
// write, sync and close have all succeeded. On any failure the temporary file is removed and
// path is left as it was.
func WriteFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = write(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
