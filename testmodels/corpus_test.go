package testmodels

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusOpsets and corpusArchs are what make_torchvision.py exports.
var (
	corpusOpsets = []int{9, 11, 13, 17}
	corpusArchs  = []string{"resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
		"regnet_x_400mf", "shufflenet_v2_x0_5", "squeezenet1_0", "densenet121", "tied", "matmul3d"}
)

type combo struct {
	arch    string
	opset   int
	variant string
}

// corpusExpected lists every model make_torchvision.py claims to export with torch 1.13.
func corpusExpected() (want []combo, skipped map[combo]bool) {
	skipped = map[combo]bool{
		// torch 1.13 cannot export the channel split of ShuffleNet's blocks at opset 9 with a
		// dynamic batch: "prim::ConstantChunk, unknown dimension size".
		{"shufflenet_v2_x0_5", 9, "folded"}: true,
	}
	for _, a := range corpusArchs {
		for _, op := range corpusOpsets {
			if c := (combo{a, op, "folded"}); !skipped[c] {
				want = append(want, c)
			}
		}
	}
	for _, op := range corpusOpsets {
		want = append(want, combo{"mobilenet_v2", op, "bn"})
	}
	want = append(want, combo{"resnet18", 13, "bn"}, combo{"efficientnet_b0", 13, "bn"})
	return want, skipped
}

func TestTorchvisionCorpus(t *testing.T) {
	c, err := Torchvision()
	RequireOrSkip(t, err)
	t.Logf("%s: %d models, torch %s, torchvision %s, onnx %s", c.Dir, len(c.Models), c.Torch, c.Torchvision, c.ONNX)

	want, skipped := corpusExpected()
	listed := map[combo]TorchvisionModel{}
	for _, m := range c.Models {
		k := combo{m.Arch, m.Opset, m.Variant}
		if _, dup := listed[k]; dup {
			t.Errorf("%v listed twice", k)
		}
		listed[k] = m
	}
	for _, k := range want {
		m, ok := listed[k]
		if !ok {
			t.Errorf("manifest lacks %s at opset %d, variant %s", k.arch, k.opset, k.variant)
			continue
		}
		delete(listed, k)
		if fi, err := os.Stat(m.File); err != nil || fi.Size() == 0 || fi.Size() != m.Bytes {
			t.Errorf("%s: missing, empty or not the %d bytes of the manifest (%v)", m.File, m.Bytes, err)
		}
		if fi, err := os.Stat(m.Expected); err != nil || fi.Size() == 0 {
			t.Errorf("%s: expected output missing or empty (%v)", m.Expected, err)
		}
		if want := fmt.Sprintf("%s_op%d_%s.onnx", k.arch, k.opset, k.variant); filepath.Base(m.File) != want {
			t.Errorf("%s: file name, want %s", m.File, want)
		}
		if m.Input != "input" || m.Output != "logits" || fmt.Sprint(m.InputShape) != "[1 3 64 64]" {
			t.Errorf("%s: input %q %v, output %q", m.File, m.Input, m.InputShape, m.Output)
		}
		if m.Ops["Conv"] == 0 {
			t.Errorf("%s: no Conv node", m.File)
		}
		// BatchNormalization stays only in the bn variant, and in DenseNet (BN before Conv).
		if bn := m.Ops["BatchNormalization"] > 0; bn != (k.variant == "bn" || k.arch == "densenet121") {
			t.Errorf("%s: %d BatchNormalization nodes", m.File, m.Ops["BatchNormalization"])
		}
	}
	for k := range listed {
		t.Errorf("manifest lists %v, which the test does not expect", k)
	}
	for _, s := range c.Skipped {
		if !skipped[combo{s.Arch, s.Opset, s.Variant}] {
			t.Errorf("unexpected skip of %s at opset %d, variant %s: %s", s.Arch, s.Opset, s.Variant, s.Reason)
		}
	}
	if fi, err := os.Stat(c.Input); err != nil || fi.Size() == 0 {
		t.Errorf("%s: missing or empty (%v)", c.Input, err)
	}

	// Tied weights: one Conv weight and one Gemm weight read by two nodes each, and the 3-D
	// Linear read twice, the second time through an Identity node.
	for _, op := range corpusOpsets {
		m, _ := c.Find("tied", op, "folded")
		for _, w := range []string{"conv.weight", "conv.bias", "fc.weight", "fc.bias"} {
			if len(m.SharedInitializers[w]) != 2 {
				t.Errorf("%s: %s read by %v, want 2 nodes", m.File, w, m.SharedInitializers[w])
			}
		}
		if m.Ops["MatMul"] != 2 || len(m.ViaIdentity) != 1 {
			t.Errorf("%s: %d MatMul, via Identity %v", m.File, m.Ops["MatMul"], m.ViaIdentity)
		}
		if m, _ := c.Find("matmul3d", op, "folded"); m.Ops["MatMul"] != 2 {
			t.Errorf("%s: %d MatMul nodes, want 2", m.File, m.Ops["MatMul"])
		}
	}
}

func TestOCRModels(t *testing.T) {
	dir, err := OCRModels()
	RequireOrSkip(t, err)
	for _, f := range OCRFiles {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Size() == 0 {
			t.Errorf("%s: missing or empty (%v)", f, err)
		}
	}
	for _, f := range []string{OCRDet, OCRRec, OCRCls} {
		if !strings.HasSuffix(f, ".onnx") {
			t.Errorf("%s is not an .onnx file", f)
		}
	}
	// The dictionary: one character a line, 6,623 of them (the recognizer's 6,625 classes are
	// these, a blank and a space).
	f, err := os.Open(filepath.Join(dir, OCRKeys))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); n++ {
	}
	if n != 6623 {
		t.Errorf("%s: %d lines, want 6623", OCRKeys, n)
	}
}

func TestRequireOrSkipUnderCI(t *testing.T) {
	for _, tc := range []struct {
		ci   string
		want bool
	}{{"", false}, {"0", false}, {"false", false}, {"true", true}, {"1", true}} {
		t.Setenv("CI", tc.ci)
		if got := UnderCI(); got != tc.want {
			t.Errorf("CI=%q: UnderCI() = %v, want %v", tc.ci, got, tc.want)
		}
	}
}
