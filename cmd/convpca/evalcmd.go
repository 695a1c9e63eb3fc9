package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/onnxio"
)

// The user's own metric: --eval-cmd 'CMD {model}' runs CMD through /bin/sh -c with {model}
// replaced by the shell-quoted path of the model to score, and reads the score from the last
// line of its standard output.

// modelPlaceholder is replaced by the model's path in --eval-cmd.
const modelPlaceholder = "{model}"

// evalCmdFlags are the flags of the user's metric, for compress and eval.
func evalCmdFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "eval-cmd", Usage: "score a model with your own metric: run `CMD` through /bin/sh -c, {model} replaced by the model's path (quoted for the shell), and read a number from the last line of its output; with --max-drop, bound the drop of that number"},
		&cli.BoolFlag{Name: "eval-lower-better", Usage: "lower --eval-cmd scores are better (an error rate, a loss)"},
	}
}

// checkEvalCmd refuses an --eval-cmd that cannot name the model.
func checkEvalCmd(cmd string) error {
	if !strings.Contains(cmd, modelPlaceholder) {
		return usagef("--eval-cmd %q does not contain %s, where the model's path goes", cmd, modelPlaceholder)
	}
	return nil
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// lastLine returns the last line of s that is not blank, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// runScore runs the --eval-cmd cmd on the model at path and returns the number on the last line
// of its standard output: the last field of that line that is a finite number.
func runScore(cmd, path string) (float64, error) {
	line := strings.ReplaceAll(cmd, modelPlaceholder, shellQuote(path))
	c := exec.Command("/bin/sh", "-c", line)
	stdout, stderr := &tailBuffer{max: 1 << 16}, &tailBuffer{max: 1 << 12}
	c.Stdout, c.Stderr = stdout, stderr
	if err := c.Run(); err != nil {
		status := err.Error()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			status = ee.ProcessState.String()
		}
		msg := fmt.Sprintf("--eval-cmd %q failed (%s)", cmd, status)
		if e := lastLine(string(stderr.b)); e != "" {
			msg += ": " + e
		}
		return 0, errors.New(msg)
	}
	last := lastLine(string(stdout.b))
	fields := strings.Fields(last)
	for i := len(fields) - 1; i >= 0; i-- {
		v, err := strconv.ParseFloat(strings.TrimRight(fields[i], ",;"), 64)
		if err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
			return v, nil
		}
	}
	if len(last) > 80 {
		last = last[:80] + "..."
	}
	return 0, fmt.Errorf("--eval-cmd %q printed no number on the last line of its output (%q)", cmd, last)
}

// commandMetric returns the metric of --eval-cmd for the guarded search: each model is written
// to a temporary folder (with its external data, if any), scored, and removed.
func commandMetric(cmd string) func(*onnxio.Model) (float64, error) {
	return func(m *onnxio.Model) (float64, error) {
		dir, err := os.MkdirTemp("", "convpca-eval-*")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "model.onnx")
		if err := onnxio.Save(path, m); err != nil {
			return 0, fmt.Errorf("write the model to score: %w", err)
		}
		return runScore(cmd, path)
	}
}
