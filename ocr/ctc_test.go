package ocr

import (
	"math"
	"strings"
	"testing"
)

// testKeys are four characters: classes blank, a, b, c, d, space.
func testKeys(t *testing.T) *Keys {
	t.Helper()
	k, err := ParseKeys(strings.NewReader("a\nb\r\nc\nd\n"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// oneHot builds N x T x C probabilities whose most probable class at each step is the given
// one (0.7, the rest sharing 0.3).
func oneHot(seqs [][]int, c int) ([]float32, []int64) {
	t := len(seqs[0])
	out := make([]float32, 0, len(seqs)*t*c)
	for _, s := range seqs {
		for _, k := range s {
			for j := range c {
				p := float32(0.3) / float32(c-1)
				if j == k {
					p = 0.7
				}
				out = append(out, p)
			}
		}
	}
	return out, []int64{int64(len(seqs)), int64(t), int64(c)}
}

func TestKeys(t *testing.T) {
	k := testKeys(t)
	if k.Len() != 4 || k.Classes() != 6 {
		t.Fatalf("Len %d Classes %d, want 4 and 6", k.Len(), k.Classes())
	}
	if k.Label(0) != "" || k.Label(2) != "b" || k.Label(5) != " " {
		t.Errorf("labels %q %q %q", k.Label(0), k.Label(2), k.Label(5))
	}
	if m := k.Missing("ab cxyx"); string(m) != "xy" {
		t.Errorf("Missing = %q, want xy", string(m))
	}
	if _, err := ParseKeys(strings.NewReader("")); err == nil {
		t.Error("empty keys file accepted")
	}
}

func TestCTCGreedy(t *testing.T) {
	k := testKeys(t)
	const a, b, c, d, sp = 1, 2, 3, 4, 5
	probs, dims := oneHot([][]int{
		{a, a, 0, a, b, b, sp, sp, c, 0}, // repeats collapse, a blank separates the two a's
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 0},   // all blank
		{c, c, c, c, c, c, c, c, c, c},   // one long run
		{0, d, 0, d, d, 0, a, 0, a, a},
	}, k.Classes())
	got, err := CTCGreedy(probs, dims, k)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"aab c", "", "c", "ddaa"}
	for i, w := range want {
		if got[i].Text != w {
			t.Errorf("sample %d: %q, want %q", i, got[i].Text, w)
		}
	}
	if math.Abs(got[0].Confidence-0.7) > 1e-6 || got[1].Confidence != 0 {
		t.Errorf("confidences %v %v, want 0.7 and 0", got[0].Confidence, got[1].Confidence)
	}
	for _, bad := range []struct {
		probs []float32
		dims  []int64
	}{
		{probs, []int64{4, 10, 5}},      // classes do not match the keys
		{probs[:10], dims},              // too short
		{probs, []int64{4, 60}},         // not 3-D
		{probs, []int64{-4, -10, 6}},    // negative
		{probs, []int64{1 << 40, 1, 6}}, // absurd
	} {
		if _, err := CTCGreedy(bad.probs, bad.dims, k); err == nil {
			t.Errorf("dims %v, %d values: accepted", bad.dims, len(bad.probs))
		}
	}
}
