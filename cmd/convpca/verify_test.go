package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/testmodels"
)

// TestVerifyBeforeWrite: a rewritten model that onnxruntime refuses (its opset lowered below
// what its Convs need, as a wrong rewrite could make it) or that runs to non-finite outputs
// is never written: exit 1, one line naming the check, and no output or temporary file.
func TestVerifyBeforeWrite(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model := testmodels.Path("tiny/conv_pad_stride.onnx")
	data := filepath.Join(dir, "x.npy")
	writeNpy(t, data, []int{20, 3, 9, 9}, ramp(20*3*9*9))
	for _, tc := range []struct {
		name   string
		mutate func(*onnxio.Model)
		want   string
	}{
		{"refused", func(m *onnxio.Model) { m.Proto.OpsetImport[0].Version = proto.Int64(0) }, "verify the compressed model"},
		{"non-finite", func(m *onnxio.Model) {
			for _, t := range m.Graph.Initializers() {
				if strings.HasSuffix(t.GetName(), "_pca_core_W") {
					v, _ := onnxio.Float32s(t)
					for i := range v {
						v[i] = float32(1e38)
					}
					m.Graph.SetInitializer(onnxio.FloatTensor(t.GetName(), t.Dims, v))
				}
			}
		}, "is not finite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			afterRewrite = tc.mutate
			defer func() { afterRewrite = func(*onnxio.Model) {} }()
			out := filepath.Join(dir, tc.name+".onnx")
			code, _, stderr := cliRun("compress", model, "--calib", data, "--out", out, "--rank", "full", "--provider", "cpu", "-q")
			if code != 1 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("exit %d, stderr %q; want exit 1 and one line with %q", code, stderr, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output written despite the failed check: %v", err)
			}
			left, _ := filepath.Glob(filepath.Join(dir, "*.tmp*"))
			if len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}
