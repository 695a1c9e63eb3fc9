package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeConvpca writes a shell script that stands in for convpca: it runs body with $out and
// $rep set from --out and --report.
func fakeConvpca(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "convpca")
	script := "#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in --out) out=$2; shift;; --report) rep=$2; shift;; esac; shift; done\n" + body + "\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompressJob(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	c := config{Name: "--target-macs 0.5", Flags: []string{"--target-macs", "0.5"}}
	ok := fakeConvpca(t, `echo "convpca: warning: CUDA provider unavailable" >&2
echo table
echo onnx > "$out"
echo '{"total_before": {"macs": 1000}, "total_after": {"macs": 400}, "applied": 3, "skipped": 1}' > "$rep"`)
	dir := t.TempDir()
	job := compressJob{Bin: ok, Model: "m.onnx", Calib: "c.npy", Config: c, Dir: dir}
	row := job.run()
	if row.Failed() || row.MACsBefore != 1000 || row.MACsAfter != 400 || row.Applied != 3 || row.Skipped != 1 || row.Seconds <= 0 {
		t.Fatalf("success: %+v", row)
	}
	if want := ok + " compress m.onnx --calib c.npy --out " + filepath.Join(dir, "target-macs_0.5.onnx") +
		" --report " + filepath.Join(dir, "target-macs_0.5.json") + " --target-macs 0.5"; row.Command != want {
		t.Errorf("command %s, want %s", row.Command, want)
	}
	if b, _ := os.ReadFile(row.Log); !strings.Contains(string(b), "table") || !strings.Contains(string(b), "warning") {
		t.Errorf("log %q", b)
	}

	// -reuse keeps the earlier output and its time when the command line is the same.
	job.Reuse = true
	if again := job.run(); !again.Reused || again.Seconds != row.Seconds || again.MACsAfter != 400 {
		t.Errorf("reuse: %+v", again)
	}

	for _, tc := range []struct{ name, body, err string }{
		{"error", "echo 'convpca: warning: slow' >&2; echo 'convpca: calibration: bad shape' >&2; echo 'more' >&2; exit 1", "convpca: calibration: bad shape"},
		{"killed", "echo 'convpca: warning: slow' >&2; kill -KILL $$", "killed by signal 9 (killed)"},
		{"no report", "echo onnx > \"$out\"", "no such file"},
	} {
		job := compressJob{Bin: fakeConvpca(t, tc.body), Model: "m.onnx", Calib: "c.npy", Config: c, Dir: t.TempDir(), Reuse: true}
		row := job.run()
		if !row.Failed() || !strings.Contains(row.Error, tc.err) {
			t.Errorf("%s: exit %d error %q, want %q", tc.name, row.ExitCode, row.Error, tc.err)
		}
		if md := (Model{Rows: []Row{row}}).Markdown(); !strings.Contains(md, "failed (exit") {
			t.Errorf("%s: table %q", tc.name, md)
		}
	}
}

func TestLockDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runs")
	if err := lockDir(dir); err != nil {
		t.Fatal(err)
	}
	// flock locks belong to open files: a second open in this process conflicts like another
	// process would.
	if err := lockDir(dir); err == nil || !strings.Contains(err.Error(), "another ocrbench") {
		t.Errorf("second lock: %v", err)
	}
}
