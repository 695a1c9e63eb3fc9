package compress

import (
	"strings"
	"testing"

	"github.com/convpca/convpca/latency"
	"github.com/convpca/convpca/rewrite"
)

// flatTimes is a latency table whose candidates all take ms (the original orig).
func flatTimes(name string, orig, ms float64) *latency.LayerTimes {
	l := latency.Layer{Name: name, Op: "Conv", In: 16, Out: 16, Kernel: []int{3, 3}, Input: []int{16, 8, 8}, Batch: 4}
	lt := &latency.LayerTimes{Layer: l, Multiple: 8, Original: latency.Point{Ms: orig, RelCI: 0.02}, BothR: []int{8, 16}, BothK: []int{8, 16}}
	for _, r := range []int{8, 16} {
		lt.Input = append(lt.Input, latency.Point{R: r, Ms: ms, RelCI: 0.04})
		lt.Output = append(lt.Output, latency.Point{K: r, Ms: ms, RelCI: 0.04})
		for _, k := range []int{8, 16} {
			lt.Both = append(lt.Both, latency.Point{R: r, K: k, Ms: ms, RelCI: 0.04})
		}
	}
	return lt
}

// TestLatencyReport: report rows find their tables in graph order (two layers of one name
// included), skipped layers keep their original time, a missed target is flagged and warned
// about, and the text names every layer; without a whole model to time, the note says why.
func TestLatencyReport(t *testing.T) {
	var warned []string
	l := &Latency{
		opts: LatencyOptions{Target: 0.5, Gate: true}, batch: 4, threads: 1, provider: "cpu", multiple: 8,
		layers: []timedLayer{{name: "a", key: "ya", lt: flatTimes("a", 2, 1)}, {name: "dup", key: "y1", lt: flatTimes("dup", 4, 3)}, {name: "dup", key: "y2", lt: flatTimes("dup", 1, 0.5)}},
		note:   "whole models not timed: because", warn: func(s string) { warned = append(warned, s) },
		Table: &latency.Table{Measured: 2, Cached: 1}, refined: 3,
	}
	rep := &rewrite.Report{Layers: []rewrite.Layer{
		{Name: "a", Applied: true, InRank: 8, Rank: 8},
		{Name: "grouped"}, // not timed
		{Name: "dup"},
		{Name: "dup", Applied: true, Rank: 8},
	}}
	lr, err := l.Report(nil, rep)
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.Layers) != 3 || lr.Layers[0].AfterMs != 1 || lr.Layers[1].AfterMs != 4 || lr.Layers[2].AfterMs != 0.5 || lr.Layers[2].OriginalMs != 1 {
		t.Fatalf("layers %+v", lr.Layers)
	}
	if lr.LayersBefore != 7 || lr.LayersAfter != 5.5 || !lr.OutOfReach || len(warned) != 1 || !strings.Contains(warned[0], "--target-latency 0.5 is out of reach") {
		t.Errorf("before %g after %g out of reach %v, warned %q", lr.LayersBefore, lr.LayersAfter, lr.OutOfReach, warned)
	}
	if lr.Original != nil || lr.Note != l.note || lr.TablesMeasured != 2 || lr.TablesCached != 1 || lr.Refined != 3 || lr.Margin != DefaultLatencyMargin {
		t.Errorf("report %+v", lr)
	}
	var b strings.Builder
	PrintLatency(&b, lr)
	for _, want := range []string{"ms per batch of 4, 1 intra-op thread(s), provider cpu; layer tables at rank multiples of 8 (2 measured, 1 cached; 3 factorizations timed again)",
		"\na  ", "\ndup  ", "0.786 of the layers' time (target 0.5: out of reach)", "whole model: whole models not timed: because"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	if got := LatencyRule(LatencyOptions{Target: 0.5}); got != "no latency gate" {
		t.Errorf("rule %q", got)
	}
}

func TestInModelSaving(t *testing.T) {
	for _, tc := range []struct{ orig, after, inModel, want float64 }{
		{2, 1, 0, 1},       // not in the profile: the table's saving
		{2, 1, 1.5, 1},     // faster in the model (the table's overheads): the table's saving
		{2, 1, 2, 1},       // as in the table
		{2, 1, 3, 1.5},     // half again slower in the model: saves half again more
		{2, 2.5, 3, -0.75}, // a loss grows alike
		{0, 0, 1, 0},       // no time in the table
	} {
		if got := InModelSaving(tc.orig, tc.after, tc.inModel); got != tc.want {
			t.Errorf("InModelSaving(%g, %g, %g) = %g, want %g", tc.orig, tc.after, tc.inModel, got, tc.want)
		}
	}
}
