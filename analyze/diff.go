package analyze

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/ort"
)

// Status says what became of a layer between two models.
type Status string

const (
	Unchanged Status = "unchanged" // AFTER computes the layer's output by the same node and weights
	Replaced  Status = "replaced"  // AFTER computes the layer's output tensor by other nodes
	Removed   Status = "removed"   // AFTER has no such tensor (the layer was removed, or merged into a later replacement)
	Added     Status = "added"     // a layer of AFTER that matches no layer of BEFORE
)

// ModelDiff is what changed from one model (BEFORE) to another (AFTER): versions, graph inputs
// and outputs, and the cost of every layer (see LayerInfo). The two graphs are matched by
// tensor names.
type ModelDiff struct {
	Before  Summary     `json:"-"`
	After   Summary     `json:"-"`
	Changes Changes     `json:"changes"`
	Layers  []LayerDiff `json:"layers"`
	Total   TotalDiff   `json:"total"`
}

// Changes lists what changed in a model's interface. A nil version change means none.
type Changes struct {
	IRVersion *VersionChange `json:"ir_version"`
	Opset     *VersionChange `json:"opset"`
	Inputs    []DeclChange   `json:"inputs"`
	Outputs   []DeclChange   `json:"outputs"`
}

// VersionChange is a version before and after.
type VersionChange struct {
	Before int64 `json:"before"`
	After  int64 `json:"after"`
}

// DeclChange is a graph input or output that was added, removed or changed (in type or dims).
type DeclChange struct {
	Name   string `json:"name"`
	Change string `json:"change"` // "added", "removed" or "changed"
	Before *Decl  `json:"before"` // nil when added
	After  *Decl  `json:"after"`  // nil when removed
}

// NodeRef names a node for people.
type NodeRef struct {
	Name string `json:"name"` // the node's name, or its first output's when unnamed
	Op   string `json:"op"`
}

// LayerDiff is one layer's cost before and after. A replaced layer costs, after, the layers
// among the nodes that replace it: the nodes of AFTER between the layer's output tensor and
// the nearest tensors that BEFORE defines too.
type LayerDiff struct {
	Name         string    `json:"name"`
	Op           string    `json:"op"`
	Status       Status    `json:"status"`
	ReplacedBy   []NodeRef `json:"replaced_by"` // the replacing nodes in AFTER's order; empty unless replaced
	ParamsBefore int64     `json:"params_before"`
	ParamsAfter  int64     `json:"params_after"`
	ParamsRatio  *float64  `json:"params_ratio"` // after / before; nil when before is 0
	MACsBefore   int64     `json:"macs_before"`
	MACsAfter    int64     `json:"macs_after"`
	MACsRatio    *float64  `json:"macs_ratio"` // after / before; nil when before is 0
}

// TotalDiff is the cost of all layers of each model (per sample).
type TotalDiff struct {
	LayersBefore int      `json:"layers_before"`
	LayersAfter  int      `json:"layers_after"`
	Replaced     int      `json:"replaced"`
	ParamsBefore int64    `json:"params_before"`
	ParamsAfter  int64    `json:"params_after"`
	ParamsRatio  *float64 `json:"params_ratio"`
	MACsBefore   int64    `json:"macs_before"`
	MACsAfter    int64    `json:"macs_after"`
	MACsRatio    *float64 `json:"macs_ratio"`
}

// Ratio returns after / before, or nil when before is 0.
func Ratio(after, before int64) *float64 {
	if before == 0 {
		return nil
	}
	r := float64(after) / float64(before)
	return &r
}

// Diff compares two models, given the shapes of their tensors (see Shapes). Each layer of
// BEFORE is unchanged when AFTER produces its first output tensor by the same node (op,
// inputs, attributes and constant inputs), replaced when another node produces it, and
// removed when AFTER has no such tensor; layers of AFTER claimed by no layer of BEFORE are
// added. Every layer of AFTER counts in one row at most, so the rows sum to the totals.
func Diff(before, after *onnxio.Model, shapesBefore, shapesAfter map[string][]int64) (*ModelDiff, error) {
	lb, err := Layers(before, shapesBefore)
	if err != nil {
		return nil, fmt.Errorf("before: %w", err)
	}
	la, err := Layers(after, shapesAfter)
	if err != nil {
		return nil, fmt.Errorf("after: %w", err)
	}
	gb, ga := before.Graph, after.Graph
	d := &ModelDiff{Before: Summarize(before), After: Summarize(after), Layers: []LayerDiff{}}
	d.Changes = changes(d.Before, d.After)

	costA := map[*onnxio.Node]LayerInfo{}
	order := map[*onnxio.Node]int{}
	producer := map[string]*onnxio.Node{}
	i := 0
	for k, n := range ga.Nodes {
		order[n] = k
		for _, o := range n.Outputs {
			producer[o] = n
		}
		if IsLayer(ga, n) {
			costA[n] = la[i]
			i++
		}
	}
	defined := map[string]bool{}
	for _, vi := range gb.Inputs() {
		defined[vi.GetName()] = true
	}
	for _, t := range gb.Initializers() {
		defined[t.GetName()] = true
	}
	for _, n := range gb.Nodes {
		for _, o := range n.Outputs {
			defined[o] = true
		}
	}

	claimed := map[*onnxio.Node]bool{}
	claim := func(row *LayerDiff, n *onnxio.Node) {
		if claimed[n] {
			return
		}
		claimed[n] = true
		if row.Status == Replaced {
			row.ReplacedBy = append(row.ReplacedBy, NodeRef{Name: n.Label(), Op: n.Op})
		}
		if l, ok := costA[n]; ok {
			row.ParamsAfter += l.Params
			row.MACsAfter += l.MACs
		}
	}
	i = 0
	for _, n := range gb.Nodes {
		if !IsLayer(gb, n) {
			continue
		}
		l := lb[i]
		i++
		row := LayerDiff{Name: l.Name, Op: l.Op, ReplacedBy: []NodeRef{}, ParamsBefore: l.Params, MACsBefore: l.MACs}
		p := producer[n.Outputs[0]]
		switch {
		case p == nil:
			row.Status = Removed
		case sameNode(gb, n, ga, p):
			row.Status = Unchanged
			claim(&row, p)
		default:
			row.Status = Replaced
			d.Total.Replaced++
			for _, r := range replacement(p, producer, defined, order) {
				claim(&row, r)
			}
		}
		d.Layers = append(d.Layers, row)
	}
	for _, n := range ga.Nodes {
		if l, ok := costA[n]; ok && !claimed[n] {
			row := LayerDiff{Name: l.Name, Op: l.Op, Status: Added, ReplacedBy: []NodeRef{}}
			claim(&row, n)
			d.Layers = append(d.Layers, row)
		}
	}
	for _, l := range lb {
		d.Total.ParamsBefore += l.Params
		d.Total.MACsBefore += l.MACs
	}
	for _, l := range la {
		d.Total.ParamsAfter += l.Params
		d.Total.MACsAfter += l.MACs
	}
	d.Total.LayersBefore, d.Total.LayersAfter = len(lb), len(la)
	for k := range d.Layers {
		r := &d.Layers[k]
		r.ParamsRatio, r.MACsRatio = Ratio(r.ParamsAfter, r.ParamsBefore), Ratio(r.MACsAfter, r.MACsBefore)
	}
	d.Total.ParamsRatio = Ratio(d.Total.ParamsAfter, d.Total.ParamsBefore)
	d.Total.MACsRatio = Ratio(d.Total.MACsAfter, d.Total.MACsBefore)
	return d, nil
}

// replacement returns the nodes of AFTER from p back to the nearest tensors that BEFORE
// defines too, in AFTER's order.
func replacement(p *onnxio.Node, producer map[string]*onnxio.Node, defined map[string]bool, order map[*onnxio.Node]int) []*onnxio.Node {
	seen := map[*onnxio.Node]bool{p: true}
	nodes := []*onnxio.Node{p}
	for k := 0; k < len(nodes); k++ {
		for _, in := range nodes[k].Inputs {
			if in == "" || defined[in] {
				continue
			}
			if q := producer[in]; q != nil && !seen[q] {
				seen[q] = true
				nodes = append(nodes, q)
			}
		}
	}
	slices.SortFunc(nodes, func(a, b *onnxio.Node) int { return order[a] - order[b] })
	return nodes
}

// sameNode reports whether node a of ga and node b of gb compute the same: same op, inputs,
// outputs and attributes, and equal constants where an input is constant.
func sameNode(ga *onnxio.Graph, a *onnxio.Node, gb *onnxio.Graph, b *onnxio.Node) bool {
	if a.Op != b.Op || a.Domain != b.Domain || !slices.Equal(a.Inputs, b.Inputs) || !slices.Equal(a.Outputs, b.Outputs) || len(a.Attrs) != len(b.Attrs) {
		return false
	}
	for _, at := range a.Attrs {
		if !proto.Equal(at, b.Attr(at.GetName())) {
			return false
		}
	}
	for _, in := range a.Inputs {
		ca, cb := constTensor(ga, in), constTensor(gb, in)
		if (ca == nil) != (cb == nil) || ca != nil && !proto.Equal(ca, cb) {
			return false
		}
	}
	return true
}

// constTensor returns the value of a constant tensor (an initializer or a Constant node's
// tensor), or nil.
func constTensor(g *onnxio.Graph, name string) *onnxpb.TensorProto {
	if name == "" {
		return nil
	}
	if t := g.Initializer(name); t != nil {
		return t
	}
	if p := g.Producer(name); p != nil && p.Op == "Constant" {
		if a := p.Attr("value"); a != nil {
			return a.T
		}
	}
	return nil
}

func changes(before, after Summary) Changes {
	var c Changes
	if before.IRVersion != after.IRVersion {
		c.IRVersion = &VersionChange{before.IRVersion, after.IRVersion}
	}
	if before.Opset != after.Opset {
		c.Opset = &VersionChange{before.Opset, after.Opset}
	}
	c.Inputs = declChanges(before.Inputs, after.Inputs)
	c.Outputs = declChanges(before.Outputs, after.Outputs)
	return c
}

func declChanges(before, after []Decl) []DeclChange {
	out := []DeclChange{}
	find := func(list []Decl, name string) *Decl {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
		return nil
	}
	for i := range before {
		b := &before[i]
		switch a := find(after, b.Name); {
		case a == nil:
			out = append(out, DeclChange{Name: b.Name, Change: "removed", Before: b})
		case !b.Equal(*a):
			out = append(out, DeclChange{Name: b.Name, Change: "changed", Before: b, After: a})
		}
	}
	for i := range after {
		if a := &after[i]; find(before, a.Name) == nil {
			out = append(out, DeclChange{Name: a.Name, Change: "added", After: a})
		}
	}
	return out
}

// OutputDiff compares one graph output of two models over a data set. RelL2 is nil when
// BEFORE's output is all zero and AFTER's is not. Top1 takes the argmax over the last axis,
// once trailing axes of size 1 are dropped (N×C×1×1 counts as N×C, N×1 stays); it is nil
// when that axis has one element.
type OutputDiff struct {
	Name   string   `json:"name"`
	Shape  []int64  `json:"shape"`          // of the first batch
	MaxAbs float64  `json:"max_abs_diff"`   // max |a - b| over all values
	RelL2  *float64 `json:"rel_l2"`         // ||a - b|| / ||a|| over all values, a = BEFORE
	Top1   *float64 `json:"top1_agreement"` // fraction of rows (over all axes but the last) whose argmax over the last axis agrees
}

// CompareOutputs runs BEFORE on the data of rb and AFTER on the data of ra (the same data,
// read twice), batch by batch in step, and compares each graph output the two have in common
// (by name). It returns the number of samples compared. Both models must run the same batch
// sizes (a fixed batch size that differs between them is an error).
func CompareOutputs(before, after *onnxio.Model, rb, ra dataset.Reader, opts ort.Options) (int, []OutputDiff, error) {
	var names []string
	for _, o := range before.Graph.Outputs() {
		if slices.Contains(after.Graph.Outputs(), o) {
			names = append(names, o)
		}
	}
	if len(names) == 0 {
		return 0, nil, errors.New("the models have no graph output of the same name to compare")
	}
	return CompareTensors(before, after, names, rb, ra, opts)
}

// CompareTensors is CompareOutputs for the named tensors, which both models must compute
// (graph outputs or not).
func CompareTensors(before, after *onnxio.Model, names []string, rb, ra dataset.Reader, opts ort.Options) (int, []OutputDiff, error) {
	type batch struct {
		first, n int
		outs     []ort.Output
	}
	ch := make(chan batch)
	done := make(chan struct{})
	errc := make(chan error, 1)
	errStopped := errors.New("stopped")
	go func() {
		defer close(ch)
		_, err := ort.Infer(before, rb, names, opts, func(b ort.Batch) error {
			c := batch{first: b.First, n: b.N}
			for _, o := range b.Outputs {
				c.outs = append(c.outs, ort.Output{Name: o.Name, Shape: slices.Clone(o.Shape), Data: slices.Clone(o.Data)})
			}
			select {
			case ch <- c:
				return nil
			case <-done:
				return errStopped
			}
		})
		errc <- err
	}()

	acc := make([]struct {
		maxAbs, diff2, norm2 float64
		rows, agree          int
	}, len(names))
	diffs := make([]OutputDiff, len(names))
	errBefore := errors.New("before ended early")
	n, err := ort.Infer(after, ra, names, opts, func(b ort.Batch) error {
		c, ok := <-ch
		if !ok {
			return errBefore
		}
		if c.first != b.First || c.n != b.N {
			return fmt.Errorf("the models ran different batches (samples %d-%d and %d-%d); do both have the same batch size?", c.first, c.first+c.n-1, b.First, b.First+b.N-1)
		}
		for k, o := range b.Outputs {
			ob := c.outs[k]
			if !slices.Equal(ob.Shape, o.Shape) {
				return fmt.Errorf("output %q has shape %v before and %v after", o.Name, ob.Shape, o.Shape)
			}
			if diffs[k].Shape == nil {
				diffs[k] = OutputDiff{Name: o.Name, Shape: slices.Clone(o.Shape)}
			}
			a := &acc[k]
			for i, x := range ob.Data {
				e := float64(x) - float64(o.Data[i])
				a.maxAbs = math.Max(a.maxAbs, math.Abs(e))
				a.diff2 += e * e
				a.norm2 += float64(x) * float64(x)
			}
			if last := lastAxis(o.Shape); last > 1 {
				for i := 0; i+last <= len(o.Data); i += last {
					a.rows++
					if ort.Argmax(ob.Data[i:i+last]) == ort.Argmax(o.Data[i:i+last]) {
						a.agree++
					}
				}
			}
		}
		return nil
	})
	close(done)
	berr := <-errc
	switch {
	case berr != nil && !errors.Is(berr, errStopped):
		return 0, nil, fmt.Errorf("before: %w", berr)
	case errors.Is(err, errBefore):
		return 0, nil, errors.New("the models ran different numbers of batches (BEFORE fewer); do both have the same batch size?")
	case err != nil:
		return 0, nil, fmt.Errorf("after: %w", err)
	case berr != nil:
		return 0, nil, errors.New("the models ran different numbers of batches (BEFORE more); do both have the same batch size?")
	}
	for k, a := range acc {
		diffs[k].MaxAbs = a.maxAbs
		switch {
		case a.norm2 > 0:
			r := math.Sqrt(a.diff2 / a.norm2)
			diffs[k].RelL2 = &r
		case a.diff2 == 0:
			r := 0.0
			diffs[k].RelL2 = &r
		}
		if a.rows > 0 {
			r := float64(a.agree) / float64(a.rows)
			diffs[k].Top1 = &r
		}
	}
	return n, diffs, nil
}

// lastAxis returns the size of the axis top-1 agreement is taken over: the last axis, once
// trailing axes of size 1 are dropped (keeping the first axis), or 0 for a scalar.
func lastAxis(shape []int64) int {
	for len(shape) > 2 && shape[len(shape)-1] == 1 {
		shape = shape[:len(shape)-1]
	}
	if len(shape) == 0 {
		return 0
	}
	return int(shape[len(shape)-1])
}

// squashers are the operators whose output Logits looks through: each maps scores
// monotonically to probabilities, and saturates.
var squashers = map[string]bool{"Softmax": true, "LogSoftmax": true, "Sigmoid": true}

// reshapers move or relabel values without changing them; Logits looks through them.
var reshapers = map[string]bool{"Identity": true, "Reshape": true, "Transpose": true, "Flatten": true, "Squeeze": true, "Unsqueeze": true}

// Logits returns, for each graph output of g, the tensor to measure a compression's error on:
// the input of the Softmax, LogSoftmax or Sigmoid the output ends with (looking through
// Identity, Reshape, Transpose, Flatten, Squeeze and Unsqueeze), or the output itself. A
// saturating final activation hides errors on confidently decided samples and shows them only
// near its decision boundary, where few samples lie: measured after it, the error of a few
// hundred samples is noise (on PaddleOCR cls, a 20-sample check read 0.004 where the 300
// evaluation lines read 0.15), while before it every sample counts.
func Logits(g *onnxio.Graph) []string {
	var names []string
	for _, out := range g.Outputs() {
		name, t := out, out
		for {
			p := g.Producer(t)
			if p == nil || len(p.Inputs) == 0 || p.Inputs[0] == "" {
				break
			}
			if squashers[p.Op] && p.Domain == "" {
				name = p.Inputs[0]
				break
			}
			if !reshapers[p.Op] || p.Domain != "" {
				break
			}
			t = p.Inputs[0]
		}
		names = append(names, name)
	}
	return names
}
