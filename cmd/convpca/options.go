package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
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
	warn := func(msg string) { fmt.Fprintf(stderr, "convpca: warning: %s\n", msg) }
	if c.Bool("quiet") {
		warn = nil
	}
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

// openData opens data to feed to model m; an error that the data cannot be read also says
// what m's input expects, so that a file of the wrong kind is easy to put right.
func openData(path string, m *onnxio.Model) (dataset.Reader, error) {
	r, err := dataset.Open(path)
	if err != nil {
		if in, ierr := ort.ModelInput(m); ierr == nil {
			return nil, fmt.Errorf("%w (model input %q expects float32 %s, batch first)", err, in.Name, in)
		}
		return nil, err
	}
	return r, nil
}
