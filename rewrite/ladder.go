package rewrite

import "slices"

// ladder is the set of ranks that rounding and allocation may choose for one side of a layer
// of full channels: the small ranks (each below the multiple m), the multiples of m, and full.
// m <= 1 allows every rank.
type ladder struct {
	m     int
	small []int
}

func (o Options) ladder() ladder {
	m := max(o.RankMultiple, 1)
	var small []int
	for _, s := range o.SmallRanks {
		if s >= 1 && s < m && !slices.Contains(small, s) {
			small = append(small, s)
		}
	}
	slices.Sort(small)
	return ladder{m: m, small: small}
}

// up rounds r >= 1 up to the ladder, at most full.
func (l ladder) up(r, full int) int {
	for _, s := range l.small {
		if r <= s {
			return min(s, full)
		}
	}
	if r%l.m != 0 {
		r += l.m - r%l.m
	}
	return min(r, full)
}

// lower returns the highest rank of the ladder below r, or r when there is none.
func (l ladder) lower(r int) int {
	if r > l.m {
		if r%l.m != 0 {
			return r - r%l.m
		}
		return r - l.m
	}
	for i := len(l.small) - 1; i >= 0; i-- {
		if l.small[i] < r {
			return l.small[i]
		}
	}
	if l.m == 1 && r > 1 {
		return r - 1
	}
	return r
}

// higher returns the lowest rank of the ladder above r, at most full.
func (l ladder) higher(r, full int) int {
	for _, s := range l.small {
		if s > r {
			return min(s, full)
		}
	}
	return min(r-r%l.m+l.m, full)
}
