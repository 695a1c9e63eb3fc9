package ocr

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// parallel calls f(0), ..., f(n-1) on up to GOMAXPROCS goroutines and returns the error of
// the lowest index that failed, so that the outcome does not depend on scheduling. Each f(i)
// must touch only its own outputs.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				errs[i] = f(i)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// mix64 is SplitMix64's finaliser: a bijection of uint64 that scatters nearby inputs.
func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// itemSeed is the seed of item i of a set whose seed is seed.
func itemSeed(seed uint64, i int) uint64 { return mix64(mix64(seed) + uint64(i)) }
