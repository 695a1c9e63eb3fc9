package compress

import "testing"

// TestSearch bisects against a known threshold: targets >= 0.237 pass.
func TestSearch(t *testing.T) {
	calls := 0
	probes, best, err := Search(0.05, 8, func(target float64) (Probe, error) {
		calls++
		return Probe{OK: target >= 0.237}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != len(probes) || calls > 8 {
		t.Fatalf("%d calls, %d probes", calls, len(probes))
	}
	if best < 0 {
		t.Fatalf("no probe passed; probes %+v", probes)
	}
	if probes[best].Target < 0.237 || probes[best].Target > 0.237*1.1 {
		t.Fatalf("best probe %+v, want a target just above 0.237; probes %+v", probes[best], probes)
	}
	for _, p := range probes {
		if p.OK && p.Target < probes[best].Target {
			t.Errorf("a smaller passing probe %v than the best %v", p.Target, probes[best].Target)
		}
	}
	// When lo passes, one probe suffices.
	probes, best, _ = Search(0.05, 8, func(float64) (Probe, error) { return Probe{OK: true}, nil })
	if len(probes) != 1 || best != 0 {
		t.Errorf("lo passing: %d probes, best %d", len(probes), best)
	}
}
