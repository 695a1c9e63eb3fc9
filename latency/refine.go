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
// before (milliseconds per run, interpolated or measured) and the refined point.
type Refinement struct {
	Layer  int
	Before float64
	Point  Point
}

// Refine times again each candidate (ranks rounded as Time rounds them) that has no refined
// point yet, beside its layer's original in paired turns as Measure does, for at most
// Options.RefineBudget, and records the result in LayerTimes.Refined of every layer of t with
// the same shape, where Time and Noise find it before the grid; each layer's cache entry is
// rewritten with it. It returns what it timed, in the order of cands.
//
// Why: a table times some fifty candidates of a layer in its budget, each from a few dozen
// turns, and an allocation choosing the fastest of them chooses the ones whose noise made them
// look fastest. On the bundled MNIST model at batch 64 (one thread, 2-core virtual machine),
// the ranks chosen at --target-latency 0.52 were predicted 3.38x faster and ran 3.07x: /2/Conv's
// input side at rank 4 saved 2.75 ms in its table (±14%) and 2.51 ms in the model. Timing the
// few candidates chosen, each alone beside its original for longer, removes that bias where it
// matters; the allocation then chooses again with the refined times (rewrite.Options.Remeasure).
func Refine(t *Table, cands []Candidate, opts Options) ([]Refinement, error) {
	o := opts.withDefaults()
	o.Context = opts.context(*o.CPU)
	ident, err := o.Runner.Identity()
	if err != nil {
		return nil, err
	}
	// A pair stops once its ratio's interval is within RelTol, but not before refineMinRuns
	// turns: five turns that happen to agree are no better than the table's.
	o.MinRuns = max(o.MinRuns, refineMinRuns)
	o.MaxRuns = max(o.MaxRuns, o.MinRuns)
	m := &meter{o: o, rng: rand.New(rand.NewPCG(3, 4))}
	var done []Refinement
	for _, c := range cands {
		if c.Layer < 0 || c.Layer >= len(t.Layers) {
			return done, fmt.Errorf("latency: refine: no layer %d in a table of %d", c.Layer, len(t.Layers))
		}
		lt := t.Layers[c.Layer]
		l := lt.Layer
		if c.R < 0 || c.R > l.In || c.K < 0 || c.K > l.Out {
			return done, fmt.Errorf("latency: refine %s: ranks r=%d k=%d out of range", l.label(), c.R, c.K)
		}
		r, k := lt.Round(c.R, c.K)
		if r == 0 && k == 0 || lt.refined(r, k) != nil {
			continue
		}
		before := lt.Time(r, k)
		pt, err := m.refine(lt, r, k)
		if err != nil {
			return done, fmt.Errorf("refine %s: %w", l.label(), err)
		}
		key := o.key(l, ident)
		for _, other := range t.Layers {
			if other == lt || o.key(other.Layer, ident).file() == key.file() {
				other.setRefined(pt)
			}
		}
		if !o.NoCache {
			if err := saveCache(o, key, lt); err != nil {
				o.warn("latency cache not written: %v", err)
			}
		}
		done = append(done, Refinement{Layer: c.Layer, Before: before, Point: pt})
	}
	t.Runs += m.runs
	return done, nil
}

// refineMinRuns is the fewest turns Refine times a candidate.
const refineMinRuns = 15

// refine times candidate (r, k) of lt beside its original and returns its point, the median
// of its paired ratios scaled by the table's original time.
func (m *meter) refine(lt *LayerTimes, r, k int) (Point, error) {
	orig, err := build(lt.Layer, spec{}, nil, m.o.Context)
	if err != nil {
		return Point{}, err
	}
	cand, err := build(lt.Layer, spec{chain, r, k}, nil, m.o.Context)
	if err != nil {
		return Point{}, err
	}
	ref, err := m.open(orig)
	if err != nil {
		return Point{}, err
	}
	defer ref.timer.Close()
	if err := m.warm(ref); err != nil {
		return Point{}, err
	}
	_, pts, err := m.rounds(ref, []Program{cand}, time.Now().Add(m.o.RefineBudget))
	if err != nil {
		return Point{}, err
	}
	p := pts[0] // its Ms is the median ratio times the median of ref's turns here
	return Point{R: r, K: k, Ms: p.Ms / Median(ref.ms) * lt.Original.Ms, RelCI: p.RelCI, Runs: p.Runs}, nil
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
