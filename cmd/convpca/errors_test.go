package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convpca/convpca/testmodels"
)

// TestMain lets tests run the command in a fresh process (the test binary re-executed), where
// the onnxruntime library has not been loaded yet.
func TestMain(m *testing.M) {
	if os.Getenv("CONVPCA_TEST_MAIN") == "1" {
		os.Exit(run(os.Args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// subprocess runs convpca with args in a new process and returns its exit code and stderr.
func subprocess(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := subprocessCmd(args...)
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stderr.String()
}

// subprocessCmd returns the command that runs convpca with args in a new process.
func subprocessCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CONVPCA_TEST_MAIN=1")
	return cmd
}

// writeNpy writes float32 values as a .npy file of the given shape.
func writeNpy(t *testing.T, path string, shape []int, data []float32) {
	t.Helper()
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s,), }", strings.Join(dims, ", "))
	for (10+len(header)+1)%64 != 0 {
		header += " "
	}
	header += "\n"
	buf := []byte("\x93NUMPY\x01\x00")
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(header)))
	buf = append(buf, header...)
	for _, v := range data {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

func ramp(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	return x
}

// TestErrors: bad input gets one clear line on stderr, the documented exit code, no panic and
// no output file.
func TestErrors(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model := testmodels.Path("tiny/conv_pad_stride.onnx") // input N x 3 x 9 x 9
	good := filepath.Join(dir, "good.npy")
	writeNpy(t, good, []int{4, 3, 9, 9}, ramp(4*3*9*9))
	wrongShape := filepath.Join(dir, "wrong.npy")
	writeNpy(t, wrongShape, []int{4, 3, 8, 8}, ramp(4*3*8*8))
	nan := filepath.Join(dir, "nan.npy")
	x := ramp(4 * 3 * 9 * 9)
	x[3*9*9+5] = float32(math.NaN())
	writeNpy(t, nan, []int{4, 3, 9, 9}, x)
	text := filepath.Join(dir, "text.onnx")
	os.WriteFile(text, []byte("this is not an ONNX model\n"), 0o644)
	raw, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.onnx")
	os.WriteFile(truncated, raw[:len(raw)*2/3], 0o644)
	notLib := filepath.Join(dir, "libonnxruntime.so.1")
	os.WriteFile(notLib, []byte("not a library"), 0o644)
	out := filepath.Join(dir, "out.onnx")

	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"unknown command", nil, []string{"nosuch"}, 2, `no command "nosuch" (see convpca --help)`},
		{"not onnx", nil, []string{"compress", text, "--calib", good, "--out", out}, 1, "not a valid ONNX model"},
		{"truncated", nil, []string{"compress", truncated, "--calib", good, "--out", out}, 1, "not a valid ONNX model"},
		{"missing model", nil, []string{"compress", filepath.Join(dir, "none.onnx"), "--calib", good, "--out", out}, 1, "no such file or directory"},
		{"missing library flag", nil, []string{"compress", model, "--calib", good, "--out", out, "--ort-lib", filepath.Join(dir, "nolib.so")}, 1, "--ort-lib names"},
		{"missing library env", []string{"CONVPCA_ORT_LIB=" + filepath.Join(dir, "nolib.so")}, []string{"compress", model, "--calib", good, "--out", out}, 1, "CONVPCA_ORT_LIB names"},
		{"not a library", nil, []string{"compress", model, "--calib", good, "--out", out, "--ort-lib", notLib}, 1, "onnxruntime library not available: loading"},
		{"wrong shape", nil, []string{"compress", model, "--calib", wrongShape, "--out", out}, 1, "data samples have shape [3x8x8] but model input \"x\" expects ?x3x9x9"},
		{"nan", nil, []string{"compress", model, "--calib", nan, "--out", out}, 1, "data sample 1 holds NaN"},
		{"missing data", nil, []string{"compress", model, "--calib", filepath.Join(dir, "none.npy"), "--out", out}, 1, "no such file or directory"},
		{"no out", nil, []string{"compress", model, "--calib", good}, 2, "compress needs --calib DATA (or --stats FILE) and --out PATH"},
		{"both rules", nil, []string{"compress", model, "--calib", good, "--out", out, "--energy", "0.9", "--threshold", "0.1"}, 2, "not several"},
		{"bad rank", nil, []string{"compress", model, "--calib", good, "--out", out, "--rank", "conv=x"}, 2, `--rank "conv=x"`},
		{"unknown layer", nil, []string{"compress", model, "--calib", good, "--out", out, "--rank", "nosuch=2"}, 1, "--rank names nosuch, which is no Conv"},
		{"side", nil, []string{"compress", model, "--calib", good, "--out", out, "--side", "sideways"}, 2, `unknown side "sideways"`},
		{"provider", nil, []string{"compress", model, "--calib", good, "--out", out, "--provider", "tpu"}, 2, `unknown provider "tpu"`},
		{"out is input", nil, []string{"compress", model, "--calib", good, "--out", model}, 2, "is the input model"},
		{"cuda insists", nil, []string{"compress", model, "--calib", good, "--out", out, "--provider", "cuda"}, 1, "CUDA provider requested but unavailable: libonnxruntime_providers_shared.so not found"},
		{"unknown flag", nil, []string{"compress", model, "--bogus"}, 2, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := subprocess(t, tt.env, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.want)
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine") {
				t.Errorf("stderr shows a panic:\n%s", stderr)
			}
			if lines := strings.Count(strings.TrimSpace(stderr), "\n") + 1; lines > 2 {
				t.Errorf("stderr has %d lines, want one error line (and at most one warning):\n%s", lines, stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a failed run left %s", out)
			}
			if entries, _ := filepath.Glob(filepath.Join(dir, ".out.onnx.tmp*")); len(entries) > 0 {
				t.Errorf("a failed run left temporary files %v", entries)
			}
		})
	}
	// And the same data, right, succeeds.
	if code, stderr := subprocess(t, nil, "compress", model, "--calib", good, "--out", out, "--provider", "cpu"); code != 0 {
		t.Fatalf("good run: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
}
