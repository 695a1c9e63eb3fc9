package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convpca/convpca/ocr"
	"github.com/convpca/convpca/testmodels"
)

// corpusModel is one real export of the corpus with the sample shape it is fed.
type corpusModel struct {
	name, path, input string
	shape             []int // one sample
	checkDefault      bool  // also run the default compression through the ONNX checker
	side              string
	// data makes n samples the model expects (rendered text for the OCR models); nil: random
	// normal numbers.
	data func(t *testing.T, n int) []float32
}

// ocrData renders OCR input: text lines (rec, cls) or pages (det) as PaddleOCR preprocesses
// them, so that the OCR models see what they were trained on.
func ocrData(kind string) func(t *testing.T, n int) []float32 {
	return func(t *testing.T, n int) []float32 {
		paths, err := ocr.FindFonts()
		testmodels.RequireOrSkip(t, err)
		fonts, err := ocr.LoadFonts(paths)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ocr.NewRenderer(fonts)
		if err != nil {
			t.Fatal(err)
		}
		switch kind {
		case "rec":
			set, err := ocr.MakeRecSet(r, 7, n, ocr.DefaultLineOptions)
			if err != nil {
				t.Fatal(err)
			}
			return set.X
		case "cls":
			set, err := ocr.MakeClsSet(r, 7, n, ocr.DefaultLineOptions)
			if err != nil {
				t.Fatal(err)
			}
			return set.X
		}
		set, err := ocr.MakeDetSet(r, 7, n, 160, 160)
		if err != nil {
			t.Fatal(err)
		}
		return set.X
	}
}

// corpus lists the PaddleOCR models (paddle2onnx, opsets 9 and 11, Constant-node weights,
// dynamic shapes), fed rendered text, and every torchvision export, fed random numbers (opsets 9 to 17, BatchNormalization kept or
// folded, tied weights, a 3-D MatMul).
func corpus(t *testing.T) []corpusModel {
	t.Helper()
	dir, err := testmodels.OCRModels()
	testmodels.RequireOrSkip(t, err)
	models := []corpusModel{
		{"ocr-rec", filepath.Join(dir, testmodels.OCRRec), "x", []int{3, 48, 320}, true, "both", ocrData("rec")},
		{"ocr-cls", filepath.Join(dir, testmodels.OCRCls), "x", []int{3, 48, 192}, true, "both", ocrData("cls")},
		{"ocr-det", filepath.Join(dir, testmodels.OCRDet), "x", []int{3, 160, 160}, true, "both", ocrData("det")},
	}
	tv, err := testmodels.Torchvision()
	testmodels.RequireOrSkip(t, err)
	for _, m := range tv.Models {
		shape := make([]int, len(m.InputShape)-1)
		for i, d := range m.InputShape[1:] {
			shape[i] = int(d)
		}
		// The default (a search, with its eigenproblems) is checked on two small architectures.
		def := m.Opset == 13 && m.Variant == "folded" && (m.Arch == "resnet18" || m.Arch == "mobilenet_v3_small")
		models = append(models, corpusModel{fmt.Sprintf("%s-op%d-%s", m.Arch, m.Opset, m.Variant), m.File, m.Input, shape, def, "both", nil})
	}
	return models
}

// TestCorpus: on every model of the corpus, --rank full rewrites every Conv of group 1 and
// every Gemm and MatMul by a constant weight, whatever form the exporter gave the weight and
// whatever the rank of the input (only grouped Convs and products of two activations are
// skipped), and compress's own check (Verify) finds the outputs equal to the original's to
// 1e-4 relative L2 on random inputs. The default compression
// passes the ONNX full checker, and inspect gives every layer non-zero MACs (the OCR models
// and two small architectures: the default's search costs eigenproblems).
func TestCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses 48 real models")
	}
	needRuntime(t)
	dir := t.TempDir()
	for _, cm := range corpus(t) {
		t.Run(cm.name, func(t *testing.T) {
			n := 8
			size := n
			for _, d := range cm.shape {
				size *= d
			}
			var x []float32
			if cm.data != nil {
				x = cm.data(t, n)
			} else {
				rng := rand.New(rand.NewPCG(1, uint64(len(cm.name))))
				x = make([]float32, size)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
			}
			data := filepath.Join(dir, cm.name+".npy")
			writeNpy(t, data, append([]int{n}, cm.shape...), x)

			out, report := filepath.Join(dir, cm.name+".onnx"), filepath.Join(dir, cm.name+".json")
			code, _, stderr := cliRun("compress", cm.path, "--calib", data, "--out", out, "--report", report, "--rank", "full", "--side", cm.side, "--batch", "4", "--provider", "cpu", "-q")
			if code != 0 {
				t.Fatalf("--rank full: exit %d: %s", code, stderr)
			}
			var rep struct {
				Applied int `json:"applied"`
				Layers  []struct {
					Name, Op, Reason string
					Applied          bool
					Before           struct{ MACs int64 }
				}
			}
			b, err := os.ReadFile(report)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			for _, l := range rep.Layers {
				if l.Applied {
					continue
				}
				// Only grouped Convs and products of two activations (attention) may stay.
				if !strings.HasPrefix(l.Reason, "grouped conv") && !(l.Op == "MatMul" && strings.Contains(l.Reason, "is computed")) {
					t.Errorf("%s %s skipped: %s", l.Op, l.Name, l.Reason)
				}
			}
			if rep.Applied == 0 {
				t.Errorf("no layer rewritten")
			}
			if !cm.checkDefault {
				return
			}
			def := filepath.Join(dir, cm.name+"-default.onnx")
			if code, _, stderr := cliRun("compress", cm.path, "--calib", data, "--out", def, "--side", cm.side, "--batch", "4", "--provider", "cpu", "-q"); code != 0 {
				t.Fatalf("default: exit %d: %s", code, stderr)
			}
			onnxCheck(t, def)
			shape := "1"
			for _, d := range cm.shape {
				shape += fmt.Sprintf(",%d", d)
			}
			code, stdout, stderr := cliRun("inspect", cm.path, "--input-shape", cm.input+"="+shape, "--json", "--provider", "cpu")
			if code != 0 {
				t.Fatalf("inspect: exit %d: %s", code, stderr)
			}
			var doc struct {
				Layers []struct {
					Name string
					Op   string
					MACs int64
				}
			}
			if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
				t.Fatal(err)
			}
			for _, l := range doc.Layers {
				if l.MACs <= 0 {
					t.Errorf("inspect: %s %s has %d MACs", l.Op, l.Name, l.MACs)
				}
			}
		})
	}
}
