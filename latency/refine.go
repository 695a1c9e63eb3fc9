package latency

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Candidate names one factorization of one layer of a Table: the layer's index in
// Table.Layers and its ranks R and K, as LayerTimes.Time takes them.
type Candidate struct {
	Layer, R, K int
}

// Refinement is one candidate Refine timed again: its layer's index, its time in the table
// before (milliseconds per run, interpolated or measured) and the refined point, both in the
// level of the table's original (LayerTimes.Original, not Level).
type Refinement struct {
	Layer  int
	Before float64
	Point  Point
}

// Refine times again each candidate (ranks rounded as Time rounds them) that has no refined
// point yet, beside its layer's original in paired turns as Measure does, in refineSessions
// sessions spread over the refinement, Options.RefineBudget for all of them; the median of the
// sessions' median ratios, times the table's original, is its refined time, the interval
// of that median its RelCI, and the median of the original's times in those sessions its Orig,
// which moves the layer's Level. The point goes to LayerTimes.Refined of every layer of t with the
// same shape, where Time and Noise find it before the grid, and each layer's cache entry is
// rewritten with it. It returns what it timed, in the order of cands.
//
// Why: a table times some fifty candidates of a layer in its budget, each from a few dozen
// turns in one session, and an allocation choosing the fastest of them chooses the ones whose
// noise made them look fastest. With fresh tables of the bundled MNIST model at batch 64 (one
// thread, 2-core virtual machine), the /2/Conv candidates chosen took 9-14% longer timed
// again (2.73 ms in the table, 2.97 ms again; 2.81, 3.16; 2.88, 3.28). Timing the few
// candidates chosen, for longer, removes that bias where it matters; the allocation then
// chooses again with the refined times (rewrite.Options.Remeasure).
func Refine(t *Table, cands []Candidate, opts Options) ([]Refinement, error) {
	type job struct {
		Refinement
		lt         *LayerTimes
		shape      string    // the layer as cached (canonical), which same-shaped layers share
		orig, cand Program   // built once, opened again in each session
		ratios     []float64 // each session's median ratio
		origs      []float64 // each session's median of the original's turns, ms
	}
	shapes := make([]string, len(t.Layers))
	for i, lt := range t.Layers {
		shapes[i] = string(mustJSON(lt.Layer.canonical()))
	}
	var jobs []*job
	seen := map[string]bool{}
	for _, c := range cands {
		if c.Layer < 0 || c.Layer >= len(t.Layers) {
			return nil, fmt.Errorf("refine: no layer %d in a table of %d", c.Layer, len(t.Layers))
		}
		lt := t.Layers[c.Layer]
		l := lt.Layer
		if c.R < 0 || c.R > l.In || c.K < 0 || c.K > l.Out {
			return nil, fmt.Errorf("refine %s: ranks r=%d k=%d out of range", l.label(), c.R, c.K)
		}
		r, k := lt.Round(c.R, c.K)
		shape := shapes[c.Layer]
		id := fmt.Sprintf("%s %d %d", shape, r, k)
		if r == 0 && k == 0 || lt.refined(r, k) != nil || seen[id] {
			continue
		}
		seen[id] = true
		jobs = append(jobs, &job{Refinement: Refinement{Layer: c.Layer, Before: lt.ratioTime(r, k), Point: Point{R: r, K: k}}, lt: lt, shape: shape})
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	o := opts.withDefaults()
	o.Context = opts.context(*o.CPU)
	ident, err := o.Runner.Identity()
	if err != nil {
		return nil, err
	}
	o.MinRuns = max(o.MinRuns, refineMinTurns)
	o.MaxRuns = max(o.MaxRuns, o.MinRuns)
	m := &meter{o: o, rng: rand.New(rand.NewPCG(3, 4))}
	for _, j := range jobs {
		if j.orig, err = build(j.lt.Layer, spec{}, nil, o.Context); err != nil {
			return nil, err
		}
		if j.cand, err = build(j.lt.Layer, spec{chain, j.Point.R, j.Point.K}, nil, o.Context); err != nil {
			return nil, err
		}
	}
	// Sessions of one candidate are spread over the whole refinement, between the others'.
	budget := o.RefineBudget / refineSessions
	for range refineSessions {
		for _, j := range jobs {
			ratio, orig, turns, err := m.session(j.orig, j.cand, budget)
			if err != nil {
				return nil, fmt.Errorf("refine %s: %w", j.lt.Layer.label(), err)
			}
			j.ratios = append(j.ratios, ratio)
			j.origs = append(j.origs, orig)
			j.Point.Runs += turns
		}
	}
	done := make([]Refinement, len(jobs))
	for i, j := range jobs {
		j.Point.Ms = Median(j.ratios) * j.lt.Original.Ms
		j.Point.RelCI = relCI(j.ratios, 0.5)
		j.Point.Orig = Median(j.origs)
		for li, other := range t.Layers {
			if shapes[li] == j.shape {
				other.setRefined(j.Point)
			}
		}
		done[i] = j.Refinement
	}
	saved := map[string]bool{} // one write per table, once all its points are in
	for _, j := range jobs {
		if o.NoCache || saved[j.shape] {
			continue
		}
		saved[j.shape] = true
		if err := saveCache(o, o.key(j.lt.Layer, ident), j.lt); err != nil {
			o.warn("latency cache not written: %v", err)
		}
	}
	t.Runs += m.runs
	return done, nil
}

// refineSessions is the number of sessions Refine times each candidate in, each with its
// original opened again. Timed again in six sessions one after another (each some 50-110
// paired turns, its median ratio known to ±2.5-4%), the input side at rank 4 of MNIST's
// /2/Conv (batch 64, one thread, 2-core virtual machine) ran at 0.51 to 0.63 of the original:
// what a session's memory and the machine's state at the time give it is not in any one
// session's interval, so the median is taken over sessions, and the interval with it.
const refineSessions = 4

// refineMinTurns is the fewest paired turns after which a Refine session may stop on its
// interval: a few turns that happen to agree stop no session (its budget may stop it sooner).
const refineMinTurns = 8

// session opens a layer's original program and a candidate's, warms them and times them in
// paired turns until the ratios' interval is within RelTol (not before Options.MinRuns turns)
// or budget is spent (past it, once there were hardMinRuns turns), and returns the median of
// the candidate's ratios to the original's turns beside it, the median of the original's
// turns (ms) and the number of turns.
func (m *meter) session(orig, cand Program, budget time.Duration) (ratio, origMs float64, turns int, err error) {
	ref, err := m.openWarm(orig)
	if err != nil {
		return 0, 0, 0, err
	}
	defer ref.timer.Close()
	tracks, err := m.pairs(ref, []Program{cand}, time.Now().Add(budget))
	if err != nil {
		return 0, 0, 0, err
	}
	return Median(tracks[0].ratios), Median(ref.ms), len(tracks[0].ratios), nil
}

// Below returns the candidates one measured rank below (r, k) on each side it reduces, ranks
// rounded as Time rounds them: where a faster choice would move to.
func (lt *LayerTimes) Below(r, k int) [][2]int {
	r, k = lt.Round(r, k)
	prev := func(grid []int, x int) int { // the largest rank of grid below x, 0 when none
		p := 0
		for _, g := range grid {
			if g < x {
				p = g
			}
		}
		return p
	}
	in, out := lt.Ranks()
	var below [][2]int
	switch {
	case r > 0 && k > 0:
		if pr := prev(lt.BothR, r); pr > 0 {
			below = append(below, [2]int{pr, k})
		}
		if pk := prev(lt.BothK, k); pk > 0 {
			below = append(below, [2]int{r, pk})
		}
	case r > 0:
		if pr := prev(in, r); pr > 0 {
			below = append(below, [2]int{pr, 0})
		}
	case k > 0:
		if pk := prev(out, k); pk > 0 {
			below = append(below, [2]int{0, pk})
		}
	}
	return below
}

// Retimed reports whether candidate (r, k) (ranks rounded as Time rounds them) has a refined
// point (Refine).
func (lt *LayerTimes) Retimed(r, k int) bool {
	return lt.refined(lt.Round(r, k)) != nil
}

// refined returns the refined point at ranks (r, k) as Round gives them, or nil.
func (lt *LayerTimes) refined(r, k int) *Point {
	for i := range lt.Refined {
		if p := &lt.Refined[i]; p.R == r && p.K == k {
			return p
		}
	}
	return nil
}

// setRefined records p, replacing a refined point at the same ranks; points stay sorted.
func (lt *LayerTimes) setRefined(p Point) {
	if q := lt.refined(p.R, p.K); q != nil {
		*q = p
		return
	}
	lt.Refined = append(slices.Clone(lt.Refined), p)
	slices.SortFunc(lt.Refined, func(a, b Point) int { return cmp.Or(cmp.Compare(a.R, b.R), cmp.Compare(a.K, b.K)) })
}
