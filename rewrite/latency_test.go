package rewrite

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// fakeTimes is a latency table without onnxruntime: each layer costs a fixed overhead plus its
// multiply-adds at ranks rounded up to multiples of 8 (as MLAS computes channels), and the
// layers named in slow are slower factorized than whole at every rank (the 1x1 projections'
// extra passes over memory outweigh the arithmetic saved).
type fakeTimes struct {
	slow map[string]bool
}

func round8(r, n int) int {
	if r > 0 && r%8 != 0 {
		r += 8 - r%8
	}
	return min(r, n)
}

func (f fakeTimes) time(p *Plan, r, k int) float64 {
	orig := 0.05 + float64(p.cost(0, 0).MACs)*1e-7
	if r == 0 && k == 0 {
		return orig
	}
	if f.slow[p.Name] {
		return 1.2 * orig
	}
	r, k = round8(r, p.in), round8(k, p.OutChannels)
	return 0.05 + 0.02*float64(btoi(r > 0)+btoi(k > 0)) + float64(p.cost(r, k).MACs)*1e-7
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// layerTime is the time the plans keep: each applied layer at its ranks, the others whole.
func layerTime(plans []*Plan, time func(*Plan, int, int) float64) (before, after float64) {
	for _, p := range plans {
		t0 := time(p, 0, 0)
		before += t0
		if p.Reason == "" {
			after += time(p, p.InRank, p.Rank)
		} else {
			after += t0
		}
	}
	return before, after
}

// TestAllocateTime: against a fake latency table, the allocation meets the time target, never
// applies a layer whose factorization is slower than the layer (nor one within the noise
// margin), keeps ranks on the multiple, and is maximal: raising any applied rank by a step
// breaks the target.
func TestAllocateTime(t *testing.T) {
	ft := fakeTimes{slow: map[string]bool{"slow": true}}
	for _, tc := range []struct {
		target float64
		noise  float64
	}{{0.7, 0}, {0.5, 0}, {0.5, 0.05}, {0.45, 0.05}} {
		plans := []*Plan{synthPlan("a", 16, 32, 400, 0.7), synthPlan("slow", 32, 64, 100, 0.8), synthPlan("c", 64, 64, 25, 0.9), synthPlan("d", 32, 32, 900, 0.6)}
		opts := Options{Side: SideBoth, TargetTime: tc.target, RankMultiple: 8, Time: ft.time}
		if tc.noise > 0 {
			opts.TimeNoise = func(*Plan, int, int) float64 { return tc.noise }
		}
		if err := Allocate(plans, opts); err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		before, after := layerTime(plans, ft.time)
		for _, p := range plans {
			t.Logf("%+v: %s ranks %d, %d (%s) %q", tc, p.Name, p.InRank, p.Rank, p.Side, p.Reason)
		}
		t.Logf("%+v: %.4f of %.4f ms (%.3f)", tc, after, before, after/before)
		if after > tc.target*before {
			t.Errorf("%+v: layers keep %.4f of %.4f ms, over the target", tc, after, before)
		}
		if after < 0.8*tc.target*before {
			t.Errorf("%+v: layers keep %.4f of %.4f ms: far under the target (refill failed?)", tc, after, before)
		}
		for _, p := range plans {
			if p.Name == "slow" {
				if p.Reason == "" {
					t.Errorf("%+v: the slow layer was applied at ranks %d, %d", tc, p.InRank, p.Rank)
				} else if !strings.Contains(p.Reason, "would not lower time") {
					t.Errorf("%+v: the slow layer's reason is %q", tc, p.Reason)
				}
				continue
			}
			if p.Reason != "" {
				continue
			}
			t0, t1 := ft.time(p, 0, 0), ft.time(p, p.InRank, p.Rank)
			if t1 >= (1-tc.noise)*t0 {
				t.Errorf("%+v: layer %s applied at %.4f ms against %.4f ms, within the noise %g", tc, p.Name, t1, t0, tc.noise)
			}
			for _, r := range [][2]int{{p.InRank, p.in}, {p.Rank, p.OutChannels}} {
				if r[0] != 0 && r[0] != r[1] && r[0]%8 != 0 {
					t.Errorf("%+v: layer %s rank %d is not a multiple of 8", tc, p.Name, r[0])
				}
			}
			// Maximal: a step up on either side breaks the target.
			for _, input := range []bool{true, false} {
				r, k := p.InRank, p.Rank
				if input && r > 0 && r < p.in {
					r = min(r+8, p.in)
				} else if !input && k > 0 && k < p.OutChannels {
					k = min(k+8, p.OutChannels)
				} else {
					continue
				}
				if d := ft.time(p, r, k) - ft.time(p, p.InRank, p.Rank); d > 0 && after+d <= tc.target*before && ft.time(p, r, k) < (1-tc.noise)*t0 {
					t.Errorf("%+v: layer %s could keep ranks %d, %d (+%.4f ms) within the target", tc, p.Name, r, k, d)
				}
			}
		}
	}
}

// TestAllocateTimeOutOfReach: a time target the table cannot reach is no error: the layers
// keep the fastest ranks the allocation reaches, the slow layer stays whole, and a target
// without times is refused.
func TestAllocateTimeOutOfReach(t *testing.T) {
	ft := fakeTimes{slow: map[string]bool{"slow": true}}
	plans := []*Plan{synthPlan("a", 16, 32, 400, 0.7), synthPlan("slow", 32, 64, 100, 0.8)}
	if err := Allocate(plans, Options{Side: SideBoth, TargetTime: 0.05, RankMultiple: 8, Time: ft.time}); err != nil {
		t.Fatal(err)
	}
	a, slow := plans[0], plans[1]
	if a.Reason != "" || slow.Reason == "" {
		t.Errorf("applied: a %q, slow %q", a.Reason, slow.Reason)
	}
	// The fastest factorization of a: output rank 8 (its input has 16 channels at most).
	fastest := math.Inf(1)
	for _, rk := range [][2]int{{8, 0}, {16, 0}, {0, 8}, {8, 8}} {
		fastest = math.Min(fastest, ft.time(a, rk[0], rk[1]))
	}
	if got := ft.time(a, a.InRank, a.Rank); got != fastest {
		t.Errorf("a at ranks %d, %d: %.4f ms, the fastest is %.4f ms", a.InRank, a.Rank, got, fastest)
	}
	if err := Allocate(plans, Options{Side: SideBoth, TargetTime: 0.5}); err == nil {
		t.Error("a time target without times was accepted")
	}
}

// TestAllocateTimeSlack: out of reach, a rank that costs less than reachSlack more time than
// the fastest is raised back for the loss it recovers, and one that costs more is not.
func TestAllocateTimeSlack(t *testing.T) {
	for _, tc := range []struct {
		at16  float64 // time of output rank 16 (rank 8: 1 ms, the original: 3 ms)
		wantK int
	}{{1.01, 16}, {1.05, 8}} {
		p := synthPlan("a", 16, 32, 400, 0.7)
		time := func(_ *Plan, r, k int) float64 {
			switch {
			case r == 0 && k == 0:
				return 3
			case k > 0 && k <= 8:
				return 1
			case k > 0 && k <= 16:
				return tc.at16
			}
			return 2.9 // rank 24 and up, or the input side
		}
		opts := Options{Side: SideOutput, TargetTime: 0.1, RankMultiple: 8, Time: time}
		if err := Allocate([]*Plan{p}, opts); err != nil {
			t.Fatal(err)
		}
		if p.Rank != tc.wantK {
			t.Errorf("rank 16 at %.2f ms against 1 ms at rank 8: rank %d, want %d", tc.at16, p.Rank, tc.wantK)
		}
	}
}

// TestCheapestFullSide: a two-sided factorization with one side at full rank is never kept,
// even where the times say it is the fastest.
func TestCheapestFullSide(t *testing.T) {
	p := synthPlan("a", 16, 32, 400, 0.7)
	time := func(_ *Plan, r, k int) float64 {
		if r > 0 && k > 0 {
			return 0.1 // a noisy table: both sides "fastest"
		}
		return 1
	}
	opts := Options{Time: time}
	for _, tc := range []struct{ r, k, wantR, wantK int }{
		{8, 32, 8, 0},   // output side at full rank: input side alone
		{16, 8, 0, 8},   // input side at full rank: output side alone
		{8, 8, 8, 8},    // both reduced: both kept
		{16, 32, 16, 0}, // both full: the input side alone
	} {
		r, k, _ := p.cheapest(opts, tc.r, tc.k)
		if r != tc.wantR || k != tc.wantK {
			t.Errorf("cheapest(%d, %d) = %d, %d, want %d, %d", tc.r, tc.k, r, k, tc.wantR, tc.wantK)
		}
	}
}

// TestLatencyGate: with times, any rule keeps each layer's fastest side and skips a layer whose
// factorization is not faster than the original by more than the noise, saying both times;
// --rank full applies it anyway; without times, MACs decide as before.
func TestLatencyGate(t *testing.T) {
	// "a": ranks 20 (threshold 1e-3 of 0.7^i) on 16 -> 32 at 400 positions. Its times: original
	// 1 ms, both sides 0.97 ms, input only 0.99 ms, output only 0.9 ms.
	times := map[[2]int]float64{{0, 0}: 1, {16, 20}: 0.97, {16, 0}: 0.99, {0, 20}: 0.9}
	time := func(p *Plan, r, k int) float64 {
		v, ok := times[[2]int{r, k}]
		if !ok {
			panic(fmt.Sprintf("no time at %d, %d", r, k))
		}
		return v
	}
	noise := func(*Plan, int, int) float64 { return 0.05 }
	for _, tc := range []struct {
		name   string
		opts   Options
		side   Side
		reason string
	}{
		{"fastest side", Options{Rule: DefaultRule, Time: time, TimeNoise: noise}, SideOutput, ""},
		{"no noise", Options{Rule: DefaultRule, Time: time}, SideOutput, ""},
		{"full", Options{Rule: DefaultRule, Time: time, TimeNoise: noise, Full: true}, SideBoth, ""},
		{"macs", Options{Rule: DefaultRule}, SideOutput, ""},
	} {
		p := synthPlan("a", 16, 32, 400, 0.7)
		if err := Choose([]*Plan{p}, tc.opts); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if p.Side != tc.side || p.Reason != tc.reason {
			t.Errorf("%s: side %s, reason %q; want %s, %q", tc.name, p.Side, p.Reason, tc.side, tc.reason)
		}
	}

	// The output side alone 3% faster: within a 5% noise margin, skipped with both times.
	times[[2]int{0, 20}] = 0.97
	times[[2]int{16, 20}] = 0.975
	p := synthPlan("a", 16, 32, 400, 0.7)
	if err := Choose([]*Plan{p}, Options{Rule: DefaultRule, Time: time, TimeNoise: noise}); err != nil {
		t.Fatal(err)
	}
	want := "rank 20 of 32 is not measurably faster (1.000 ms -> 0.970 ms measured, 3.0% less, within the 5.0% noise)"
	if p.Reason != want {
		t.Errorf("reason %q\n  want %q", p.Reason, want)
	}
	// Slower whatever the side: "would not lower time", with both times.
	times[[2]int{0, 20}], times[[2]int{16, 20}], times[[2]int{16, 0}] = 1.2, 1.3, 1.25
	p = synthPlan("a", 16, 32, 400, 0.7)
	if err := Choose([]*Plan{p}, Options{Rule: DefaultRule, Time: time, TimeNoise: noise}); err != nil {
		t.Fatal(err)
	}
	want = "rank 20 of 32 would not lower time (1.000 ms -> 1.200 ms measured)"
	if p.Reason != want {
		t.Errorf("reason %q\n  want %q", p.Reason, want)
	}
	// --rank full applies it anyway.
	p = synthPlan("a", 16, 32, 400, 0.7)
	if err := Choose([]*Plan{p}, Options{Rule: DefaultRule, Time: time, TimeNoise: noise, Full: true}); err != nil {
		t.Fatal(err)
	}
	if p.Reason != "" || p.InRank != 16 || p.Rank != 32 {
		t.Errorf("full rank: ranks %d, %d, reason %q", p.InRank, p.Rank, p.Reason)
	}
}

// TestChooseRemeasure: Choose measures again the factorization it chose and chooses again
// until nothing new is measured: a side that only looked fastest (its table time lucky) gives
// way to the truly fastest; a Remeasure that always measures something is called MaxRemeasure
// times.
func TestChooseRemeasure(t *testing.T) {
	// Ranks 20 on both sides by the rule (0.7^i >= 1e-3 for i < 20). The table thinks the
	// output side alone is fastest (0.9 ms); it really takes 0.98 ms, and both sides 0.93 ms.
	table := map[[2]int]float64{{0, 0}: 1, {20, 20}: 0.92, {20, 0}: 0.99, {0, 20}: 0.9}
	truth := map[[2]int]float64{{0, 0}: 1, {20, 20}: 0.93, {20, 0}: 0.99, {0, 20}: 0.98}
	measured := map[[2]int]bool{}
	var calls []string
	opts := Options{
		Rule:      DefaultRule,
		Time:      func(_ *Plan, r, k int) float64 { return table[[2]int{r, k}] },
		TimeNoise: func(*Plan, int, int) float64 { return 0.05 },
		Remeasure: func(plans []*Plan) (int, error) {
			n := 0
			for _, p := range plans {
				calls = append(calls, fmt.Sprintf("%d:%d", p.InRank, p.Rank))
				if rk := [2]int{p.InRank, p.Rank}; p.Reason == "" && !measured[rk] {
					measured[rk], table[rk] = true, truth[rk]
					n++
				}
			}
			return n, nil
		},
	}
	p := synthPlan("a", 32, 32, 400, 0.7)
	if err := Choose([]*Plan{p}, opts); err != nil {
		t.Fatal(err)
	}
	if p.Side != SideBoth || p.InRank != 20 || p.Rank != 20 || p.Reason != "" {
		t.Errorf("chose side %s ranks %d:%d (reason %q), want both 20:20", p.Side, p.InRank, p.Rank, p.Reason)
	}
	if want := []string{"0:20", "20:20", "20:20"}; !slices.Equal(calls, want) {
		t.Errorf("Remeasure saw %v, want %v", calls, want)
	}

	// A Remeasure that always finds something new stops after MaxRemeasure calls; the ranks
	// and sides then stand, and the gate decides on the last times (here: both sides 0.99 ms,
	// within the noise; the output side alone, 0.98 ms, is not taken instead).
	n := 0
	opts.Remeasure = func([]*Plan) (int, error) {
		n++
		if n == MaxRemeasure {
			table[[2]int{20, 20}] = 0.99
		}
		return 1, nil
	}
	p = synthPlan("a", 32, 32, 400, 0.7)
	if err := Choose([]*Plan{p}, opts); err != nil {
		t.Fatal(err)
	}
	if n != MaxRemeasure || p.InRank != 20 || p.Rank != 20 || !strings.Contains(p.Reason, "not measurably faster (1.000 ms -> 0.990 ms") {
		t.Errorf("Remeasure called %d times (want %d); ranks %d:%d, reason %q (want 20:20 skipped)", n, MaxRemeasure, p.InRank, p.Rank, p.Reason)
	}
	// Its error is Choose's.
	opts.Remeasure = func([]*Plan) (int, error) { return 0, errors.New("runtime gone") }
	if err := Choose([]*Plan{synthPlan("a", 32, 32, 400, 0.7)}, opts); err == nil || err.Error() != "runtime gone" {
		t.Errorf("error %v, want runtime gone", err)
	}
}

// TestAllocateNoisyRemeasure: with Remeasure, the allocation counts a saving its times show
// even where their noise is wide, and the gate decides once the chosen ranks are measured
// again: layer b's fastest output ranks (8 and below) are known only to ±80% until measured
// again, and a target out of reach keeps b at rank 8, applied.
func TestAllocateNoisyRemeasure(t *testing.T) {
	ft := fakeTimes{}
	measured := map[[2]int]bool{}
	a, b := synthPlan("a", 16, 32, 400, 0.7), synthPlan("b", 32, 64, 100, 0.8)
	opts := Options{
		Side: SideOutput, TargetTime: 0.1, RankMultiple: 8, Time: ft.time,
		TimeNoise: func(p *Plan, r, k int) float64 {
			if p.Name == "b" && k <= 8 && !measured[[2]int{r, k}] {
				return 0.8
			}
			return 0.05
		},
		Remeasured: func(p *Plan, r, k int) bool { return p.Name == "b" && measured[[2]int{r, k}] },
		Remeasure: func(plans []*Plan) (int, error) {
			n := 0
			for _, p := range plans {
				rk := [2]int{p.InRank, p.Rank}
				if p.Name == "b" && ft.time(p, rk[0], rk[1]) < ft.time(p, 0, 0) && !measured[rk] {
					measured[rk] = true
					n++
				}
			}
			return n, nil
		},
	}
	if err := Choose([]*Plan{a, b}, opts); err != nil {
		t.Fatal(err)
	}
	if b.Rank != 8 || b.Reason != "" || a.Rank != 8 || a.Reason != "" {
		t.Errorf("a at %d (%q), b at %d (%q); want both applied at rank 8", a.Rank, a.Reason, b.Rank, b.Reason)
	}
}
