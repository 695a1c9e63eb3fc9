package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/convpca/convpca/ocr"
)

// Results is everything one run measured; it is written as JSON into -work.
type Results struct {
	Started   time.Time  `json:"started"`
	Elapsed   float64    `json:"elapsed_s"`
	Host      Host       `json:"host"`
	Convpca   string     `json:"convpca"`    // the binary that compressed
	Commit    string     `json:"commit"`     // git describe of the working tree (-dirty: uncommitted edits)
	ModelsDir string     `json:"models_dir"` // the folder of the original models
	Sets      string     `json:"sets"`       // the folder of the calibration and evaluation sets
	Runs      string     `json:"runs"`       // the folder of the compressed models, reports and logs
	SetConfig ocr.Config `json:"set_config"`
	Latency   LatencyOpt `json:"latency"`
	EvalBatch int        `json:"eval_batch"`
	Models    []Model    `json:"models"`
}

// Host describes the machine: CPUs, and its load averages (1, 5, 15 minutes, /proc/loadavg)
// when the run started and ended.
type Host struct {
	Name      string     `json:"name"`
	CPUs      int        `json:"cpus"`
	LoadStart [3]float64 `json:"load_start"`
	LoadEnd   [3]float64 `json:"load_end"`
}

// LatencyOpt says how latencies were measured.
type LatencyOpt struct {
	Batches  []int  `json:"batches"`
	Threads  int    `json:"threads"`
	Warmup   int    `json:"warmup"`
	Runs     int    `json:"runs"`
	Provider string `json:"provider"`
}

// Model is one model's table: its original and each compression.
type Model struct {
	Task       string   `json:"task"` // rec, cls or det
	Path       string   `json:"path"`
	InputShape []int    `json:"input_shape"` // one sample, C x H x W
	Metrics    []string `json:"metrics"`     // names of the task metrics, parallel to Row.Metrics
	Rows       []Row    `json:"rows"`
	// Load is /proc/loadavg's 1-minute load when the latencies of this model were measured.
	Load float64 `json:"load_at_latency"`
}

// Row is the original model or one compression of it.
type Row struct {
	Config   string   `json:"config"` // "original", "default", "--target-macs 0.5 --sequential --refit", ...
	Flags    []string `json:"flags,omitempty"`
	Command  string   `json:"command,omitempty"` // the compress command line
	Output   string   `json:"output,omitempty"`  // the compressed model
	Report   string   `json:"report,omitempty"`
	Log      string   `json:"log,omitempty"` // stdout and stderr of the compress
	ExitCode int      `json:"exit_code"`
	Error    string   `json:"error,omitempty"` // why compress failed: the first error line of its stderr
	Seconds  float64  `json:"compress_s,omitempty"`
	PeakMiB  float64  `json:"compress_peak_rss_mib,omitempty"` // the compress process's maximum resident set
	Reused   bool     `json:"reused,omitempty"`                // -reuse: an earlier run's compression

	MACsBefore int64 `json:"macs_before,omitempty"` // report totals, per sample
	MACsAfter  int64 `json:"macs_after,omitempty"`
	Applied    int   `json:"applied"`
	Skipped    int   `json:"skipped"`

	Metrics   []float64 `json:"metrics,omitempty"`
	EvalError string    `json:"eval_error,omitempty"`

	Latency      []Latency `json:"latency,omitempty"`
	LatencyError string    `json:"latency_error,omitempty"`
}

// Latency is one model's latency at one batch size.
type Latency struct {
	Batch    int     `json:"batch"`
	MedianMS float64 `json:"median_ms"`
	P90MS    float64 `json:"p90_ms"`
	SpeedUp  float64 `json:"speed_up"` // the original's median over this one's
}

// Failed says whether the compression produced no model.
func (r Row) Failed() bool { return r.Config != "original" && (r.ExitCode != 0 || r.Error != "") }

// report is the part of convpca's --report document the table uses.
type report struct {
	Rule   string `json:"rule"`
	Before struct {
		MACs int64 `json:"macs"`
	} `json:"total_before"`
	After struct {
		MACs int64 `json:"macs"`
	} `json:"total_after"`
	Applied int `json:"applied"`
	Skipped int `json:"skipped"`
}

// parseReport reads the MAC totals and layer counts of a convpca --report document.
func parseReport(b []byte) (report, error) {
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("report: %w", err)
	}
	if r.Before.MACs <= 0 {
		return r, errors.New("report: no total_before.macs")
	}
	return r, nil
}

func readReport(path string) (report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return report{}, err
	}
	return parseReport(b)
}

// errorLine picks the line that says why a convpca run failed from its stderr: the first line
// that is not a warning, else the first non-empty line.
func errorLine(stderr string) string {
	first := ""
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if first == "" {
			first = l
		}
		if !strings.Contains(l, "warning:") {
			return l
		}
	}
	return first
}

// fmtMACs writes a MAC count with a unit: 1.23 G, 45.6 M, 789 k.
func fmtMACs(n int64) string {
	switch f := float64(n); {
	case f >= 1e9:
		return fmt.Sprintf("%.2f G", f/1e9)
	case f >= 1e6:
		return fmt.Sprintf("%.1f M", f/1e6)
	case f >= 1e3:
		return fmt.Sprintf("%.0f k", f/1e3)
	}
	return fmt.Sprint(n)
}

// cell escapes a table cell: pipes and newlines would break the row.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// Markdown writes the model's table: one row per configuration.
func (m Model) Markdown() string {
	var b strings.Builder
	var batches []int
	for _, r := range m.Rows {
		if len(r.Latency) > len(batches) {
			batches = batches[:0]
			for _, l := range r.Latency {
				batches = append(batches, l.Batch)
			}
		}
	}
	head := []string{"config", "MACs"}
	align := []string{"---", "--:"}
	for _, name := range m.Metrics {
		head, align = append(head, name), append(align, "--:")
	}
	for _, bs := range batches {
		head, align = append(head, fmt.Sprintf("batch %d ms (speed-up)", bs)), append(align, "--:")
	}
	head, align = append(head, "compress s", "layers applied/skipped"), append(align, "--:", "--:")
	fmt.Fprintf(&b, "| %s |\n|%s|\n", strings.Join(head, " | "), strings.Join(align, "|"))
	var base int64
	for _, r := range m.Rows {
		if r.MACsBefore > 0 {
			base = r.MACsBefore
			break
		}
	}
	for _, r := range m.Rows {
		cells := []string{cell(r.Config)}
		switch {
		case r.Failed():
			cells = append(cells, cell(fmt.Sprintf("failed (exit %d): %s", r.ExitCode, r.Error)))
		case r.Config == "original" && base > 0:
			cells = append(cells, fmtMACs(base))
		case r.Config == "original":
			cells = append(cells, "")
		case r.MACsAfter > 0 && r.MACsAfter > r.MACsBefore:
			cells = append(cells, fmt.Sprintf("%.2fx more (%s)", float64(r.MACsAfter)/float64(r.MACsBefore), fmtMACs(r.MACsAfter)))
		case r.MACsAfter > 0:
			cells = append(cells, fmt.Sprintf("%.2fx fewer (%s)", float64(r.MACsBefore)/float64(r.MACsAfter), fmtMACs(r.MACsAfter)))
		default:
			cells = append(cells, "?")
		}
		for i := range m.Metrics {
			switch {
			case r.EvalError != "" && i == 0:
				cells = append(cells, cell("error: "+r.EvalError))
			case i < len(r.Metrics):
				cells = append(cells, fmt.Sprintf("%.4f", r.Metrics[i]))
			default:
				cells = append(cells, "")
			}
		}
		for j, bs := range batches {
			l, ok := latencyAt(r.Latency, bs)
			switch {
			case ok && r.Config == "original":
				cells = append(cells, fmt.Sprintf("%.2f", l.MedianMS))
			case ok:
				cells = append(cells, fmt.Sprintf("%.2f (%.2fx)", l.MedianMS, l.SpeedUp))
			case r.LatencyError != "" && j == 0:
				cells = append(cells, cell("error: "+r.LatencyError))
			default:
				cells = append(cells, "")
			}
		}
		switch {
		case r.Config == "original":
			cells = append(cells, "", "")
		case r.Reused:
			cells = append(cells, fmt.Sprintf("%.1f (reused)", r.Seconds))
		default:
			cells = append(cells, fmt.Sprintf("%.1f", r.Seconds))
		}
		if r.Config != "original" {
			if r.Failed() {
				cells = append(cells, "")
			} else {
				cells = append(cells, fmt.Sprintf("%d/%d", r.Applied, r.Skipped))
			}
		}
		fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
	}
	return b.String()
}

func latencyAt(ls []Latency, batch int) (Latency, bool) {
	for _, l := range ls {
		if l.Batch == batch {
			return l, true
		}
	}
	return Latency{}, false
}

// Markdown writes every model's table, the commands that made the compressions, and how the
// numbers were measured.
func (res *Results) Markdown() string {
	var b strings.Builder
	for _, m := range res.Models {
		fmt.Fprintf(&b, "### %s: %s (input %s)\n\n", m.Task, m.Path, shapeText(m.InputShape))
		b.WriteString(m.Markdown())
		fmt.Fprintf(&b, "\n%s. Latency: 1-minute load average %.2f on %d CPUs while measured.\n\n", metricNote(m.Task), m.Load, res.Host.CPUs)
	}
	b.WriteString("Commands:\n\n```\n")
	// Long absolute paths are written once, as shell variables.
	vars := []struct{ name, value string }{{"CONVPCA", res.Convpca}, {"MODELS", res.ModelsDir}, {"SETS", res.Sets}, {"RUNS", res.Runs}}
	var pairs []string
	for _, v := range vars {
		if v.value != "" {
			fmt.Fprintf(&b, "%s=%s\n", v.name, shellQuote(v.value))
			pairs = append(pairs, shellQuote(v.value)+string(filepath.Separator), "$"+v.name+string(filepath.Separator))
		}
	}
	short := strings.NewReplacer(pairs...)
	for _, m := range res.Models {
		for _, r := range m.Rows {
			if r.Command != "" {
				cmd := r.Command
				if res.Convpca != "" {
					cmd = strings.Replace(cmd, shellQuote(res.Convpca)+" ", "$CONVPCA ", 1)
				}
				b.WriteString(short.Replace(cmd) + "\n")
			}
		}
	}
	b.WriteString("```\n\n")
	lo := res.Latency
	fmt.Fprintf(&b, "Sets: %s (rec %d+%d lines, cls %d+%d lines, det %d+%d pages of %dx%d; calibration+evaluation). "+
		"Task metrics on the evaluation sets at batch %d. Latency: onnxruntime (%s), %d intra-op thread, median of %d runs "+
		"after %d warm-up runs on evaluation inputs, the models of a table run in turn (rotating order) so drift "+
		"hits all alike; speed-up is the original's median over the model's. Machine load average %.2f at the start, %.2f at the end "+
		"(%d CPUs). Wall time %.1f min.\n",
		res.Sets, res.SetConfig.RecCalib, res.SetConfig.RecEval, res.SetConfig.ClsCalib, res.SetConfig.ClsEval,
		res.SetConfig.DetCalib, res.SetConfig.DetEval, res.SetConfig.PageWidth, res.SetConfig.PageHeight,
		res.EvalBatch, lo.Provider, lo.Threads, lo.Runs, lo.Warmup, res.Host.LoadStart[0], res.Host.LoadEnd[0], res.Host.CPUs, res.Elapsed/60)
	return b.String()
}

func metricNote(task string) string {
	switch task {
	case "rec":
		return "chars right: mean over lines of 1 - edit distance / length; exact: lines read exactly (spaces normalised)"
	case "cls":
		return "accuracy: lines whose direction (0 or 180 degrees) is right"
	case "det":
		return fmt.Sprintf("pixel F1: text pixels (probability > %.1f) against the original's, pooled over pages; box recall: ground-truth line boxes found", ocr.DetThreshold)
	}
	return ""
}

func shapeText(s []int) string {
	p := make([]string, len(s))
	for i, v := range s {
		p[i] = fmt.Sprint(v)
	}
	return strings.Join(p, "x")
}
