package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
)

// calibOptions reads the runtime flags.
func calibOptions(c *cli.Context, stderr io.Writer) (ort.Options, error) {
	p, err := ort.ParseProvider(c.String("provider"))
	if err != nil {
		return ort.Options{}, usageError{err.Error()}
	}
	if c.Int("max-samples") < 0 || c.Int("batch") < 1 || c.Int("threads") < 0 {
		return ort.Options{}, usagef("--max-samples and --threads must be >= 0 and --batch >= 1")
	}
	warn := warnTo(c, stderr)
	return ort.Options{
		MaxSamples: c.Int("max-samples"),
		Batch:      c.Int("batch"),
		Runtime: ort.RuntimeOptions{
			Library:  c.String("ort-lib"),
			Provider: p,
			Threads:  c.Int("threads"),
			Warn:     warn,
		},
	}, nil
}

// warnFunc returns the function that prints warnings to the command's stderr, nil with -q.
func warnFunc(c *cli.Context) func(string) { return warnTo(c, c.App.ErrWriter) }

func warnTo(c *cli.Context, stderr io.Writer) func(string) {
	if c.Bool("quiet") {
		return nil
	}
	return func(msg string) { fmt.Fprintf(stderr, "convpca: warning: %s\n", msg) }
}

// openData opens data to feed to model m with the default preprocessing of images (see
// dataOptions.open).
func openData(path string, m *onnxio.Model) (dataset.Reader, error) {
	return dataOptions{}.open(path, m)
}

// simplifyFlag turns rewrite.Simplify off, for compress and calibrate (which must agree: the
// statistics of one are for the graph of the other).
var simplifyFlag = &cli.BoolFlag{Name: "no-simplify", Usage: "keep the graph as given: no folding of elementwise ops by constants into the Convs next to them, no HardSigmoid for hard-swish, no depthwise Convs for onnxruntime's CPU layout (all exact up to float32 rounding; see README)"}

// prepareModel loads an ONNX model (loadModel) and, unless noSimplify, simplifies its graph
// (rewrite.Simplify), telling log what changed.
func prepareModel(path string, noSimplify bool, log func(string)) (*onnxio.Model, rewrite.Simplified, error) {
	m, err := loadModel(path)
	if err != nil || noSimplify {
		return m, rewrite.Simplified{}, err
	}
	s, err := rewrite.Simplify(m.Graph)
	if err != nil {
		return nil, s, fmt.Errorf("model %s: %w", path, err)
	}
	if s.Any() && log != nil {
		log("simplified the graph: " + s.String())
	}
	return m, s, nil
}

// logTo returns a function that prints one "convpca: " line to the command's standard error,
// or nil with --quiet.
func logTo(c *cli.Context) func(string) {
	if c.Bool("quiet") {
		return nil
	}
	return func(msg string) { fmt.Fprintf(c.App.ErrWriter, "convpca: %s\n", msg) }
}

// loadModel loads an ONNX model and folds its constants (onnxio.Graph.FoldConstants), so that
// weights written as Constant nodes or chains of Cast, Reshape, Transpose... over constants,
// as paddle2onnx, tf2onnx and older PyTorch exports have them, are initializers like any other
// before a layer is matched.
func loadModel(path string) (*onnxio.Model, error) {
	m, err := onnxio.Load(path)
	if err != nil {
		return nil, err
	}
	if _, err := m.Graph.FoldConstants(); err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	return m, nil
}
