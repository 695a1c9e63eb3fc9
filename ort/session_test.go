package ort

import (
	"os"
	"path/filepath"
	"testing"
)

// TestResolve: CPU and CUDA resolve to themselves; Auto to CUDA exactly where the CUDA
// provider's libraries lie beside the onnxruntime library (a CPU build has none).
func TestResolve(t *testing.T) {
	needORT(t)
	for _, p := range []Provider{CPU, CUDA} {
		if got, err := Resolve(RuntimeOptions{Provider: p}); err != nil || got != p {
			t.Errorf("Resolve(%s) = %s, %v", p, got, err)
		}
	}
	want := CPU
	if _, err := os.Stat(filepath.Join(filepath.Dir(runtime.path), "libonnxruntime_providers_cuda.so")); err == nil {
		want = CUDA // the machine may still lack a GPU: then appending fails and Auto is CPU
	}
	got, err := Resolve(RuntimeOptions{Provider: Auto})
	if err != nil || (want == CPU && got != CPU) {
		t.Errorf("Resolve(auto) = %s, %v; want %s", got, err, want)
	}
}
