package onnxio

import (
	"testing"

	"github.com/convpca/convpca/onnxio/onnxpb"
)

func node(name, op string, in, out []string) *Node {
	return &Node{Name: name, Op: op, Inputs: in, Outputs: out}
}

// chain builds x -> A -> a -> B -> y with initializer w read by B.
func chain() *Model {
	m := tinyModel()
	g := m.Graph
	g.Nodes = []*Node{
		node("A", "Relu", []string{"x"}, []string{"a"}),
		node("B", "Add", []string{"a", "w"}, []string{"y"}),
	}
	g.SetInitializer(FloatTensor("w", []int64{1, 2}, []float32{1, 2}))
	return m
}

func TestCleanup(t *testing.T) {
	m := chain()
	g := m.Graph
	// A dead branch: a node nobody reads, with its own initializer.
	g.Nodes = append(g.Nodes, node("dead", "Add", []string{"a", "v"}, []string{"unused"}))
	g.SetInitializer(FloatTensor("v", []int64{1}, []float32{3}))
	g.SetValueInfo(TensorInfo("unused", onnxpb.TensorProto_FLOAT, nil))
	g.SetValueInfo(TensorInfo("a", onnxpb.TensorProto_FLOAT, nil))
	g.Cleanup()
	if len(g.Nodes) != 2 || g.Nodes[0].Name != "A" || g.Nodes[1].Name != "B" {
		t.Fatalf("nodes after Cleanup: %v", labels(g.Nodes))
	}
	if g.Initializer("v") != nil || g.Initializer("w") == nil {
		t.Errorf("Cleanup kept v=%v, w=%v; want only w", g.Initializer("v") != nil, g.Initializer("w") != nil)
	}
	if g.ValueInfo("unused") != nil || g.ValueInfo("a") == nil {
		t.Errorf("value_info after Cleanup is wrong")
	}
	if len(g.Inputs()) != 1 {
		t.Errorf("Cleanup changed the run-time inputs: %d", len(g.Inputs()))
	}
	if err := g.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestCleanupOldIR: in IR < 4 initializers are declared as graph inputs too; removing one
// removes its input entry, but a run-time input stays even when unused.
func TestCleanupOldIR(t *testing.T) {
	m := chain()
	g := m.Graph
	g.irVersion = 3
	g.SetInitializer(FloatTensor("v", []int64{1}, []float32{3}))
	if !containsInput(g, "v") {
		t.Fatal("SetInitializer in IR 3 did not declare the input")
	}
	g.Cleanup()
	if containsInput(g, "v") || !containsInput(g, "x") {
		t.Errorf("inputs after Cleanup: v=%v x=%v", containsInput(g, "v"), containsInput(g, "x"))
	}
}

func containsInput(g *Graph, name string) bool {
	for _, vi := range g.rest.Input {
		if vi.GetName() == name {
			return true
		}
	}
	return false
}

func TestToposort(t *testing.T) {
	m := chain()
	g := m.Graph
	g.Nodes[0], g.Nodes[1] = g.Nodes[1], g.Nodes[0]
	if err := g.Toposort(); err != nil {
		t.Fatal(err)
	}
	if got := labels(g.Nodes); got[0] != "A" || got[1] != "B" {
		t.Fatalf("order after Toposort: %v", got)
	}
	// A cycle is an error.
	g.Nodes[0].Inputs = []string{"y"}
	if err := g.Toposort(); err == nil {
		t.Error("Toposort of a cycle succeeded")
	}
}

func TestUniqueNameAndCheck(t *testing.T) {
	g := chain().Graph
	for _, tc := range []struct{ prefix, want string }{{"z", "z"}, {"a", "a_1"}, {"A", "A_1"}, {"w", "w_1"}} {
		if got := g.UniqueName(tc.prefix); got != tc.want {
			t.Errorf("UniqueName(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	g.Nodes = append(g.Nodes, node("C", "Relu", []string{"x"}, []string{"a"}))
	if err := g.Check(); err == nil {
		t.Error("Check accepted tensor a defined twice")
	}
}

func labels(nodes []*Node) []string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.Label())
	}
	return s
}
