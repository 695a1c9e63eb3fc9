package ocr

import (
	"fmt"
	"strings"
)

// Decoded is one line read by CTC greedy decoding.
type Decoded struct {
	Text       string
	Confidence float64 // mean of the kept steps' highest probabilities; 0 for empty text
}

// CTCGreedy decodes a recogniser's output probs, N x T x C row-major (dims [N, T, C], C =
// keys.Classes()), as PaddleOCR's CTCLabelDecode: at each of the T steps the most probable
// class (the first on ties), then runs of the same class collapsed to one and blanks (class
// 0) dropped.
func CTCGreedy(probs []float32, dims []int64, keys *Keys) ([]Decoded, error) {
	if len(dims) != 3 {
		return nil, fmt.Errorf("recogniser output has shape %v, want N x T x C", dims)
	}
	n, t, c := dims[0], dims[1], dims[2]
	if n < 0 || t < 0 || c <= 0 || c > 1<<24 || t > 1<<24 || n > 1<<20 {
		return nil, fmt.Errorf("recogniser output has shape %v, want N x T x C", dims)
	}
	if int(c) != keys.Classes() {
		return nil, fmt.Errorf("recogniser output has %d classes but the keys give %d (%d characters + blank + space)", c, keys.Classes(), keys.Len())
	}
	if int64(len(probs)) != n*t*c {
		return nil, fmt.Errorf("recogniser output holds %d values, shape %v needs %d", len(probs), dims, n*t*c)
	}
	out := make([]Decoded, n)
	for i := range int(n) {
		var sb strings.Builder
		var conf float64
		kept := 0
		prev := -1
		for s := range int(t) {
			row := probs[(int64(i)*t+int64(s))*c : (int64(i)*t+int64(s)+1)*c]
			best := 0
			for j, p := range row {
				if p > row[best] {
					best = j
				}
			}
			if best != 0 && best != prev {
				sb.WriteString(keys.classes[best])
				conf += float64(row[best])
				kept++
			}
			prev = best
		}
		out[i].Text = sb.String()
		if kept > 0 {
			out[i].Confidence = conf / float64(kept)
		}
	}
	return out, nil
}
