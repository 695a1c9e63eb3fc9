package latency

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
)

// Point is one measured candidate: input rank R and output rank K (0: side untouched; both 0:
// the original layer), its median time Ms (milliseconds per run of one batch), the relative
// width of the 95% confidence interval of the median (of its ratio to the original, for a
// candidate; for a point Refine timed, the interval of the median of its sessions' ratios,
// which with 4 sessions is their range) and the number of turns timed (each the median of
// Options.Burst runs).
type Point struct {
	R     int     `json:"r"`
	K     int     `json:"k"`
	Ms    float64 `json:"ms"`
	RelCI float64 `json:"rel_ci"`
	Runs  int     `json:"runs"`
	// Orig is, for a point Refine timed, the original's time in the sessions that timed it
	// (the median of the sessions' medians), milliseconds; 0 elsewhere.
	Orig float64 `json:"orig_ms,omitempty"`
}

// Check compares, at ranks R and K, the measured chain (Chain) with the grid's interpolation
// (Interp) and with the sum of its three nodes timed as separate one-node models (Down, Core,
// Up). Times in milliseconds per run of one batch.
type Check struct {
	R      int     `json:"r"`
	K      int     `json:"k"`
	Chain  float64 `json:"chain_ms"`
	Interp float64 `json:"interp_ms"`
	Down   float64 `json:"down_ms"`
	Core   float64 `json:"core_ms"`
	Up     float64 `json:"up_ms"`
}

// SumError is the relative error of the decomposition t_down + t_core + t_up against the chain.
func (c Check) SumError() float64 { return (c.Down+c.Core+c.Up)/c.Chain - 1 }

// InterpError is the relative error of the grid interpolation against the chain.
func (c Check) InterpError() float64 { return c.Interp/c.Chain - 1 }

// LayerTimes are the measurements of one layer.
type LayerTimes struct {
	Layer    Layer   `json:"layer"`
	Multiple int     `json:"multiple"`        // ranks are measured and looked up at multiples of it
	Small    []int   `json:"small,omitempty"` // and at these ranks below Multiple (SmallRanks)
	Original Point   `json:"original"`
	Input    []Point `json:"input"`  // input side only: (r, 0), r ascending
	Output   []Point `json:"output"` // output side only: (0, k), k ascending
	BothR    []int   `json:"both_r"` // the two-sided grid: ranks r ascending
	BothK    []int   `json:"both_k"` // and k ascending
	Both     []Point `json:"both"`   // (BothR[i], BothK[j]) at i·len(BothK)+j
	Checks   []Check `json:"checks,omitempty"`
	// Refined are candidates timed again by Refine, (R, K) ascending, at ranks as Round gives
	// them: Time and Noise take them before the grid.
	Refined  []Point `json:"refined,omitempty"`
	Seconds  float64 `json:"seconds"`          // wall time the measurement took
	Cached   bool    `json:"cached,omitempty"` // read from the cache by this Measure (not stored)
	Repeated bool    `json:"-"`                // the same as an earlier layer of this Measure
}

// Table holds the measurements of the layers given to Measure, in the same order.
type Table struct {
	Layers []*LayerTimes
	// Measured and Cached count the layers measured by this Measure and those read from the
	// cache; Runs counts the timed and warm-up runs it made (and Refine's).
	Measured, Cached, Runs int
}

// Time returns the time in milliseconds of one run (one batch of Layer.Batch samples) of layer
// factorized with input rank r and output rank k; r = 0 (k = 0) leaves the input (output) side
// untouched, and r = k = 0 is the original layer. It panics when a rank is out of range.
func (t *Table) Time(layer, r, k int) float64 { return t.Layers[layer].Time(r, k) }

// Time is Table.Time for this layer. Ranks are rounded up to the grid's multiple or to one of
// its small ranks (at most the channel count), then interpolated between measured ranks:
// linearly for one side, bilinearly for both. Small ranks are always measured, so no time is
// interpolated across the multiple. Ranks off the multiple are not modelled (see RankMultiple):
// allocate on multiples and small ranks. A refined point (Refine) at the rounded ranks comes
// before the grid. Every time is in the layer's Level: its ratio to the table's original
// (Original.Ms) times Level.
func (lt *LayerTimes) Time(r, k int) float64 {
	l := lt.Layer
	if r < 0 || r > l.In || k < 0 || k > l.Out {
		panic(fmt.Sprintf("latency: ranks r=%d k=%d out of range for %s", r, k, l))
	}
	r, k = lt.Round(r, k)
	if r == 0 && k == 0 {
		return lt.Level()
	}
	return lt.Level() / lt.Original.Ms * lt.ratioTime(r, k)
}

// ratioTime is Time at rounded ranks before Level: in the level of the table's original.
func (lt *LayerTimes) ratioTime(r, k int) float64 {
	if p := lt.refined(r, k); p != nil {
		return p.Ms
	}
	switch {
	case k == 0:
		return interp1(lt.Input, r, func(p Point) int { return p.R })
	case r == 0:
		return interp1(lt.Output, k, func(p Point) int { return p.K })
	}
	i, fi := bracket(lt.BothR, r)
	j, fj := bracket(lt.BothK, k)
	at := func(i, j int) float64 { return lt.Both[i*len(lt.BothK)+j].Ms }
	i1, j1 := min(i+1, len(lt.BothR)-1), min(j+1, len(lt.BothK)-1)
	return (1-fi)*(1-fj)*at(i, j) + fi*(1-fj)*at(i1, j) + (1-fi)*fj*at(i, j1) + fi*fj*at(i1, j1)
}

// Level is the layer's original time in milliseconds that Time scales every candidate's
// ratio by: the median of the table's original (Original.Ms) and of each refined point's
// original in its Refine sessions (Point.Orig); Original.Ms where nothing was refined.
//
// Why: a candidate's ratio to the original is known from paired turns, but what a program
// takes in absolute terms depends on the session it runs in and on the minute, and every saving
// of a layer scales with that level. MNIST's /2/Conv original took 5.0 to 6.3 ms in eleven
// tables (batch 64, one thread, 2-core virtual machine), each from one session. The compressed
// model's predicted latency (the original model measured, less the savings) errs where its
// largest layers' levels do: twelve predictions from eight sets of such tables, against the whole models
// timed minutes later, were 5-51% too fast (mean absolute error 22%); the same with each
// applied layer's original timed again in 4 sessions, 37% too fast to 11% too slow (mean
// absolute error 12%). Refine times the original in every session it times a candidate, so a
// layer compressed gets its level from those sessions as well, at no extra cost.
func (lt *LayerTimes) Level() float64 {
	var buf [8]float64
	v := append(buf[:0], lt.Original.Ms)
	for _, p := range lt.Refined {
		if p.Orig > 0 {
			v = append(v, p.Orig)
		}
	}
	if len(v) == 1 {
		return v[0]
	}
	return Median(v)
}

// Noise returns the relative noise of the difference between the time of candidate (r, k) and
// the original's: the half width of the 95% confidence interval of the median of the
// candidate's ratios to the original's turns beside them (RelCI / 2; Measure pairs them), the
// widest among the measured points Time interpolates it from, or a refined point's (Refine). A
// candidate is measurably faster than the original when its time is below (1 - Noise) times
// the original's. Noise(0, 0) is 0.
func (lt *LayerTimes) Noise(r, k int) float64 {
	l := lt.Layer
	if r < 0 || r > l.In || k < 0 || k > l.Out {
		panic(fmt.Sprintf("latency: ranks r=%d k=%d out of range for %s", r, k, l))
	}
	r, k = lt.Round(r, k)
	if r == 0 && k == 0 {
		return 0
	}
	if p := lt.refined(r, k); p != nil {
		return p.RelCI / 2
	}
	var ci float64
	use := func(p Point) { ci = math.Max(ci, p.RelCI) }
	near := func(pts []Point, x int, rank func(Point) int) {
		grid := make([]int, len(pts))
		for i, p := range pts {
			grid[i] = rank(p)
		}
		i, f := bracket(grid, x)
		use(pts[i])
		if f > 0 {
			use(pts[i+1])
		}
	}
	switch {
	case k == 0:
		near(lt.Input, r, func(p Point) int { return p.R })
	case r == 0:
		near(lt.Output, k, func(p Point) int { return p.K })
	default:
		i, fi := bracket(lt.BothR, r)
		j, fj := bracket(lt.BothK, k)
		for _, a := range []int{i, min(i+1, len(lt.BothR)-1)}[:1+b2i(fi > 0)] {
			for _, b := range []int{j, min(j+1, len(lt.BothK)-1)}[:1+b2i(fj > 0)] {
				use(lt.Both[a*len(lt.BothK)+b])
			}
		}
	}
	return ci / 2
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Round returns the ranks Time looks up for r and k: each rounded up to the smallest of the
// small ranks or multiples of the grid that holds it, at most the channel count (0 stays 0).
func (lt *LayerTimes) Round(r, k int) (int, int) {
	return roundUp(r, lt.Multiple, lt.Small, lt.Layer.In), roundUp(k, lt.Multiple, lt.Small, lt.Layer.Out)
}

// Ranks returns the ranks measured for one-sided candidates: input side r and output side k.
func (lt *LayerTimes) Ranks() (r, k []int) {
	for _, p := range lt.Input {
		r = append(r, p.R)
	}
	for _, p := range lt.Output {
		k = append(k, p.K)
	}
	return r, k
}

// Origin says where lt's times come from, for progress messages (Options.Progress): "same
// shape as an earlier layer" when Repeated, "from the cache" when Cached, else "measured in
// S s" with the Seconds it took.
func (lt *LayerTimes) Origin() string {
	switch {
	case lt.Repeated:
		return "same shape as an earlier layer"
	case lt.Cached:
		return "from the cache"
	}
	return fmt.Sprintf("measured in %.1f s", lt.Seconds)
}

// Best returns the fastest candidate whose ranks are at most r and k (0: that side must stay
// untouched), among input only, output only and both at exactly those ranks, and the
// original: the side chosen ("original", "input", "output" or "both") and its time.
func (lt *LayerTimes) Best(r, k int) (side string, ms float64) {
	side, ms = "original", lt.Time(0, 0)
	try := func(s string, r, k int) {
		if t := lt.Time(r, k); t < ms {
			side, ms = s, t
		}
	}
	if r > 0 {
		try("input", r, 0)
	}
	if k > 0 {
		try("output", 0, k)
	}
	if r > 0 && k > 0 {
		try("both", r, k)
	}
	return side, ms
}

// roundUp rounds r > 0 up to the first of small (ascending, below m) that holds it, else to a
// multiple of m; at most n.
func roundUp(r, m int, small []int, n int) int {
	for _, s := range small {
		if r > 0 && r <= s {
			return min(s, n)
		}
	}
	if r > 0 && m > 1 && r%m != 0 {
		r += m - r%m
	}
	return min(r, n)
}

// bracket returns i and f such that x lies at fraction f between grid[i] and grid[i+1]
// (clamped to the ends).
func bracket(grid []int, x int) (int, float64) {
	i := sort.SearchInts(grid, x) // first grid[i] >= x
	switch {
	case i >= len(grid):
		return len(grid) - 1, 0
	case grid[i] == x || i == 0:
		return i, 0
	}
	return i - 1, float64(x-grid[i-1]) / float64(grid[i]-grid[i-1])
}

func interp1(pts []Point, x int, rank func(Point) int) float64 {
	grid := make([]int, len(pts))
	for i, p := range pts {
		grid[i] = rank(p)
	}
	i, f := bracket(grid, x)
	if f == 0 {
		return pts[i].Ms
	}
	return (1-f)*pts[i].Ms + f*pts[i+1].Ms
}

// SmallRanks returns the ranks below the rank multiple m that are measured and allocated too:
// m/4 and m/2 (those >= 1). MLAS runs a Conv whose input has fewer channels than one NCHWc
// block on a kernel that reads the input in the plain layout, whose time falls with the input's
// width, and pads a narrow output to one block: on the bundled MNIST model at batch 64 (AVX-512,
// block 16), /2/Conv (32->32, 3x3 at 26x26) factorized down to 4, core 4 -> 16, up to 32 ran in
// 1.5 ms inside the model where ranks 16 -> 16 ran in 2.1 ms and the original in 3.9 ms; at rank
// 8 the same layer took 2.0 ms. Only measurement tells which of them pays.
func SmallRanks(m int) []int {
	var s []int
	for _, r := range []int{m / 4, m / 2} {
		if r >= 1 && r < m && !slices.Contains(s, r) {
			s = append(s, r)
		}
	}
	return s
}

// ladderRanks returns the ranks measured on one side of n channels: the small ranks of m below
// n, then gridRanks(n, m, levels).
func ladderRanks(n, m, levels int) []int {
	var out []int
	for _, s := range SmallRanks(m) {
		if s < n {
			out = append(out, s)
		}
	}
	for _, r := range gridRanks(n, m, levels) {
		if len(out) == 0 || r > out[len(out)-1] {
			out = append(out, r)
		}
	}
	return out
}

// gridRanks returns at most levels ranks among the multiples of m below n, and n: m and n
// always, the others spread evenly in log scale (time grows about linearly with rank, and
// small ranks need the finer steps for the same relative accuracy).
func gridRanks(n, m, levels int) []int {
	m = max(m, 1)
	var all []int
	for r := m; r < n; r += m {
		all = append(all, r)
	}
	all = append(all, n)
	levels = max(levels, 2)
	if len(all) <= levels {
		return all
	}
	pick := map[int]bool{}
	for j := range levels {
		v := float64(m) * math.Pow(float64(n)/float64(m), float64(j)/float64(levels-1))
		pick[min(max(int(math.Round(v/float64(m)))*m, m), n)] = true
	}
	pick[n] = true
	for len(pick) < levels {
		// Snapping merged some: add the multiple nearest the middle of the widest gap (in log scale).
		chosen := slices.Sorted(maps.Keys(pick))
		best, bestGap := 0, 0.0
		for i := 1; i < len(chosen); i++ {
			lo, hi := chosen[i-1], chosen[i]
			c := int(math.Round(math.Sqrt(float64(lo)*float64(hi))/float64(m))) * m
			c = min(max(c, lo+m), hi-m)
			if c <= lo || c >= hi {
				continue
			}
			if gap := math.Log(float64(hi) / float64(lo)); gap > bestGap {
				best, bestGap = c, gap
			}
		}
		if best == 0 {
			break
		}
		pick[best] = true
	}
	return slices.Sorted(maps.Keys(pick))
}
