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

// evalOptions are the inputs of one eval run.
type evalOptions struct {
	Model, Data, Labels string
	EvalCmd             string // the user's metric instead of Data and Labels (evalcmd.go)
	Read                dataOptions
	Runtime             ort.Options
	Stderr              io.Writer // where the progress bar goes (only when it is a terminal); nil: none
}

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "top-1 accuracy of a classifier on labelled data, or the score of your own --eval-cmd",
		ArgsUsage: "MODEL.onnx",
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "inputs: .npy, .npz, ONNX .pb tensor, MNIST IDX images or a folder of images"},
			&cli.StringFlag{Name: "labels", Usage: "labels: MNIST IDX labels or a 1-D integer .npy"},
		}, append(dataFlags(), evalCmdFlags()...)...), runtimeFlags()...),
		Action: func(c *cli.Context) error {
			o := evalOptions{Model: c.Args().First(), Data: c.String("data"), Labels: c.String("labels"), EvalCmd: c.String("eval-cmd")}
			switch {
			case c.NArg() != 1:
				return usagef("eval takes one model, and --data X and --labels Y or --eval-cmd CMD")
			case o.EvalCmd != "" && (o.Data != "" || o.Labels != ""):
				return usagef("give --data and --labels, or --eval-cmd, not both")
			case o.EvalCmd != "":
				if err := checkEvalCmd(o.EvalCmd); err != nil {
					return err
				}
			case c.Bool("eval-lower-better"):
				return usagef("--eval-lower-better goes with --eval-cmd")
			case o.Data == "" || o.Labels == "":
				return usagef("eval takes one model, and --data X and --labels Y or --eval-cmd CMD")
			}
			var err error
			if o.Runtime, err = calibOptions(c, c.App.ErrWriter); err != nil {
				return err
			}
			if o.Read, err = parseData(c, warnFunc(c)); err != nil {
				return err
			}
			o.Stderr = c.App.ErrWriter
			_, err = runEvalWith(o, c.App.Writer)
			return err
		},
	}
}

// runEval prints and returns the top-1 accuracy of the model on the data.
func runEval(model, data, labels string, opts ort.Options, stdout io.Writer) (float64, error) {
	return runEvalWith(evalOptions{Model: model, Data: data, Labels: labels, Runtime: opts}, stdout)
}

// runEvalWith prints and returns the top-1 accuracy of the model on the data, or the score
// --eval-cmd gives it.
func runEvalWith(o evalOptions, stdout io.Writer) (float64, error) {
	if o.EvalCmd != "" {
		score, err := runScore(o.EvalCmd, o.Model)
		if err != nil {
			return 0, err
		}
		fmt.Fprintf(stdout, "score %.6g\n", score)
		return score, nil
	}
	m, err := onnxio.Load(o.Model)
	if err != nil {
		return 0, err
	}
	r, err := o.Read.open(o.Data, m)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	y, err := dataset.OpenLabels(o.Labels)
	if err != nil {
		return 0, err
	}
	opts := o.Runtime
	bar := newProgress(o.Stderr, "evaluating", o.Stderr == nil || opts.Runtime.Warn == nil)
	opts.Progress = bar.Update
	acc, n, err := ort.Accuracy(m, r, y, opts)
	bar.Done()
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "top-1 accuracy %.4f (%d samples)\n", acc, n)
	return acc, nil
}
