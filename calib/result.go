package calib

import "fmt"

// Result holds the statistics of captured tensors.
type Result struct {
	Samples int
	// Stats of each captured tensor of shape N x C x spatial...: C-dimensional vectors, one per
	// sample and spatial position.
	Stats map[string]*Stats
	// Shapes of each captured tensor for one sample (without the batch dimension).
	Shapes map[string][]int64
}

// NewResult returns an empty Result.
func NewResult() *Result {
	return &Result{Stats: map[string]*Stats{}, Shapes: map[string][]int64{}}
}

// Add accumulates one batch of the tensor name, of shape N x C x spatial... (N the batch
// size) and data in that (C) order. The first batch fixes the tensor's channel count.
func (res *Result) Add(name string, shape []int64, data []float32) error {
	if len(shape) < 2 {
		return fmt.Errorf("tensor %q has shape %v; want batch x channels x ...", name, shape)
	}
	n, c, spatial := int(shape[0]), int(shape[1]), 1
	for _, d := range shape[2:] {
		spatial *= int(d)
	}
	s := res.Stats[name]
	if s == nil {
		s = NewStats(c)
		res.Stats[name] = s
		res.Shapes[name] = append([]int64(nil), shape[1:]...)
	}
	if s.Dim != c {
		return fmt.Errorf("tensor %q changed from %d to %d channels between batches", name, s.Dim, c)
	}
	s.AddNCHW(data, n, c, spatial)
	return nil
}
