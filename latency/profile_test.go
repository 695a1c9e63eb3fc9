package latency

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/testmodels"
)

func TestParseProfile(t *testing.T) {
	const profile = `[
	{"cat":"Session","name":"model_loading_array","dur":900},
	{"cat":"Node","name":"a_kernel_time","dur":9000,"args":{"op_name":"Conv"}},
	{"cat":"Node","name":"a_fence_before","dur":0},
	{"cat":"Node","name":"b_nchwc_kernel_time","dur":50},
	{"cat":"Session","name":"model_run","dur":9100},
	{"cat":"Node","name":"a_kernel_time","dur":100},
	{"cat":"Node","name":"b_nchwc_kernel_time","dur":70},
	{"cat":"Session","name":"c_kernel_time","dur":5},
	{"cat":"Node","name":"a_kernel_time","dur":300},
	{"cat":"Node","name":"a_kernel_time","dur":200}
	]`
	got, err := parseProfile([]byte(profile), 1)
	if err != nil {
		t.Fatal(err)
	}
	// a: 9000 left out, median of 100, 300, 200; b: 50 left out; c is no node.
	want := NodeTimes{"a": 0.2, "b_nchwc": 0.07}
	if len(got) != len(want) {
		t.Errorf("parseProfile = %v, want %v", got, want)
	}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-12 {
			t.Errorf("parseProfile[%q] = %g, want %g", k, got[k], v)
		}
	}
	for _, bad := range []string{`{"cat":`, `[]`, `[{"cat":"Session","name":"model_run","dur":3}]`} {
		if _, err := parseProfile([]byte(bad), 0); err == nil {
			t.Errorf("parseProfile(%q) succeeded", bad)
		} else if !strings.Contains(err.Error(), "profile") {
			t.Errorf("parseProfile(%q): %v does not say it is the profile", bad, err)
		}
	}
}

// TestProfileModel profiles the bundled MNIST model in onnxruntime: every one of its layers is
// found under the name onnxruntime gives it (blocked, with its LeakyRelu fused, or as is).
func TestProfileModel(t *testing.T) {
	needRuntime(t)
	m, err := onnxio.Load(testmodels.Path("mnist_cnn.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := ort.ModelInput(m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ModelProgram("mnist", m, in.Name, []int64{4, 1, 28, 28})
	if err != nil {
		t.Fatal(err)
	}
	nt, err := Profile(p, ort.RuntimeOptions{Provider: ort.CPU, Threads: 1}, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	layers := 0
	for _, n := range m.Graph.Nodes {
		if n.Op != "Conv" && n.Op != "Gemm" && n.Op != "MatMul" {
			continue
		}
		layers++
		ms, ok := nt.Of(m.Graph, n)
		if !ok || ms <= 0 {
			t.Errorf("%s: not in the profile (%v, %g ms); profiled nodes %v", n.Label(), ok, ms, nt)
		}
	}
	if layers != 7 {
		t.Errorf("MNIST model has %d layers, want 7", layers)
	}
}
