package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/calib"
)

// mergeOptions are the inputs of one merge run.
type mergeOptions struct {
	Inputs  []string
	Out     string
	Partial bool // write even when shards are missing
}

func init() { commands = append(commands, mergeCommand) }

func mergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "add up statistics files (.cps) of shards of one model into one",
		ArgsUsage: "A.cps B.cps ...",
		Description: "The files must come from the same model and format version; a shard may appear only\n" +
			"once. Without --partial every shard 0..N-1 must be present. Merged files merge again, so\n" +
			"shards can be merged in stages (with --partial for the stages).\n" +
			"Exit codes: 0 success, 1 failure, 2 bad usage.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "`PATH` of the merged statistics file"},
			&cli.BoolFlag{Name: "partial", Usage: "write the merge even when some shards are missing"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.String("out") == "" {
				return usagef("merge takes one or more statistics files and --out PATH")
			}
			_, err := runMerge(mergeOptions{Inputs: c.Args().Slice(), Out: c.String("out"), Partial: c.Bool("partial")}, c.App.Writer)
			return err
		},
	}
}

// runMerge reads, merges and writes statistics files, and returns the merged statistics.
func runMerge(o mergeOptions, stdout io.Writer) (*calib.StatsFile, error) {
	files := make([]*calib.StatsFile, len(o.Inputs))
	for k, path := range o.Inputs {
		f, err := calib.ReadStats(path)
		if err != nil {
			return nil, err
		}
		files[k] = f
	}
	merged, err := calib.MergeStats(files...)
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	if n, first := merged.Missing(); n > 0 && !o.Partial {
		return nil, fmt.Errorf("merge: %d of %d shards are missing (first: %v; pass --partial to write the merge anyway)", n, merged.ShardCount, first)
	}
	if err := calib.WriteStats(o.Out, merged); err != nil {
		return nil, err
	}
	what := fmt.Sprintf("%d files", len(files))
	if merged.ShardCount > 0 {
		what += fmt.Sprintf(" (%d of %d shards)", len(merged.ShardsSeen), merged.ShardCount)
	}
	fmt.Fprintf(stdout, "merged %s: %d samples, %d tensors -> %s%s\n", what, merged.Result.Samples, len(merged.Result.Stats), o.Out, fileSize(o.Out))
	return merged, nil
}
