package rewrite

import "testing"

// TestLadder: ranks round up and step between small ranks, multiples and full.
func TestLadder(t *testing.T) {
	for _, tc := range []struct {
		name              string
		opts              Options
		full              int
		up, lower, higher map[int]int
	}{
		{"free", Options{}, 10,
			map[int]int{1: 1, 7: 7, 10: 10},
			map[int]int{1: 1, 2: 1, 10: 9},
			map[int]int{1: 2, 9: 10, 10: 10}},
		{"multiple 16", Options{RankMultiple: 16}, 40,
			map[int]int{1: 16, 16: 16, 17: 32, 33: 40},
			map[int]int{16: 16, 32: 16, 40: 32},
			map[int]int{16: 32, 32: 40}},
		{"small 4 and 8", Options{RankMultiple: 16, SmallRanks: []int{8, 4, 16, 0}}, 40,
			map[int]int{1: 4, 4: 4, 5: 8, 8: 8, 9: 16, 33: 40},
			map[int]int{4: 4, 8: 4, 16: 8, 40: 32},
			map[int]int{4: 8, 8: 16, 16: 32, 32: 40}},
		{"full below the multiple", Options{RankMultiple: 16, SmallRanks: []int{4, 8}}, 10,
			map[int]int{5: 8, 9: 10, 10: 10},
			map[int]int{10: 8, 8: 4},
			map[int]int{8: 10, 4: 8}},
	} {
		l := tc.opts.ladder()
		for r, want := range tc.up {
			if got := l.up(r, tc.full); got != want {
				t.Errorf("%s: up(%d) = %d, want %d", tc.name, r, got, want)
			}
		}
		for r, want := range tc.lower {
			if got := l.lower(r); got != want {
				t.Errorf("%s: lower(%d) = %d, want %d", tc.name, r, got, want)
			}
		}
		for r, want := range tc.higher {
			if got := l.higher(r, tc.full); got != want {
				t.Errorf("%s: higher(%d) = %d, want %d", tc.name, r, got, want)
			}
		}
	}
}
