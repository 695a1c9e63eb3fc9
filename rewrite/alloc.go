package rewrite

import (
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
			st.k = p.OutChannels
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
	lower := func(rank int) int { // the next rank down: a multiple of step, at least 1
		next := rank - step
		if rank%step != 0 {
			next = rank - rank%step
		}
		return max(next, 1)
	}
	for effective() > budget {
		var best *state
		bestInput, bestScore := false, math.Inf(1)
		for _, st := range states {
			for _, input := range []bool{true, false} {
				rank, fixed, vals, s := st.k, st.fixK, st.p.outPCA.Values, st.outSum
				if input {
					rank, fixed, vals, s = st.r, st.fixR, st.p.inPCA.Values, st.inSum
				}
				if rank <= 1 || fixed {
					continue
				}
				next := lower(rank)
				loss := 0.0
				curve := st.p.outCurve
				if input {
					curve = st.p.inCurve
				}
				switch {
				case opts.Alloc == AllocSensitivity && curve != nil:
					loss = curve.at(next) - curve.at(rank)
				case s > 0:
					loss = sum(vals[next:rank]) / s
				}
				r2, k2 := st.r, next
				if input {
					r2, k2 = next, st.k
				}
				saved := st.p.cost(st.r, st.k).MACs - st.p.cost(r2, k2).MACs
				if saved <= 0 {
					continue
				}
				if score := loss / float64(saved); score < bestScore {
					best, bestInput, bestScore = st, input, score
				}
			}
		}
		if best == nil {
			return fmt.Errorf("cannot reach %.3g of the original MACs: every rank is at its minimum", opts.TargetMACs)
		}
		if bestInput {
			best.r = lower(best.r)
		} else {
			best.k = lower(best.k)
		}
	}
	for _, st := range states {
		st.p.InRank, st.p.Rank = st.r, st.k
		st.p.settle(opts)
	}
	return nil
}

func sum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}
