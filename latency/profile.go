package latency

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
)

// In-model times. A layer's table times it alone; in the model, its neighbours and the other
// layers change what it costs: its weights may have left the caches (see pressure.go), its
// input comes in the layout the layer before left it in. onnxruntime's profile of the whole
// model says what each node took there. On torchvision's ResNet-18 (64x64, batch 8, one
// thread, tables timed warm), what the factorizations chosen saved in the model summed to
// 5.85 ms by the profiles of the two models against 4.54 ms in the tables, nearly all of the
// difference in layer4's Convs (9.4 MB of weights each: 1.13 ms in their tables, 1.55 to 1.59
// ms in the model), while the layers with small weights saved within 0.02 ms of their tables.

// NodeTimes are onnxruntime's nodes' times in one run of a model, in milliseconds, keyed by
// the names onnxruntime gives the nodes it runs (see Of).
type NodeTimes map[string]float64

// Profile runs program p over and over in a session with onnxruntime's profiling on (opts
// otherwise as given: provider, threads, library) and returns each node's median time per
// run, leaving out the first profileWarm runs: at least minProfileRuns runs, then more until
// budget is spent, at most maxProfileRuns.
func Profile(p Program, opts ort.RuntimeOptions, budget time.Duration) (NodeTimes, error) {
	dir, err := os.MkdirTemp("", "convpca-profile-")
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	defer os.RemoveAll(dir)
	opts.Profile = filepath.Join(dir, "profile")
	s, err := ort.NewSession(p.Model, p.Input, p.Outputs, opts)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	x := randomInput(p.Dims)
	deadline := time.Now().Add(budget)
	for i := 0; i < profileWarm+minProfileRuns || i < profileWarm+maxProfileRuns && time.Now().Before(deadline); i++ {
		if err := s.Run(x, p.Dims, discard); err != nil {
			s.Close()
			return nil, fmt.Errorf("profile %s: %w", p.Name, err)
		}
	}
	if err := s.Close(); err != nil { // writes the profile
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	files, _ := filepath.Glob(opts.Profile + "*.json")
	if len(files) != 1 {
		return nil, fmt.Errorf("profile %s: onnxruntime wrote %d profiles", p.Name, len(files))
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	t, err := parseProfile(data, profileWarm)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	return t, nil
}

const (
	profileWarm    = 3   // runs left out of a profile: the session warming up
	minProfileRuns = 5   // runs profiled at least, whatever the budget
	maxProfileRuns = 200 // runs profiled at most
)

// parseProfile reads an onnxruntime profile (a JSON array of trace events; a node's run is an
// event of category "Node" named after the node with "_kernel_time" appended, its duration in
// microseconds) and returns each node's median time in milliseconds over its runs after the
// first skip.
func parseProfile(data []byte, skip int) (NodeTimes, error) {
	var events []struct {
		Cat  string  `json:"cat"`
		Name string  `json:"name"`
		Dur  float64 `json:"dur"`
	}
	if err := json.Unmarshal(data, &events); err != nil {
		return nil, fmt.Errorf("read onnxruntime's profile: %w", err)
	}
	runs := map[string][]float64{}
	for _, e := range events {
		name, ok := strings.CutSuffix(e.Name, "_kernel_time")
		if e.Cat == "Node" && ok {
			runs[name] = append(runs[name], e.Dur/1000)
		}
	}
	t := NodeTimes{}
	for name, d := range runs {
		if len(d) > skip {
			d = d[skip:]
		}
		t[name] = Median(d)
	}
	if len(t) == 0 {
		return nil, errors.New("onnxruntime's profile holds no node")
	}
	return t, nil
}

// Of returns the time of node n of g (a Conv, Gemm or MatMul) in the profiled model, and
// whether the profile has it. onnxruntime renames what it rewrites: a Conv it runs in the
// blocked layout is named after its output with "_nchwc" appended; a Conv with what follows
// it fused in (a BatchNormalization, an Add or Mul, an activation: fusedFollowers, each the
// only reader of the tensor before it) after the last one's output, or that one's name; a
// node rewritten by a fusion of onnxruntime's keeps its name with "/" and the fusion's
// appended (PaddleOCR rec's last MatMul: "p2o.MatMul.24/MatmulTransposeFusion/"). The first
// name along the chain the profile has is the node's.
func (t NodeTimes) Of(g *onnxio.Graph, n *onnxio.Node) (float64, bool) {
	names := []string{n.Name}
	for cur, depth := n, 0; len(cur.Outputs) == 1 && depth <= maxFused; depth++ {
		out := cur.Outputs[0]
		names = append(names, out+"_nchwc")
		if cur != n {
			names = append(names, cur.Name)
		}
		cs := g.Consumers(out)
		if len(cs) != 1 || !fusedFollowers[cs[0].Op] || slices.Contains(g.Outputs(), out) {
			break
		}
		cur = cs[0]
	}
	for _, name := range names {
		if ms, ok := t[name]; ok && name != "" {
			return ms, true
		}
	}
	if n.Name == "" {
		return 0, false
	}
	var found []string
	for name := range t {
		if strings.HasPrefix(name, n.Name+"/") {
			found = append(found, name)
		}
	}
	if len(found) != 1 {
		return 0, false
	}
	return t[found[0]], true
}

// fusedFollowers are the nodes onnxruntime may fuse into the Conv before them (its Conv with
// BatchNormalization, Add and Mul fusions, activations, and the blocked Conv's sum input),
// and maxFused how many in a row Of follows.
var fusedFollowers = map[string]bool{"BatchNormalization": true, "Add": true, "Mul": true,
	"Relu": true, "LeakyRelu": true, "Clip": true, "HardSigmoid": true, "Sigmoid": true, "Tanh": true}

const maxFused = 3
