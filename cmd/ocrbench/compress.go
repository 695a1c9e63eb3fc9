package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/convpca/convpca/internal/filehash"
)

// buildConvpca builds ./cmd/convpca of the module ocrbench runs in into dir, named after its
// hash (convpca-<hash>: a run never replaces a binary that another run is using), and returns
// its path.
func buildConvpca(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".convpca-")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	cmd := exec.Command("go", "build", "-o", tmp, "github.com/convpca/convpca/cmd/convpca")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/convpca: %v\n%s", err, stderr.String())
	}
	sum, err := fileHash(tmp)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "convpca-"+sum)
	if _, err := os.Stat(out); err == nil {
		return filepath.Abs(out)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return filepath.Abs(out)
}

// fileHash is the first 12 hex digits of the SHA-256 of a file.
func fileHash(path string) (string, error) {
	sum, err := filehash.SHA256(path)
	if err != nil {
		return "", err
	}
	return sum[:12], nil
}

// lockDir takes an exclusive lock on dir/.lock for the life of the process, or says that
// another ocrbench holds it: two runs writing the same compressed models would overwrite each
// other's files.
func lockDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("another ocrbench is writing %s with the same convpca binary; wait for it or give another -work DIR", dir)
	}
	return nil // f stays open, and locked, until the process exits
}

// gitDescribe describes the working tree ocrbench runs in: commit, and -dirty with uncommitted
// edits; "" outside a git checkout.
func gitDescribe() string {
	b, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// lockedBuffer is a buffer that the copiers of a command's stdout and stderr write to at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Bytes()
}

// compressJob is one convpca compress run.
type compressJob struct {
	Bin, Model, Calib string
	Config            config
	Dir               string        // where the model, report, log and record go
	Timeout           time.Duration // 0: none
	Reuse             bool          // keep an earlier successful run's output
}

// record is what ocrbench keeps beside a compression to reuse it (-reuse).
type record struct {
	Command  string  `json:"command"`
	ExitCode int     `json:"exit_code"`
	Error    string  `json:"error,omitempty"`
	Seconds  float64 `json:"seconds"`
	PeakMiB  float64 `json:"peak_rss_mib,omitempty"`
}

// shellQuote quotes an argument for a shell command line when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=,:+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func commandLine(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// run compresses the model with the job's configuration and returns its row of the table. A
// failed compress is a row that says so, not an error.
func (j compressJob) run() Row {
	name := slug(j.Config)
	out := filepath.Join(j.Dir, name+".onnx")
	rep := filepath.Join(j.Dir, name+".json")
	logPath := filepath.Join(j.Dir, name+".log")
	recPath := filepath.Join(j.Dir, name+".record.json")
	args := append([]string{j.Bin, "compress", j.Model, "--calib", j.Calib, "--out", out, "--report", rep}, j.Config.Flags...)
	row := Row{Config: j.Config.Name, Flags: j.Config.Flags, Command: commandLine(args), Output: out, Report: rep, Log: logPath}

	if j.Reuse {
		var rec record
		if b, err := os.ReadFile(recPath); err == nil && json.Unmarshal(b, &rec) == nil && rec.Command == row.Command && rec.ExitCode == 0 {
			if _, err := os.Stat(out); err == nil {
				row.Seconds, row.PeakMiB, row.Reused = rec.Seconds, rec.PeakMiB, true
				j.fillReport(&row)
				return row
			}
		}
	}
	if err := os.MkdirAll(j.Dir, 0o755); err != nil {
		row.ExitCode, row.Error = -1, err.Error()
		return row
	}
	os.Remove(out)
	os.Remove(rep)
	ctx := context.Background()
	if j.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, j.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stderr bytes.Buffer
	both := &lockedBuffer{}
	cmd.Stdout = both
	cmd.Stderr = io.MultiWriter(&stderr, both)
	t0 := time.Now()
	err := cmd.Run()
	row.Seconds = time.Since(t0).Seconds()
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			row.PeakMiB = float64(ru.Maxrss) / 1024 // KiB on Linux
		}
	}
	_ = os.WriteFile(logPath, both.Bytes(), 0o644)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		row.ExitCode, row.Error = -1, fmt.Sprintf("timed out after %s", j.Timeout)
	case errors.As(err, &ee):
		row.ExitCode, row.Error = ee.ExitCode(), errorLine(stderr.String())
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			// Killed from outside (by the OOM killer, or by hand): stderr holds no error.
			row.Error = fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
		}
		if row.Error == "" {
			row.Error = err.Error()
		}
	default:
		row.ExitCode, row.Error = -1, err.Error()
	}
	if row.Error == "" {
		j.fillReport(&row)
	}
	b, _ := json.MarshalIndent(record{Command: row.Command, ExitCode: row.ExitCode, Error: row.Error, Seconds: row.Seconds, PeakMiB: row.PeakMiB}, "", " ")
	_ = os.WriteFile(recPath, b, 0o644)
	return row
}

// fillReport reads the row's report into its MACs and layer counts; a missing or unreadable
// report fails the row.
func (j compressJob) fillReport(row *Row) {
	r, err := readReport(row.Report)
	if err != nil {
		row.Error = err.Error()
		return
	}
	row.MACsBefore, row.MACsAfter, row.Applied, row.Skipped = r.Before.MACs, r.After.MACs, r.Applied, r.Skipped
}
