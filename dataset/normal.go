package dataset

import (
	"fmt"
	"io"
	"math/rand/v2"
)

// Normal returns a Reader of n samples of the given shape whose values are independent normal
// numbers of the given mean and standard deviation, for tests and benchmarks. Sample i depends
// only on seed and i, so any batching reads the same data; nothing is held in memory.
func Normal(shape []int, n int, mean, std float64, seed uint64) Reader {
	size := numel(shape)
	if n < 0 || size <= 0 {
		panic(fmt.Sprintf("calib: Normal of %d samples of shape %v", n, shape))
	}
	return &normal{shape: append([]int(nil), shape...), n: n, size: size, mean: mean, std: std, seed: seed}
}

type normal struct {
	shape     []int
	n, next   int
	size      int
	mean, std float64
	seed      uint64
	closed    bool
}

func (r *normal) Shape() []int { return r.shape }
func (r *normal) Len() int     { return r.n }
func (r *normal) Close() error { r.closed = true; return nil }

func (r *normal) Read(dst []float32) (int, error) {
	if err := checkDst(len(dst), r.size); err != nil {
		return 0, err
	}
	if r.next >= r.n {
		return 0, io.EOF
	}
	k := min(len(dst)/r.size, r.n-r.next)
	for i := 0; i < k; i++ {
		rng := rand.New(rand.NewPCG(r.seed, uint64(r.next+i)))
		for j := range dst[i*r.size : (i+1)*r.size] {
			dst[i*r.size+j] = float32(r.mean + r.std*rng.NormFloat64())
		}
	}
	r.next += k
	return k, nil
}
