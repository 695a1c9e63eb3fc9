package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
)

func init() { commands = append(commands, evalCommand) }

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "top-1 accuracy of a classifier on labelled data",
		ArgsUsage: "MODEL.onnx",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "inputs: .npy, ONNX .pb tensor or MNIST IDX images"},
			&cli.StringFlag{Name: "labels", Usage: "labels: MNIST IDX labels or a 1-D integer .npy"},
		}, runtimeFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 || c.String("data") == "" || c.String("labels") == "" {
				return usagef("eval takes one model, --data X and --labels Y")
			}
			opts, err := calibOptions(c, c.App.ErrWriter)
			if err != nil {
				return err
			}
			_, err = runEval(c.Args().First(), c.String("data"), c.String("labels"), opts, c.App.Writer)
			return err
		},
	}
}

// runEval prints and returns the top-1 accuracy of the model on the data.
func runEval(model, data, labels string, opts ort.Options, stdout io.Writer) (float64, error) {
	m, err := onnxio.Load(model)
	if err != nil {
		return 0, err
	}
	r, err := openData(data, m)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	y, err := dataset.OpenLabels(labels)
	if err != nil {
		return 0, err
	}
	acc, n, err := ort.Accuracy(m, r, y, opts)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "top-1 accuracy %.4f (%d samples)\n", acc, n)
	return acc, nil
}
