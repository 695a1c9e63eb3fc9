package ocr

import (
	"errors"
	"image"
	"math"
	"strings"
	"testing"
)

// spell returns a Run that reads every line as text (class indices of testKeys, T = 10).
func spell(t *testing.T, k *Keys, text string) Run {
	seq := make([]int, 10)
	for i, r := range text {
		for c := 1; c < k.Classes(); c++ {
			if k.Label(c) == string(r) {
				seq[2*i] = c // blanks between, so that repeats survive
			}
		}
	}
	return func(model string, x []float32, dims []int64) ([]float32, []int64, error) {
		if model != "rec.onnx" || len(dims) != 4 || int64(len(x)) != dims[0]*dims[1]*dims[2]*dims[3] {
			t.Errorf("run(%q, %d values, %v)", model, len(x), dims)
		}
		seqs := make([][]int, dims[0])
		for i := range seqs {
			seqs[i] = seq
		}
		out, od := oneHot(seqs, k.Classes())
		return out, od, nil
	}
}

func TestEvalRec(t *testing.T) {
	k := testKeys(t)
	set := &RecSet{X: make([]float32, 3*3*2*4), Height: 2, Width: 4, Texts: []string{"abc", "abd", "ab c"}}
	var calls int
	run := spell(t, k, "abc")
	counting := func(m string, x []float32, d []int64) ([]float32, []int64, error) { calls++; return run(m, x, d) }
	sc, err := EvalRec(counting, "rec.onnx", k, set, 2)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("%d runs for 3 lines in batches of 2, want 2", calls)
	}
	// abc: right; abd: 1 edit of 3; "ab c": 1 edit of 4.
	want := (1 + 2.0/3 + 3.0/4) / 3
	if sc.Lines != 3 || math.Abs(sc.CharsRight-want) > 1e-12 || math.Abs(sc.ExactLines-1.0/3) > 1e-12 || math.Abs(sc.CharErrorRate-2.0/10) > 1e-12 {
		t.Errorf("score %+v, want chars right %g, exact 1/3, CER 0.2", sc, want)
	}
	// Margins read as spaces do not count.
	sc, err = EvalRec(spell(t, k, " abc "), "rec.onnx", k, &RecSet{X: make([]float32, 24), Height: 2, Width: 4, Texts: []string{"abc"}}, 8)
	if err != nil || sc.ExactLines != 1 || sc.Predictions[0].Text != " abc " {
		t.Errorf("outer spaces: %+v, %v", sc, err)
	}
	if _, err := EvalRec(run, "rec.onnx", k, &RecSet{X: make([]float32, 24), Height: 2, Width: 4, Texts: []string{"xyz"}}, 1); err == nil {
		t.Error("text outside the keys accepted")
	}
	if _, err := EvalRec(run, "rec.onnx", k, set, 0); err == nil {
		t.Error("batch 0 accepted")
	}
	failing := func(string, []float32, []int64) ([]float32, []int64, error) { return nil, nil, errors.New("boom") }
	if _, err := EvalRec(failing, "rec.onnx", k, set, 2); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("run error: %v", err)
	}
	wrongShape := func(string, []float32, []int64) ([]float32, []int64, error) {
		return make([]float32, 7), []int64{1, 7}, nil
	}
	if _, err := EvalRec(wrongShape, "rec.onnx", k, set, 2); err == nil {
		t.Error("output of the wrong batch size accepted")
	}
	short := &RecSet{X: make([]float32, 10), Height: 2, Width: 4, Texts: []string{"abc", "abd"}}
	if _, err := EvalRec(run, "rec.onnx", k, short, 2); err == nil {
		t.Error("inputs shorter than the texts accepted")
	}
}

func TestEvalCls(t *testing.T) {
	set := &ClsSet{X: make([]float32, 5*3*2*2), Height: 2, Width: 2, Labels: []int{0, 1, 0, 1, 0}}
	upright := func(_ string, _ []float32, d []int64) ([]float32, []int64, error) {
		out := make([]float32, 2*d[0])
		for i := range d[0] {
			out[2*i], out[2*i+1] = 0.9, 0.1
		}
		return out, []int64{d[0], 2}, nil
	}
	sc, err := EvalCls(upright, "cls.onnx", set, 2)
	if err != nil || sc.Samples != 5 || sc.Accuracy != 0.6 {
		t.Errorf("score %+v, %v; want accuracy 0.6", sc, err)
	}
	threeD := func(_ string, _ []float32, d []int64) ([]float32, []int64, error) {
		return make([]float32, 2*d[0]), []int64{d[0], 1, 2}, nil
	}
	if _, err := EvalCls(threeD, "cls.onnx", set, 2); err == nil {
		t.Error("N x 1 x 2 output accepted")
	}
}

func TestEvalDet(t *testing.T) {
	const h, w = 32, 64
	boxes := []image.Rectangle{image.Rect(4, 4, 40, 12), image.Rect(8, 20, 60, 28)}
	set := &DetSet{X: make([]float32, 2*3*h*w), Height: h, Width: w, Boxes: [][]image.Rectangle{boxes, boxes[:1]}}
	// The original marks every box fully; the compressed one only the first box's band rows.
	maps := func(first bool) Run {
		return func(_ string, _ []float32, d []int64) ([]float32, []int64, error) {
			out := make([]float32, int(d[0])*h*w)
			for n := range int(d[0]) {
				for i, b := range boxes {
					if first && i > 0 {
						continue
					}
					for y := b.Min.Y; y < b.Max.Y; y++ {
						for x := b.Min.X; x < b.Max.X; x++ {
							if !first || (y >= 7 && y <= 8) {
								out[n*h*w+y*w+x] = 0.8
							}
						}
					}
				}
			}
			return out, []int64{d[0], 1, h, w}, nil
		}
	}
	orig, comp := maps(false), maps(true)
	run := func(model string, x []float32, d []int64) ([]float32, []int64, error) {
		if model == "orig" {
			return orig(model, x, d)
		}
		return comp(model, x, d)
	}
	sc, err := EvalDet(run, "orig", "comp", set, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Page 0: orig marks 36x8 + 52x8 = 704 pixels, comp 36x2 = 72 of them; page 1 the same maps.
	tp, fn := int64(2*72), int64(2*(704-72))
	if sc.Pages != 2 || sc.Boxes != 3 || sc.OriginalRecall != 1 || math.Abs(sc.Recall-2.0/3) > 1e-12 ||
		sc.Pixels != (Confusion{TP: tp, FN: fn}) || math.Abs(sc.F1-float64(2*tp)/float64(2*tp+fn)) > 1e-12 {
		t.Errorf("score %+v", sc)
	}
	self, err := EvalDet(run, "orig", "", set, 4)
	if err != nil || self.F1 != 1 || self.Recall != 1 || self.OriginalRecall != 1 {
		t.Errorf("original alone: %+v, %v", self, err)
	}
	wrong := func(_ string, _ []float32, d []int64) ([]float32, []int64, error) {
		return make([]float32, int(d[0])*h*w/4), []int64{d[0], 1, h / 2, w / 2}, nil
	}
	if _, err := EvalDet(wrong, "orig", "", set, 1); err == nil {
		t.Error("map of another size accepted")
	}
}
