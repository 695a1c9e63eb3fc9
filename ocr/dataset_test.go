package ocr

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// smallConfig renders a few samples of each set quickly.
func smallConfig(t *testing.T) Config {
	t.Helper()
	testRenderer(t) // skip without fonts
	cfg := DefaultConfig
	cfg.Seed = 5
	cfg.RecCalib, cfg.RecEval, cfg.ClsCalib, cfg.ClsEval, cfg.DetCalib, cfg.DetEval = 6, 7, 4, 5, 2, 3
	cfg.PageWidth, cfg.PageHeight = 128, 96
	return cfg
}

func floatBytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func TestMakeSetsDeterministic(t *testing.T) {
	cfg := smallConfig(t)
	a, err := MakeSets(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := MakeSets(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2][]float32{
		"rec/calib": {a.RecCalib.X, b.RecCalib.X}, "rec/eval": {a.RecEval.X, b.RecEval.X},
		"cls/calib": {a.ClsCalib.X, b.ClsCalib.X}, "cls/eval": {a.ClsEval.X, b.ClsEval.X},
		"det/calib": {a.DetCalib.X, b.DetCalib.X}, "det/eval": {a.DetEval.X, b.DetEval.X},
	} {
		if !bytes.Equal(floatBytes(pair[0]), floatBytes(pair[1])) {
			t.Errorf("%s: the same seed gave different inputs", name)
		}
	}
	if !slices.Equal(a.RecEval.Texts, b.RecEval.Texts) || !slices.Equal(a.ClsEval.Labels, b.ClsEval.Labels) {
		t.Error("the same seed gave different ground truth")
	}
	if slices.Equal(a.RecCalib.Texts[:6], a.RecEval.Texts[:6]) {
		t.Error("calibration and evaluation lines are the same")
	}
	if a.RecEval.Len() != 7 || len(a.RecEval.X) != 7*3*48*320 || a.ClsEval.Len() != 5 || len(a.ClsEval.X) != 5*3*48*192 {
		t.Errorf("set sizes %d, %d", a.RecEval.Len(), a.ClsEval.Len())
	}
	if got := a.ClsEval.Labels; !slices.Equal(got, []int{0, 1, 0, 1, 0}) {
		t.Errorf("cls labels %v, want alternating", got)
	}
	if SetSeed(5, "rec/calib") == SetSeed(5, "rec/eval") || SetSeed(5, "rec/eval") == SetSeed(6, "rec/eval") {
		t.Error("set seeds collide")
	}
}

func TestWriteAndLoadSets(t *testing.T) {
	cfg := smallConfig(t)
	dir := t.TempDir()
	s, err := WriteSets(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := LoadRecSet(filepath.Join(dir, "rec", "eval"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.Texts, s.RecEval.Texts) || !slices.Equal(rec.X, s.RecEval.X) || rec.Height != 48 || rec.Width != 320 {
		t.Error("rec/eval read back differs")
	}
	cls, err := LoadClsSet(filepath.Join(dir, "cls", "calib"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cls.Labels, s.ClsCalib.Labels) || !slices.Equal(cls.X, s.ClsCalib.X) || cls.Width != 192 {
		t.Error("cls/calib read back differs")
	}
	if h, raw := parseNpy(t, filepath.Join(dir, "cls", "calib", "labels.npy")); len(raw) != 8*4 || !bytes.Contains([]byte(h), []byte("'<i8'")) {
		t.Errorf("cls labels.npy: header %q, %d bytes", h, len(raw))
	}
	det, err := LoadDetSet(filepath.Join(dir, "det", "eval"))
	if err != nil {
		t.Fatal(err)
	}
	if det.Height != 96 || det.Width != 128 || !slices.Equal(det.X, s.DetEval.X) || !slices.Equal(det.Boxes[1], s.DetEval.Boxes[1]) {
		t.Error("det/eval read back differs")
	}
	// The images are PNG files of the rendered size, the pages of the input size.
	f, err := os.Open(filepath.Join(dir, "rec", "eval", "images", "00006.png"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil || img.Bounds() != s.RecEval.Images[6].Bounds() {
		t.Errorf("rec image: %v", err)
	}
	f, err = os.Open(filepath.Join(dir, "det", "calib", "images", "00001.png"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := png.DecodeConfig(f); err != nil || cfg.Width != 128 || cfg.Height != 96 {
		t.Errorf("det image %dx%d, %v", cfg.Width, cfg.Height, err)
	}
	f.Close()
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil || json.Unmarshal(b, &m) != nil || len(m.Sets) != 6 || len(m.Fonts) == 0 || m.Seed != 5 {
		t.Errorf("manifest %+v, %v", m, err)
	}
	// A second write of the same config gives the same bytes.
	dir2 := t.TempDir()
	if _, err := WriteSets(dir2, cfg); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"rec/eval/x.npy", "cls/eval/labels.json", "det/eval/labels.json", "det/eval/images/00002.png", "manifest.json"} {
		a, _ := os.ReadFile(filepath.Join(dir, p))
		b, _ := os.ReadFile(filepath.Join(dir2, p))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two writes", p)
		}
	}
}

func TestLoadSetRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadRecSet(dir); err == nil {
		t.Error("empty folder accepted")
	}
	os.WriteFile(filepath.Join(dir, "labels.json"), []byte(`[{"image":"a","text":"x"}]`), 0o644)
	WriteNpyFloat32(filepath.Join(dir, "x.npy"), []int{2, 3, 1, 1}, make([]float32, 6))
	if _, err := LoadRecSet(dir); err == nil {
		t.Error("2 inputs for 1 label accepted")
	}
	os.WriteFile(filepath.Join(dir, "labels.json"), []byte(`[{"label":3},{"label":0}]`), 0o644)
	if _, err := LoadClsSet(dir); err == nil {
		t.Error("label 3 accepted")
	}
	os.WriteFile(filepath.Join(dir, "labels.json"), []byte(`{`), 0o644)
	if _, err := LoadDetSet(dir); err == nil {
		t.Error("broken JSON accepted")
	}
}
