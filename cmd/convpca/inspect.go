package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/analyze"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
)

func init() { commands = append(commands, inspectCommand) }

// inspectOptions are the inputs of one inspect run.
type inspectOptions struct {
	Model      string
	InputShape inputShape
	JSON       bool
	Runtime    ort.Options // for the run that infers shapes when the model does not declare them
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:  "inspect",
		Usage: "list the Conv, Gemm and MatMul layers of a model with their shapes, params and MACs",
		Description: "Shapes come from the model's value_info when it declares them all, else from one run in\n" +
			"onnxruntime on a zero input. Dynamic input dimensions are 1 unless --input-shape sets them.\n" +
			"Params and MACs are per sample.",
		ArgsUsage: "MODEL.onnx",
		Flags: append([]cli.Flag{
			inputShapeFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
		}, shapeRuntimeFlags("cpu")...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("inspect takes one model, got %d arguments", c.NArg())
			}
			o := inspectOptions{Model: c.Args().First(), JSON: c.Bool("json")}
			var err error
			if o.InputShape, err = parseInputShape(c.String("input-shape")); err != nil {
				return err
			}
			if o.Runtime, err = shapeOptions(c); err != nil {
				return err
			}
			_, err = runInspect(o, c.App.Writer)
			return err
		},
	}
}

func inputShapeFlag() cli.Flag {
	return &cli.StringFlag{Name: "input-shape", Usage: "`NAME=1,3,224,224`: the input shape for shapes and MACs (NAME= may be left out; default: the declared shape with 1 for each dynamic dimension)"}
}

// shapeRuntimeFlags are the runtime flags of a command that runs a model only to infer shapes.
func shapeRuntimeFlags(provider string) []cli.Flag {
	var out []cli.Flag
	for _, f := range runtimeFlags() {
		switch f.Names()[0] {
		case "max-samples", "batch":
			continue
		case "provider":
			f = &cli.StringFlag{Name: "provider", Value: provider, Usage: "onnxruntime provider when shapes must be inferred: auto, cpu or cuda"}
		}
		out = append(out, f)
	}
	return out
}

// shapeOptions reads the flags of shapeRuntimeFlags.
func shapeOptions(c *cli.Context) (ort.Options, error) {
	p, err := ort.ParseProvider(c.String("provider"))
	if err != nil {
		return ort.Options{}, usageError{err.Error()}
	}
	if c.Int("threads") < 0 {
		return ort.Options{}, usagef("--threads must be >= 0")
	}
	o := ort.Options{Runtime: ort.RuntimeOptions{Library: c.String("ort-lib"), Provider: p, Threads: c.Int("threads")}}
	if !c.Bool("quiet") {
		stderr := c.App.ErrWriter
		o.Runtime.Warn = func(msg string) { fmt.Fprintf(stderr, "convpca: warning: %s\n", msg) }
	}
	return o, nil
}

// inputShape is a parsed --input-shape: an optional input name and the dims (nil: not given).
type inputShape struct {
	Name string
	Dims []int64
}

// parseInputShape reads NAME=1,3,224,224 or 1,3,224,224 (x also separates dimensions).
func parseInputShape(s string) (inputShape, error) {
	if s == "" {
		return inputShape{}, nil
	}
	var in inputShape
	text := s
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		in.Name, text = s[:i], s[i+1:]
	}
	for _, f := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == 'x' }) {
		d, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || d < 1 {
			return inputShape{}, usagef("--input-shape %q: want NAME=D1,D2,... with dimensions >= 1", s)
		}
		in.Dims = append(in.Dims, d)
	}
	if len(in.Dims) == 0 {
		return inputShape{}, usagef("--input-shape %q: want NAME=D1,D2,... with dimensions >= 1", s)
	}
	return in, nil
}

// modelShapes returns the shapes of m's layer tensors for the --input-shape value, and where
// they came from: "value_info" or "onnxruntime".
func modelShapes(m *onnxio.Model, in inputShape, opts ort.Options) (map[string][]int64, string, error) {
	if in.Name != "" {
		var names []string
		for _, vi := range m.Graph.Inputs() {
			names = append(names, vi.GetName())
		}
		if !slices.Contains(names, in.Name) {
			return nil, "", usagef("--input-shape names %q, but the model's inputs are %s", in.Name, strings.Join(names, ", "))
		}
	}
	if s, ok := analyze.StaticShapes(m, in.Dims); ok {
		return s, "value_info", nil
	}
	s, err := analyze.Shapes(m, in.Dims, opts)
	return s, "onnxruntime", err
}

// inputsUsed returns, for each run-time input of m, the shape the costs are for, and the
// values taken by dynamic dimensions, by dim_param ("?" for an unnamed one).
func inputsUsed(sum analyze.Summary, shapes map[string][]int64) (map[string][]int64, map[string]int64) {
	used, dynamic := map[string][]int64{}, map[string]int64{}
	for _, d := range sum.Inputs {
		s, ok := shapes[d.Name]
		if !ok {
			continue
		}
		used[d.Name] = s
		for i, dim := range d.Dims {
			if dim.Size == 0 && i < len(s) {
				dynamic[dim.String()] = s[i]
			}
		}
	}
	return used, dynamic
}

// inspectDocument is the --json output of inspect.
type inspectDocument struct {
	Model string `json:"model"`
	analyze.Summary
	InputShape map[string][]int64  `json:"input_shape"`  // the shape of each input the costs are for
	Dynamic    map[string]int64    `json:"dynamic_dims"` // the size taken by each dynamic input dimension, by dim_param
	ShapesFrom string              `json:"shapes_from"`  // "value_info" or "onnxruntime"
	Layers     []analyze.LayerInfo `json:"layers"`
	Total      inspectTotal        `json:"total"`
}

type inspectTotal struct {
	Layers int   `json:"layers"`
	Params int64 `json:"params"`
	MACs   int64 `json:"macs"`
}

// runInspect prints the layers of a model with their costs.
func runInspect(o inspectOptions, stdout io.Writer) (*inspectDocument, error) {
	m, err := loadModel(o.Model)
	if err != nil {
		return nil, err
	}
	shapes, from, err := modelShapes(m, o.InputShape, o.Runtime)
	if err != nil {
		return nil, err
	}
	layers, err := analyze.Layers(m, shapes)
	if err != nil {
		return nil, err
	}
	doc := &inspectDocument{Model: o.Model, Summary: analyze.Summarize(m), ShapesFrom: from, Layers: layers}
	if doc.Layers == nil {
		doc.Layers = []analyze.LayerInfo{}
	}
	doc.InputShape, doc.Dynamic = inputsUsed(doc.Summary, shapes)
	for _, l := range layers {
		doc.Total.Layers++
		doc.Total.Params += l.Params
		doc.Total.MACs += l.MACs
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return doc, enc.Encode(doc)
	}
	printInspect(stdout, doc)
	return doc, nil
}

func printInspect(w io.Writer, d *inspectDocument) {
	fmt.Fprintf(w, "model    %s\n", d.Model)
	fmt.Fprintf(w, "format   IR version %d, opset %d, producer %s\n", d.IRVersion, d.Opset, d.Producer)
	for _, in := range d.Inputs {
		fmt.Fprintf(w, "input    %s%s\n", in, dynamicNote(in, d.InputShape[in.Name]))
	}
	for _, out := range d.Outputs {
		fmt.Fprintf(w, "output   %s\n", out)
	}
	fmt.Fprintf(w, "shapes   %s\n\n", shapesSource(d.ShapesFrom))
	rows := [][]string{{"layer", "op", "input", "output", "group", "params", "MACs"}}
	for _, l := range d.Layers {
		rows = append(rows, []string{l.Name, l.Op, shapeText(l.Input), shapeText(l.Output), strconv.Itoa(l.Group), thousands(l.Params), thousands(l.MACs)})
	}
	rows = append(rows, []string{"total", "", "", "", "", thousands(d.Total.Params), thousands(d.Total.MACs)})
	writeTable(w, rows, "llllrrr")
	fmt.Fprintf(w, "%s; params and MACs per sample\n", plural(d.Total.Layers, "layer"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func shapesSource(from string) string {
	if from == "value_info" {
		return "as the model declares them (value_info)"
	}
	return "inferred by onnxruntime on a zero input"
}

// dynamicNote says which sizes the dynamic dimensions of an input took: " (N = 1)".
func dynamicNote(d analyze.Decl, used []int64) string {
	var parts []string
	for i, dim := range d.Dims {
		if dim.Size == 0 && i < len(used) {
			parts = append(parts, fmt.Sprintf("%s = %d", dim, used[i]))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func shapeText(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return strings.Join(parts, "x")
}

// thousands writes n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// writeTable writes rows as columns two spaces apart; align holds 'l' or 'r' for each column.
// The last column is not padded.
func writeTable(w io.Writer, rows [][]string, align string) {
	width := make([]int, len(align))
	for _, r := range rows {
		for i, cell := range r {
			width[i] = max(width[i], utf8.RuneCountInString(cell))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, cell := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell))
			if i > 0 {
				b.WriteString("  ")
			}
			if align[i] == 'r' {
				b.WriteString(pad + cell)
			} else if i < len(r)-1 {
				b.WriteString(cell + pad)
			} else {
				b.WriteString(cell)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}
