package main

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convpca/convpca/compress"
	"github.com/convpca/convpca/testmodels"
)

// searchReport is what the tests read of a --report.
type searchReport struct {
	Probes []compress.Probe `json:"probes"`
	After  struct {
		MACs int64 `json:"macs"`
	} `json:"total_after"`
}

func readSearchReport(t *testing.T, path string) searchReport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r searchReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// subprocessIn runs convpca in a new process with TMPDIR set to tmp and returns its exit code,
// stdout and stderr.
func subprocessIn(t *testing.T, tmp string, args ...string) (int, string, string) {
	t.Helper()
	cmd := subprocessCmd(args...)
	cmd.Env = append(cmd.Env, "TMPDIR="+tmp)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// emptyDir fails when dir holds anything.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("temporary files left in %s: %v", dir, left)
	}
}

// TestEvalCmdMNIST: --eval-cmd running `convpca eval` (top-1 accuracy as a number on the last
// line) drives --max-drop as the built-in accuracy bound does: the same probes, the same
// scores, the same model; every probe's metric is in the report, and the candidate models'
// temporary files are gone.
func TestEvalCmdMNIST(t *testing.T) {
	needRuntime(t)
	data := mnistDir(t)
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	model := testmodels.Path("mnist_cnn.onnx")
	images, labels := filepath.Join(data, "t10k-images-idx3-ubyte.gz"), filepath.Join(data, "t10k-labels-idx1-ubyte.gz")
	common := []string{"compress", model, "--calib", filepath.Join(data, "train-images-idx3-ubyte.gz"), "--max-samples", "1000", "--provider", "cpu", "--search-steps", "4"}
	builtIn, viaCmd := filepath.Join(dir, "builtin.onnx"), filepath.Join(dir, "cmd.onnx")
	code, stdout, stderr := cliRun(append(common, "--max-drop", "0.3", "--eval-data", images, "--eval-labels", labels, "--out", builtIn, "--report", builtIn+".json")...)
	if code != 0 {
		t.Fatalf("built-in search: exit %d\n%s%s", code, stdout, stderr)
	}
	evalCmd := "CONVPCA_TEST_MAIN=1 " + shellQuote(os.Args[0]) + " eval {model} --data " + shellQuote(images) + " --labels " + shellQuote(labels) + " --provider cpu -q"
	code, stdout, stderr = subprocessIn(t, tmp, append(common, "--max-drop", "0.003", "--eval-cmd", evalCmd, "--out", viaCmd, "--report", viaCmd+".json")...)
	if code != 0 {
		t.Fatalf("--eval-cmd search: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("\n%s", stdout)
	if !strings.Contains(stdout, "original model: metric 0.9908 (higher is better)") {
		t.Errorf("no original metric in the output")
	}
	a, b := readSearchReport(t, builtIn+".json"), readSearchReport(t, viaCmd+".json")
	if len(a.Probes) != len(b.Probes) || len(b.Probes) < 2 {
		t.Fatalf("%d probes built in, %d with --eval-cmd", len(a.Probes), len(b.Probes))
	}
	for i, p := range b.Probes {
		q := a.Probes[i]
		if p.Metric == nil || p.Target != q.Target || p.MACs != q.MACs || p.OK != q.OK || *p.Metric != q.Accuracy || math.Abs(100*p.Score-q.Score) > 1e-9 {
			t.Errorf("probe %d: --eval-cmd %+v (metric %v), built in %+v", i, p, p.Metric, q)
		}
	}
	if a.After.MACs != b.After.MACs {
		t.Errorf("models of %d and %d MACs", a.After.MACs, b.After.MACs)
	}
	ma, _ := os.ReadFile(builtIn)
	mb, _ := os.ReadFile(viaCmd)
	if string(ma) != string(mb) {
		t.Error("the two searches saved different models")
	}
	emptyDir(t, tmp)
}

// TestEvalCmd: --eval-cmd's failures are one line and exit 1, its misuse exit 2; a metric where
// lower is better; `convpca eval --eval-cmd`.
func TestEvalCmd(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	tiny := testmodels.Path("tiny/conv_pad_stride.onnx")
	data := filepath.Join(dir, "x.npy")
	writeNpy(t, data, []int{16, 3, 9, 9}, ramp(16*3*9*9))
	out := filepath.Join(dir, "out.onnx")
	count := filepath.Join(dir, "count") // calls of the "fails on a candidate" command
	search := func(extra ...string) []string {
		return append([]string{"compress", tiny, "--calib", data, "--out", out, "--provider", "cpu", "--search-steps", "3"}, extra...)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"command fails", search("--max-drop", "1", "--eval-cmd", "echo oops >&2; exit 3 # {model}"), 1,
			`convpca: evaluate the original model: --eval-cmd "echo oops >&2; exit 3 # {model}" failed (exit status 3): oops`},
		{"no number", search("--max-drop", "1", "--eval-cmd", "echo accuracy: unknown for {model}"), 1,
			`--eval-cmd "echo accuracy: unknown for {model}" printed no number on the last line of its output ("accuracy: unknown for /`},
		{"empty output", search("--max-drop", "1", "--eval-cmd", "true {model}"), 1, `printed no number on the last line of its output ("")`},
		{"fails on a candidate", search("--max-drop", "1", "--eval-cmd", "n=$(cat "+count+" 2>/dev/null || echo 0); echo $((n+1)) > "+count+"; [ $n -lt 1 ] && echo 1 || exit 7 # {model}"), 1,
			"failed (exit status 7)"},
		{"no placeholder", search("--max-drop", "1", "--eval-cmd", "echo 1"), 2, `--eval-cmd "echo 1" does not contain {model}, where the model's path goes`},
		{"no bound", search("--eval-cmd", "echo 1 {model}"), 2, "--eval-cmd goes with --max-drop"},
		{"with eval data", search("--max-drop", "1", "--eval-cmd", "echo 1 {model}", "--eval-data", data), 2, "--eval-cmd scores the models itself"},
		{"with max-error", search("--max-error", "0.1", "--eval-cmd", "echo 1 {model}"), 2, "--eval-cmd goes with --max-drop, not --max-error"},
		{"lower-better alone", search("--max-drop", "1", "--eval-data", data, "--eval-labels", data, "--eval-lower-better"), 2, "--eval-lower-better goes with --eval-cmd"},
		{"eval fails", []string{"eval", tiny, "--eval-cmd", "exit 4 # {model}"}, 1, `convpca: --eval-cmd "exit 4 # {model}" failed (exit status 4)`},
		{"eval with data", []string{"eval", tiny, "--eval-cmd", "echo 1 {model}", "--data", data}, 2, "give --data and --labels, or --eval-cmd, not both"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(out)
			code, stdout, stderr := subprocessIn(t, tmp, c.args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q\n%s", code, stderr, c.code, c.want, stdout)
			}
			if lines := strings.Count(strings.TrimSpace(stderr), "\n") + 1; lines > 1 {
				t.Errorf("stderr has %d lines:\n%s", lines, stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a failed run left its output")
			}
			emptyDir(t, tmp)
		})
	}

	// Lower is better: the size of the model file, which compression only lowers.
	code, stdout, stderr := subprocessIn(t, tmp, search("--max-drop", "1e-9", "--eval-cmd", "stat -c 'bytes: %s' {model}", "--eval-lower-better", "--report", out+".json")...)
	if code != 0 {
		t.Fatalf("lower-better search: exit %d\n%s%s", code, stdout, stderr)
	}
	rep := readSearchReport(t, out+".json")
	scored := 0
	for _, p := range rep.Probes {
		if p.Metric != nil {
			scored++
			if !p.OK || p.Score >= 0 {
				t.Errorf("lower-better probe %+v: a smaller file is a negative drop, within the bound", p)
			}
		}
	}
	if scored == 0 || !strings.Contains(stdout, "(lower is better)") {
		t.Errorf("lower-better search:\n%s", stdout)
	}
	emptyDir(t, tmp)
	// convpca eval --eval-cmd prints the score.
	code, stdout, stderr = subprocessIn(t, tmp, "eval", tiny, "--eval-cmd", `echo "loading {model}"; echo "score: 0.75, done"`)
	if code != 0 || stdout != "score 0.75\n" {
		t.Errorf("eval --eval-cmd: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
