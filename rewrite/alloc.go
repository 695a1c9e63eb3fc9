package rewrite

import (
	"errors"
	"fmt"
	"math"
)

// Allocate chooses the ranks of all plans (both sides where opts.Side says so) so that the
// Convs keep at most opts.TargetMACs of their original MACs, losing the least. Loss is
// measured per layer and side as the squared error it causes in the layer's output relative
// to that output's variance (output side: discarded output-covariance eigenvalues; input side:
// the discarded output-error spectrum of OutputAwareInput), one unit for both sides, or with
// opts.Alloc = AllocSensitivity as the measured squared relative error of the model's outputs
// (see compress.Sensitivity). Greedy: starting from full ranks, it
// repeatedly lowers by one step (to the next multiple of opts.RankMultiple, default 1, or of
// opts.SmallRanks below it) the rank whose step discards
// the least loss per MAC saved, until the MACs of the model, each layer costing the least of
// its factorizations and its original, fit the target. Fixed ranks (opts.Ranks) are kept.
//
// With opts.TargetTime (and opts.Time) the cost is time instead of MACs: the factorizable
// layers' summed time, each at the fastest of its factorizations where that is measurably
// faster than the original (see Options.TimeNoise) and else at the original's, must fit
// TargetTime of their summed original time; steps are ranked by loss per millisecond saved.
// A time target out of reach is not an error: the allocation keeps the fastest ranks it
// reaches, then raises those that recover the most loss while the time stays within 2% of that
// (reachSlack), and the caller compares the result with the target. With opts.Remeasure, a
// factorization whose time was not measured again (opts.Remeasured) counts wherever its time
// is below the original's (see effective). With opts.Time but no TargetTime, MACs are
// budgeted, but a layer counts as factorized only where it is measurably faster, as settle
// then decides.
func Allocate(plans []*Plan, opts Options) error {
	timed := opts.TargetTime > 0
	target, what := opts.TargetMACs, "MACs"
	if timed {
		target, what = opts.TargetTime, "layer time"
		if opts.Time == nil {
			return errors.New("a time target needs layer times (Options.Time)")
		}
	}
	if target <= 0 || target > 1 {
		return fmt.Errorf("target %s fraction %v is not in (0, 1]", what, target)
	}
	side := opts.side()
	steps := opts.ladder()
	// cost is what the target budgets: a layer's MACs, or its time.
	cost := func(p *Plan, r, k int) float64 {
		if timed {
			return opts.Time(p, r, k)
		}
		return float64(p.cost(r, k).MACs)
	}
	// unit is the smallest cost a refill step is charged (refill scores loss per cost added).
	unit := 1.0
	if timed {
		unit = 1e-9
	}
	var total float64
	if !timed {
		for _, p := range plans {
			total += float64(p.Before.MACs)
		}
	}

	type state struct {
		p          *Plan
		r, k       int // current ranks (full = channel count)
		fixR, fixK bool
		inSum      float64
		outSum     float64
	}
	var states []*state
	for _, p := range plans {
		if p.conv == nil {
			continue
		}
		st := &state{p: p}
		fixed, has := opts.Ranks[p.Name]
		if side != SideOutput {
			st.r = p.in
			if has && fixed.In > 0 {
				st.r, st.fixR = fixed.In, true
			}
			st.inSum = sum(p.inPCA.Values)
		}
		if side != SideInput {
			st.k = p.outFull()
			if has && fixed.Out > 0 {
				st.k, st.fixK = fixed.Out, true
			}
			st.outSum = sum(p.outPCA.Values)
		}
		// One unit for both sides: both spectra are squared output errors of the layer (the
		// input side's from OutputAwareInput, the output side's the output covariance's
		// eigenvalues), measured against the layer's output variance when it is known.
		if st.outSum > 0 && side != SideOutput {
			st.inSum = st.outSum
		}
		states = append(states, st)
	}
	original := func(p *Plan) float64 { return float64(p.Before.MACs) }
	if timed {
		original = func(p *Plan) float64 { return opts.Time(p, 0, 0) }
		for _, st := range states {
			total += original(st.p)
		}
	}
	budget := target * total
	if !timed {
		budget = math.Floor(budget)
	}
	// effective is the cost of the model, each layer at the cheapest of its factorizations
	// where that pays (see Plan.pays), else at its original's. For a time target with
	// Remeasure, a factorization not yet measured again counts wherever its time is below the
	// original's: Choose measures the ones chosen again, and the gate decides on those times.
	// Counted only where a table's interval already showed it, a noisy table's fastest ranks
	// counted for nothing, and the allocation for a target out of reach raised the layer until
	// its interval did: on MNIST, /2/Conv at ranks 4:4 (±47% in one table) went back to 16:16,
	// and with the room that made, three layers to full rank.
	pays := func(p *Plan, r, k int) bool {
		if timed && opts.Remeasure != nil && (opts.Remeasured == nil || !opts.Remeasured(p, r, k)) {
			return opts.Time(p, r, k) < opts.Time(p, 0, 0)
		}
		return p.pays(opts, r, k)
	}
	effective := func() float64 {
		t := total
		for _, st := range states {
			r, k, _ := st.p.cheapest(opts, st.r, st.k)
			if pays(st.p, r, k) {
				t += cost(st.p, r, k) - original(st.p)
			}
		}
		return t
	}
	// Ranks move along the ladder (multiples and small ranks); only full rank may be another number.
	lower := steps.lower
	higher := steps.higher
	// move returns the loss added (negative: removed) and the factorized cost (MACs or time)
	// saved (negative: added) by moving one side of a layer from rank from to rank to.
	move := func(st *state, input bool, from, to int) (loss float64, saved float64) {
		vals, s, curve := st.p.outPCA.Values, st.outSum, st.p.outCurve
		r2, k2 := st.r, to
		if input {
			vals, s, curve = st.p.inPCA.Values, st.inSum, st.p.inCurve
			r2, k2 = to, st.k
		}
		switch {
		case opts.Alloc == AllocSensitivity && curve != nil:
			loss = curve.at(to) - curve.at(from)
		case s > 0 && to < from:
			loss = sum(vals[to:from]) / s
		case s > 0:
			loss = -sum(vals[from:to]) / s
		}
		return loss, cost(st.p, st.r, st.k) - cost(st.p, r2, k2)
	}
	rank := func(st *state, input bool) (r, full int, fixed bool) {
		if input {
			return st.r, st.p.in, st.fixR
		}
		return st.k, st.p.outFull(), st.fixK
	}
	set := func(st *state, input bool, r int) {
		if input {
			st.r = r
		} else {
			st.k = r
		}
	}
	// Cut: lower the rank whose step loses least per MAC saved until the target is met. Times
	// are not monotone in rank (measured, and flat between the widths the hardware computes
	// in): where one step saves no time, the step goes on down to the first rank that saves.
	for effective() > budget {
		var best *state
		bestInput, bestScore, bestTo := false, math.Inf(1), 0
		for _, st := range states {
			for _, input := range []bool{true, false} {
				r, _, fixed := rank(st, input)
				if r == 0 || fixed || lower(r) == r {
					continue
				}
				to := lower(r)
				loss, saved := move(st, input, r, to)
				for saved <= 0 && lower(to) != to {
					to = lower(to)
					loss, saved = move(st, input, r, to)
				}
				if saved <= 0 {
					continue
				}
				if score := loss / saved; score < bestScore {
					best, bestInput, bestScore, bestTo = st, input, score, to
				}
			}
		}
		if best == nil && timed {
			// Out of reach: times have a floor (each layer's fixed costs, which depend on the
			// machine) and no cut saves time any more. Keep (within reachSlack) the fastest
			// reached; the caller compares the layers' time with the target.
			budget = effective() * (1 + reachSlack)
			break
		}
		if best == nil {
			hint := ""
			if steps.m > 1 {
				hint = " (a smaller --rank-multiple allows lower ranks)"
			}
			return fmt.Errorf("%w: cannot reach %.3g of the original %s: every rank is at its minimum%s", ErrUnreachable, target, what, hint)
		}
		set(best, bestInput, bestTo)
	}
	// Refill: the last cuts may overshoot (a layer counts only once its factorization is
	// cheaper than the original); raise ranks back, most loss recovered per MAC first, while
	// the target still holds.
	for {
		var best *state
		bestInput, bestScore := false, 0.0
		for _, st := range states {
			for _, input := range []bool{true, false} {
				r, full, fixed := rank(st, input)
				if r == 0 || fixed || r >= full {
					continue
				}
				up := higher(r, full)
				set(st, input, up)
				fits := effective() <= budget
				set(st, input, r)
				if !fits {
					continue
				}
				loss, saved := move(st, input, r, up)
				score := -loss / math.Max(-saved, unit)
				if score > bestScore {
					best, bestInput, bestScore = st, input, score
				}
			}
		}
		if best == nil {
			break
		}
		r, full, _ := rank(best, bestInput)
		set(best, bestInput, higher(r, full))
	}
	for _, st := range states {
		st.p.InRank, st.p.Rank = st.r, st.k
		st.p.settle(opts)
	}
	return nil
}

// reachSlack is how much slower than the fastest allocation the cut reached an allocation for a
// time target out of reach may be: the refill then raises the ranks that buy back the most loss
// within it. The cut's last steps, taken only because the target was not met, save little time
// and may lose much (on the bundled MNIST model, the fastest allocation 0.518 of the layers'
// time at top-1 0.9701, where 0.52 kept 0.9875); 2% is below what the tables resolve (each
// median known within ±2.5%, their differences within ±3.5%; the latency gate's margin is 5%).
const reachSlack = 0.02

// ErrUnreachable is returned (wrapped) by Allocate when no ranks meet the target.
var ErrUnreachable = errors.New("target out of reach")

func sum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}
