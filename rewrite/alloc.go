package rewrite

import (
	"errors"
	"fmt"
	"math"
)

// Allocate chooses the ranks of all plans (both sides where opts.Side says so) so that the
// Convs keep at most opts.TargetMACs of their original MACs, losing the least. Loss is
// measured per layer and side as the discarded fraction of the eigenvalue sum (the output
// covariance's, or the input second moment's), or with opts.Alloc = AllocSensitivity as the
// measured squared relative error of the model's outputs (see Sensitivity). Greedy: starting from full ranks, it
// repeatedly lowers by one step (opts.RankMultiple, default 1) the rank whose step discards
// the least loss per MAC saved, until the MACs of the model, each layer costing the least of
// its factorizations and its original, fit the target. Fixed ranks (opts.Ranks) are kept.
func Allocate(plans []*Plan, opts Options) error {
	if opts.TargetMACs <= 0 || opts.TargetMACs > 1 {
		return fmt.Errorf("target MACs fraction %v is not in (0, 1]", opts.TargetMACs)
	}
	side := opts.side()
	step := max(opts.RankMultiple, 1)
	var total int64
	for _, p := range plans {
		total += p.Before.MACs
	}
	budget := int64(math.Floor(opts.TargetMACs * float64(total)))

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
		states = append(states, st)
	}
	effective := func() int64 {
		t := total
		for _, st := range states {
			_, _, c := st.p.cheapest(st.r, st.k)
			if c.MACs < st.p.Before.MACs {
				t += c.MACs - st.p.Before.MACs
			}
		}
		return t
	}
	// Ranks move in steps between multiples of step; only full rank may be another number.
	lower := func(rank int) int {
		next := rank - step
		if rank%step != 0 {
			next = rank - rank%step
		}
		if next < 1 {
			return rank // at the smallest multiple already
		}
		return next
	}
	higher := func(rank, full int) int {
		return min(rank-rank%step+step, full)
	}
	// move returns the loss added (negative: removed) and the factorized MACs saved (negative:
	// added) by moving one side of a layer from rank from to rank to.
	move := func(st *state, input bool, from, to int) (loss float64, saved int64) {
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
		return loss, st.p.cost(st.r, st.k).MACs - st.p.cost(r2, k2).MACs
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
	// Cut: lower the rank whose step loses least per MAC saved until the target is met.
	for effective() > budget {
		var best *state
		bestInput, bestScore := false, math.Inf(1)
		for _, st := range states {
			for _, input := range []bool{true, false} {
				r, _, fixed := rank(st, input)
				if r == 0 || fixed || lower(r) == r {
					continue
				}
				loss, saved := move(st, input, r, lower(r))
				if saved <= 0 {
					continue
				}
				if score := loss / float64(saved); score < bestScore {
					best, bestInput, bestScore = st, input, score
				}
			}
		}
		if best == nil {
			hint := ""
			if step > 1 {
				hint = " (a smaller --rank-multiple allows lower ranks)"
			}
			return fmt.Errorf("%w: cannot reach %.3g of the original MACs: every rank is at its minimum%s", ErrUnreachable, opts.TargetMACs, hint)
		}
		r, _, _ := rank(best, bestInput)
		set(best, bestInput, lower(r))
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
				score := -loss / math.Max(float64(-saved), 1)
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

// ErrUnreachable is returned (wrapped) by Allocate when no ranks meet the target.
var ErrUnreachable = errors.New("target out of reach")

func sum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}
