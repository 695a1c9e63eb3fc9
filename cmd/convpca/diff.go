package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/analyze"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
)

func init() { commands = append(commands, diffCommand) }

// diffOptions are the inputs of one diff run.
type diffOptions struct {
	Before, After string
	Data          string // data to compare the outputs on, or ""
	InputShape    inputShape
	Format        string      // "text", "json" or "markdown"
	Runtime       ort.Options // for the shape runs and the comparison
	Read          dataOptions // how --data is read (data.go)
}

// diffMaxSamples is diff's default --max-samples.
const diffMaxSamples = 1000

func diffCommand() *cli.Command {
	var flags []cli.Flag
	for _, f := range runtimeFlags() {
		if f.Names()[0] == "max-samples" {
			f = &cli.IntFlag{Name: "max-samples", Value: diffMaxSamples, Usage: "compare the outputs on at most `N` samples of --data (0: all)"}
		}
		flags = append(flags, f)
	}
	return &cli.Command{
		Name:  "diff",
		Usage: "which layers of BEFORE were replaced in AFTER, their params and MACs, and how far the outputs moved",
		Description: "The graphs are matched by tensor names: a layer whose output tensor AFTER computes by other\n" +
			"nodes is replaced by the nodes between that tensor and the nearest tensors BEFORE has too.\n" +
			"Params and MACs are per sample; ratios are after / before. With --data, both models run on\n" +
			"the data and each common graph output gets its max absolute difference, relative L2 error\n" +
			"||a-b||/||a|| and top-1 agreement (argmax over the last axis). See DIFF_SCHEMA.md for --json.",
		ArgsUsage: "BEFORE.onnx AFTER.onnx",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "compare the outputs on this data: .npy, ONNX .pb tensor or MNIST IDX images"},
			inputShapeFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print JSON (schema in DIFF_SCHEMA.md)"},
			&cli.BoolFlag{Name: "markdown", Usage: "print Markdown tables for a pull request"},
		}, append(dataFlags(), flags...)...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usagef("diff takes two models, BEFORE and AFTER, got %d arguments", c.NArg())
			}
			o := diffOptions{Before: c.Args().Get(0), After: c.Args().Get(1), Data: c.String("data"), Format: "text"}
			switch {
			case c.Bool("json") && c.Bool("markdown"):
				return usagef("give --json or --markdown, not both")
			case c.Bool("json"):
				o.Format = "json"
			case c.Bool("markdown"):
				o.Format = "markdown"
			}
			var err error
			if o.InputShape, err = parseInputShape(c.String("input-shape")); err != nil {
				return err
			}
			if o.Runtime, err = calibOptions(c, c.App.ErrWriter); err != nil {
				return err
			}
			if o.Read, err = parseData(c, warnFunc(c)); err != nil {
				return err
			}
			_, err = runDiff(o, c.App.Writer)
			return err
		},
	}
}

// diffDocument is the output of diff --json (schema "convpca-diff/1"), also described in
// DIFF_SCHEMA.md. Every key is always present; a value that does not apply is null. Costs are
// per sample, for the input shape in input_shape; ratios are after / before.
//
//	schema             "convpca-diff/1"
//	before, after      the models: model (path), ir_version, opset (default domain),
//	                   producer {name, version}, inputs[] and outputs[] as declared:
//	                   {name, type ("float32"...), dims: numbers, dim_param names or "?";
//	                   null when undeclared}
//	input_shape        {input name: shape the costs are for, batch first}, per model
//	shapes_from        {before, after}: "value_info" or "onnxruntime"
//	changes            ir_version, opset: null or {before, after};
//	                   inputs[], outputs[]: {name, change: "added"|"removed"|"changed",
//	                   before, after: declaration or null}
//	layers[]           one per Conv/Gemm/MatMul layer of BEFORE in graph order, then the
//	                   layers of AFTER that match none ("added"):
//	                   name, op, status ("unchanged"|"replaced"|"removed"|"added"),
//	                   replaced_by[] {name, op} (nodes of AFTER; empty unless replaced),
//	                   params_before, params_after, params_ratio (null when before is 0),
//	                   macs_before, macs_after, macs_ratio (null when before is 0)
//	total              layers_before, layers_after, replaced, params_before, params_after,
//	                   params_ratio, macs_before, macs_after, macs_ratio (over all layers;
//	                   the rows of layers[] sum to these)
//	output_comparison  null without --data, else {data, samples, outputs[]}: per graph
//	                   output both models have, {name, shape (of the first batch),
//	                   max_abs_diff, rel_l2 (||before-after||/||before|| over all values;
//	                   null when before is all 0 and after is not), top1_agreement
//	                   (fraction of rows, over all axes but the last, whose argmax over the
//	                   last axis agrees, trailing axes of size 1 dropped first so that
//	                   N×C×1×1 counts as N×C; null when that axis has one element)}
type diffDocument struct {
	Schema           string              `json:"schema"`
	Before           modelDocument       `json:"before"`
	After            modelDocument       `json:"after"`
	InputShape       diffPair[shapeMap]  `json:"input_shape"`
	ShapesFrom       diffPair[string]    `json:"shapes_from"`
	Changes          analyze.Changes     `json:"changes"`
	Layers           []analyze.LayerDiff `json:"layers"`
	Total            analyze.TotalDiff   `json:"total"`
	OutputComparison *outputComparison   `json:"output_comparison"`
}

const diffSchema = "convpca-diff/1"

type shapeMap = map[string][]int64

type diffPair[T any] struct {
	Before T `json:"before"`
	After  T `json:"after"`
}

type modelDocument struct {
	Model string `json:"model"`
	analyze.Summary
}

type outputComparison struct {
	Data    string               `json:"data"`
	Samples int                  `json:"samples"`
	Outputs []analyze.OutputDiff `json:"outputs"`
}

// runDiff compares two models and prints the comparison in o.Format.
func runDiff(o diffOptions, stdout io.Writer) (*diffDocument, error) {
	before, err := loadModel(o.Before)
	if err != nil {
		return nil, err
	}
	after, err := loadModel(o.After)
	if err != nil {
		return nil, err
	}
	doc := &diffDocument{Schema: diffSchema}
	sb, fromB, err := modelShapes(before, o.InputShape, o.Runtime)
	if err != nil {
		return nil, fmt.Errorf("before: %w", err)
	}
	sa, fromA, err := modelShapes(after, o.InputShape, o.Runtime)
	if err != nil {
		return nil, fmt.Errorf("after: %w", err)
	}
	d, err := analyze.Diff(before, after, sb, sa)
	if err != nil {
		return nil, err
	}
	doc.Before = modelDocument{Model: o.Before, Summary: d.Before}
	doc.After = modelDocument{Model: o.After, Summary: d.After}
	doc.InputShape.Before, _ = inputsUsed(d.Before, sb)
	doc.InputShape.After, _ = inputsUsed(d.After, sa)
	doc.ShapesFrom = diffPair[string]{fromB, fromA}
	doc.Changes, doc.Layers, doc.Total = d.Changes, d.Layers, d.Total
	if o.Data != "" {
		if doc.OutputComparison, err = compareOn(before, after, o.Data, o.Read, o.Runtime); err != nil {
			return nil, err
		}
	}
	switch o.Format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return doc, enc.Encode(doc)
	case "markdown":
		printDiffMarkdown(stdout, doc)
	default:
		printDiffText(stdout, doc)
	}
	return doc, nil
}

func compareOn(before, after *onnxio.Model, data string, read dataOptions, opts ort.Options) (*outputComparison, error) {
	rb, err := read.open(data, before)
	if err != nil {
		return nil, err
	}
	defer rb.Close()
	ra, err := read.open(data, after)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	n, outs, err := analyze.CompareOutputs(before, after, rb, ra, opts)
	if err != nil {
		return nil, fmt.Errorf("compare outputs: %w", err)
	}
	return &outputComparison{Data: data, Samples: n, Outputs: outs}, nil
}

// ratioText writes a ratio with three decimals, or "-" for none.
func ratioText(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.3f", *r)
}

func optText(r *float64, format string) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf(format, *r)
}

// changeLines describes the changes of versions, inputs and outputs, one per line.
func changeLines(d *diffDocument, code func(string) string) []string {
	var lines []string
	c := d.Changes
	if c.IRVersion != nil {
		lines = append(lines, fmt.Sprintf("IR version %d -> %d", c.IRVersion.Before, c.IRVersion.After))
	}
	if c.Opset != nil {
		lines = append(lines, fmt.Sprintf("opset %d -> %d", c.Opset.Before, c.Opset.After))
	}
	for _, list := range []struct {
		what    string
		changes []analyze.DeclChange
	}{{"input", c.Inputs}, {"output", c.Outputs}} {
		for _, ch := range list.changes {
			switch ch.Change {
			case "added":
				lines = append(lines, fmt.Sprintf("%s %s added: %s", list.what, code(ch.Name), declText(ch.After)))
			case "removed":
				lines = append(lines, fmt.Sprintf("%s %s removed (was %s)", list.what, code(ch.Name), declText(ch.Before)))
			default:
				lines = append(lines, fmt.Sprintf("%s %s: %s -> %s", list.what, code(ch.Name), declText(ch.Before), declText(ch.After)))
			}
		}
	}
	return lines
}

func declText(d *analyze.Decl) string {
	return d.Type + " " + analyze.DimsString(d.Dims)
}

// changeText is the change column: the status, and what replaced a layer.
func changeText(l analyze.LayerDiff, code func(string) string) string {
	if l.Status != analyze.Replaced {
		return string(l.Status)
	}
	names := make([]string, len(l.ReplacedBy))
	for i, r := range l.ReplacedBy {
		names[i] = code(r.Name)
	}
	return "replaced by " + strings.Join(names, ", ")
}

func printDiffText(w io.Writer, d *diffDocument) {
	for _, m := range []struct {
		label string
		doc   modelDocument
	}{{"before", d.Before}, {"after ", d.After}} {
		fmt.Fprintf(w, "%s  %s: IR version %d, opset %d, producer %s\n", m.label, m.doc.Model, m.doc.IRVersion, m.doc.Opset, m.doc.Producer)
	}
	lines := changeLines(d, func(s string) string { return s })
	if len(lines) == 0 {
		lines = []string{"none to versions, inputs or outputs"}
	}
	for i, l := range lines {
		label := "changes"
		if i > 0 {
			label = "       "
		}
		fmt.Fprintf(w, "%s %s\n", label, l)
	}
	fmt.Fprintln(w)
	plain := func(s string) string { return s }
	rows := [][]string{{"layer", "op", "params before", "after", "ratio", "MACs before", "after", "ratio", "change"}}
	for _, l := range d.Layers {
		rows = append(rows, []string{l.Name, l.Op, thousands(l.ParamsBefore), thousands(l.ParamsAfter), ratioText(l.ParamsRatio),
			thousands(l.MACsBefore), thousands(l.MACsAfter), ratioText(l.MACsRatio), changeText(l, plain)})
	}
	t := d.Total
	rows = append(rows, []string{"total", "", thousands(t.ParamsBefore), thousands(t.ParamsAfter), ratioText(t.ParamsRatio),
		thousands(t.MACsBefore), thousands(t.MACsAfter), ratioText(t.MACsRatio), fmt.Sprintf("%d of %d layers replaced", t.Replaced, t.LayersBefore)})
	writeTable(w, rows, "llrrrrrrl")
	fmt.Fprintf(w, "params and MACs per sample at %s; ratios after / before\n", inputText(d.InputShape.Before))
	if oc := d.OutputComparison; oc != nil {
		fmt.Fprintf(w, "\noutputs on %d samples of %s\n", oc.Samples, oc.Data)
		rows := [][]string{{"output", "max abs diff", "rel L2 error", "top-1 agreement"}}
		for _, o := range oc.Outputs {
			rows = append(rows, []string{o.Name, fmt.Sprintf("%.3g", o.MaxAbs), optText(o.RelL2, "%.3g"), optText(o.Top1, "%.4f")})
		}
		writeTable(w, rows, "lrrr")
	}
}

// inputText writes the input shapes used as "x 1x3x224x224".
func inputText(shapes shapeMap) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(shapes)) {
		parts = append(parts, name+" = "+shapeText(shapes[name]))
	}
	if len(parts) == 0 {
		return "unknown"
	}
	return strings.Join(parts, ", ")
}

// mdEscape makes s safe inside a Markdown table cell.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func mdCode(s string) string { return "`" + mdEscape(s) + "`" }

func printDiffMarkdown(w io.Writer, d *diffDocument) {
	fmt.Fprintf(w, "**convpca diff** %s → %s (params and MACs per sample at %s)\n\n", mdCode(d.Before.Model), mdCode(d.After.Model), mdEscape(inputText(d.InputShape.Before)))
	fmt.Fprintln(w, "| layer | op | change | params before | params after | params ratio | MACs before | MACs after | MACs ratio |")
	fmt.Fprintln(w, "|:--|:--|:--|--:|--:|--:|--:|--:|--:|")
	for _, l := range d.Layers {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", mdCode(l.Name), mdEscape(l.Op), changeText(l, mdCode),
			thousands(l.ParamsBefore), thousands(l.ParamsAfter), ratioText(l.ParamsRatio),
			thousands(l.MACsBefore), thousands(l.MACsAfter), ratioText(l.MACsRatio))
	}
	t := d.Total
	fmt.Fprintf(w, "| **total** | | %d of %d layers replaced | **%s** | **%s** | **%s** | **%s** | **%s** | **%s** |\n", t.Replaced, t.LayersBefore,
		thousands(t.ParamsBefore), thousands(t.ParamsAfter), ratioText(t.ParamsRatio),
		thousands(t.MACsBefore), thousands(t.MACsAfter), ratioText(t.MACsRatio))
	if lines := changeLines(d, mdCode); len(lines) > 0 {
		fmt.Fprintln(w)
		for _, l := range lines {
			fmt.Fprintf(w, "- %s\n", l)
		}
	}
	if oc := d.OutputComparison; oc != nil {
		fmt.Fprintf(w, "\nOutputs on %d samples of %s:\n\n", oc.Samples, mdCode(oc.Data))
		fmt.Fprintln(w, "| output | max abs diff | rel. L2 error | top-1 agreement |")
		fmt.Fprintln(w, "|:--|--:|--:|--:|")
		for _, o := range oc.Outputs {
			fmt.Fprintf(w, "| %s | %.3g | %s | %s |\n", mdCode(o.Name), o.MaxAbs, optText(o.RelL2, "%.3g"), optText(o.Top1, "%.4f"))
		}
	}
}
