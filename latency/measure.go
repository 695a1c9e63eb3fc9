package latency

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/convpca/convpca/ort"
)

// Options say how Measure measures. The zero value measures on onnxruntime's CPU provider with
// its default threads, caches in DefaultCacheDir, and uses the defaults below.
type Options struct {
	// Runtime is the onnxruntime provider, intra-op threads and library of the default runner.
	Runtime ort.RuntimeOptions
	// Runner times the programs; nil means NewRunner(Runtime).
	Runner Runner
	// CPU is the processor for the cache key and the default Multiple; nil means HostCPU().
	CPU *CPU
	// Multiple is the rank grid's step; 0 means RankMultiple(CPU). The small ranks below it
	// (SmallRanks(Multiple)) are measured too, outside Levels.
	Multiple int
	// Levels is the most ranks measured per side for one-sided candidates (0: 6), BothLevels
	// per side of the two-sided grid (0: 4). Both shrink (to 2) where a layer's measurement would
	// not fit LayerBudget.
	Levels, BothLevels int
	// Checks is the number of ranks (r, k) per layer at which the chain is also timed off the
	// grid and as three one-node models (0: 2; negative: none).
	Checks int
	// WarmUp runs (0: 2) of each program come before the timed ones. MinRuns (0: 5) timed runs
	// of each come before the confidence interval may stop them, and MaxRuns (0: 200) stop
	// them anyway.
	WarmUp, MinRuns, MaxRuns int
	// Context is the NCHWc block of the context a 2-D Conv's programs are set in: an identity
	// depthwise 1x1 Conv before and after the layer, so that it meets onnxruntime's blocked
	// layout as it does in a model (see build's context). 0 means NCHWcBlock(CPU) where the
	// default runner runs on onnxruntime's CPU provider (ort.Resolve), else none; negative:
	// none.
	Context int
	// Settle is the number of untimed runs of a program right before each of its timed runs
	// (0: 1; negative: none).
	Settle int
	// Burst is the number of runs timed back to back at each turn of a program in a round
	// (after its Settle runs); their median is the turn's time, one sample of the program's
	// median (0: 3). Timed once per turn among other programs, runs of one MNIST layer at batch
	// 64 spread so wide (95% intervals of the median ±8-19% after 41 to 77 turns) that the
	// savings of its ranks were known to ±14%; back to back, the same programs' runs keep
	// within ±5% of their median.
	Burst int
	// RelTol is the width of a median's 95% confidence interval, relative to the median, at
	// which a program stops running (0: 0.05).
	RelTol float64
	// LayerBudget is the wall time after which a layer's rounds stop once every program ran
	// at least 3 times (0: 15 s). Most layers stop sooner, their intervals within RelTol; the
	// budget bounds the slow ones. 3 s was too little for PaddleOCR rec's pointwise layers at
	// batch 16 (15-25 ms a run, about 30 programs): 3 to 7 runs each, 95% intervals of the
	// median up to ±300%, so the latency gate found nothing measurably faster; with 15 s,
	// 1-7%.
	LayerBudget time.Duration
	// RefineBudget is the most wall time Refine spends on one candidate (0: LayerBudget / 3).
	RefineBudget time.Duration
	// CacheDir is the cache folder ("" means DefaultCacheDir()); NoCache neither reads nor
	// writes it.
	CacheDir string
	NoCache  bool
	// Progress, when not nil, is called after each layer is measured or read from the cache.
	Progress func(i int, lt *LayerTimes)
	// Warn, when not nil, receives warnings (a cache file ignored or not written).
	Warn func(msg string)
}

// hardMinRuns is the fewest timed runs of any program, whatever the budget.
const hardMinRuns = 3

// groupSize is the most sessions open at once for one layer (the original's included): each
// holds its weights and its own memory arena.
const groupSize = 16

func (o Options) withDefaults() Options {
	if o.CPU == nil {
		c := HostCPU()
		o.CPU = &c
	}
	if o.Multiple <= 0 {
		o.Multiple = RankMultiple(*o.CPU)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Levels, 6)
	def(&o.BothLevels, 4)
	def(&o.WarmUp, 2)
	def(&o.MinRuns, 5)
	def(&o.MaxRuns, 200)
	switch {
	case o.Settle == 0:
		o.Settle = 1
	case o.Settle < 0:
		o.Settle = 0
	}
	def(&o.Burst, 3)
	o.MinRuns = max(o.MinRuns, hardMinRuns)
	o.MaxRuns = max(o.MaxRuns, o.MinRuns)
	o.Levels, o.BothLevels = max(o.Levels, 2), max(o.BothLevels, 2)
	switch {
	case o.Checks == 0:
		o.Checks = 2
	case o.Checks < 0:
		o.Checks = 0
	}
	if o.RelTol <= 0 {
		o.RelTol = 0.05
	}
	if o.LayerBudget <= 0 {
		o.LayerBudget = 15 * time.Second
	}
	if o.RefineBudget <= 0 {
		o.RefineBudget = o.LayerBudget / 3
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if o.Runner == nil {
		o.Runner = NewRunner(o.Runtime)
	}
	return o
}

// context returns the NCHWc block Measure sets 2-D Convs' programs in (see Options.Context),
// cpu being the processor of the default runner; o as the caller gave it.
func (o Options) context(cpu CPU) int {
	switch {
	case o.Context < 0:
		return 0
	case o.Context > 0:
		return o.Context
	case o.Runner != nil:
		return 0
	}
	if p, err := ort.Resolve(o.Runtime); err == nil && p == ort.CPU {
		return NCHWcBlock(cpu)
	}
	return 0
}

func (o Options) warn(format string, a ...any) {
	if o.Warn != nil {
		o.Warn(fmt.Sprintf(format, a...))
	}
}

// Measure returns the time table of the layers: each is read from the cache when it was
// measured before with the same options and environment (see Options, cacheKey), else
// measured in onnxruntime and cached. The same layer given twice is measured once.
func Measure(layers []Layer, opts Options) (*Table, error) {
	for _, l := range layers {
		if err := l.Check(); err != nil {
			return nil, err
		}
	}
	o := opts.withDefaults()
	t := &Table{}
	if len(layers) == 0 {
		return t, nil
	}
	o.Context = opts.context(*o.CPU)
	ident, err := o.Runner.Identity()
	if err != nil {
		return nil, err
	}
	m := &meter{o: o, rng: rand.New(rand.NewPCG(1, 2))}
	done := map[string]*LayerTimes{}
	for i, l := range layers {
		key := o.key(l, ident)
		file := key.file()
		lt := done[file]
		if lt == nil && !o.NoCache {
			if lt = loadCache(o, key); lt != nil {
				lt.Cached = true
				t.Cached++
			}
		}
		if lt == nil {
			if lt, err = m.measureLayer(l); err != nil {
				return nil, fmt.Errorf("measure %s: %w", l.label(), err)
			}
			t.Measured++
			if !o.NoCache {
				if err := saveCache(o, key, lt); err != nil {
					o.warn("latency cache not written: %v", err)
				}
			}
		}
		c := *lt
		c.Layer.Name = l.Name
		c.Repeated = done[file] != nil
		done[file] = lt
		t.Layers = append(t.Layers, &c)
		if o.Progress != nil {
			o.Progress(i, &c)
		}
	}
	t.Runs = m.runs
	return t, nil
}

// MeasureProgram times one program (a whole model, say) as Measure times a layer's original:
// warm-up runs, then timed runs until the median's confidence interval is within RelTol, or
// LayerBudget or MaxRuns is spent. Nothing is cached.
func MeasureProgram(p Program, opts Options) (Point, error) {
	m := &meter{o: opts.withDefaults(), rng: rand.New(rand.NewPCG(1, 2))}
	ref, err := m.openWarm(p)
	if err != nil {
		return Point{}, err
	}
	defer ref.timer.Close()
	pt, _, err := m.rounds(ref, nil, time.Now().Add(m.o.LayerBudget))
	return pt, err
}

// meter runs programs and keeps count.
type meter struct {
	o    Options
	rng  *rand.Rand
	runs int
}

// track is one opened program and its timings.
type track struct {
	name   string
	timer  Timer
	ms     []float64 // the reference's timed turns, milliseconds
	ratios []float64 // a candidate's turns over the reference's turns beside them
	done   bool
}

func (m *meter) open(p Program) (*track, error) {
	t, err := m.o.Runner.Open(p)
	if err != nil {
		return nil, err
	}
	return &track{name: p.Name, timer: t}, nil
}

func (m *meter) run(t *track) (float64, error) {
	m.runs++
	d, err := t.timer.Run()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", t.name, err)
	}
	return float64(d.Nanoseconds()) / 1e6, nil
}

// burst times Burst runs of a program back to back and returns their median.
func (m *meter) burst(t *track) (float64, error) {
	ms := make([]float64, m.o.Burst)
	for i := range ms {
		var err error
		if ms[i], err = m.run(t); err != nil {
			return 0, err
		}
	}
	return Median(ms), nil
}

// openWarm opens a program and warms it up; the caller closes its timer.
func (m *meter) openWarm(p Program) (*track, error) {
	t, err := m.open(p)
	if err != nil {
		return nil, err
	}
	if err := m.warm(t); err != nil {
		t.timer.Close()
		return nil, err
	}
	return t, nil
}

// warm runs a program WarmUp times untimed (its first runs allocate and are slow).
func (m *meter) warm(t *track) error {
	for range m.o.WarmUp {
		if _, err := m.run(t); err != nil {
			return err
		}
	}
	return nil
}

// rounds times the reference ref (open and warm) and the candidates: they are opened in groups
// of at most groupSize-1, each warmed up, then run in rounds, in random order, each turn of a
// candidate right beside a turn of ref (which of the two first, at random), until every
// candidate is done (see Options) or, past deadline, every one had hardMinRuns turns. A
// candidate's time is the median of its turns' ratios to ref's turns beside them, times the
// median of all of ref's turns: the machine getting slower or faster (other processes, clock
// frequency, other tenants of a virtual machine) shifts both sides of a pair alike, so the
// ratios hold where the turns themselves drift between rounds and groups.
func (m *meter) rounds(ref *track, cands []Program, deadline time.Time) (Point, []Point, error) {
	tracks, err := m.pairs(ref, cands, deadline)
	if err != nil {
		return Point{}, nil, err
	}
	all := Median(ref.ms)
	pts := make([]Point, len(cands))
	for i, t := range tracks {
		pts[i] = Point{Ms: Median(t.ratios) * all, RelCI: relCI(t.ratios, 0.5), Runs: len(t.ratios)}
	}
	return ref.point(), pts, nil
}

// pairs runs the rounds of rounds and returns the candidates' tracks (closed) with their
// ratios to ref's turns beside them.
func (m *meter) pairs(ref *track, cands []Program, deadline time.Time) ([]*track, error) {
	tracks := make([]*track, len(cands))
	for g := 0; g == 0 || g < len(cands); g += groupSize - 1 {
		group := tracks[g:min(g+groupSize-1, len(cands))]
		err := m.group(ref, cands[g:g+len(group)], group, g, len(cands), deadline)
		for _, t := range group {
			if t != nil {
				t.timer.Close()
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return tracks, nil
}

func (t *track) point() Point {
	return Point{Ms: Median(t.ms), RelCI: relCI(t.ms, 0.5), Runs: len(t.ms)}
}

// group runs one group of candidates (progs, opened into tracks) beside ref; first is the
// index of the group's first candidate among total.
func (m *meter) group(ref *track, progs []Program, tracks []*track, first, total int, deadline time.Time) error {
	for i, p := range progs {
		t, err := m.openWarm(p)
		if err != nil {
			return err
		}
		tracks[i] = t
	}
	// The reference sat idle while the group's programs were opened and warmed: warm it again
	// (one rec table at batch 16, measured before turns were paired, had every program of its
	// last group read 3x too fast).
	if first > 0 {
		if err := m.warm(ref); err != nil {
			return err
		}
	}
	// This group's share of the time left.
	stop := deadline
	if left := time.Until(deadline); left > 0 && total > 0 {
		stop = time.Now().Add(left * time.Duration(len(progs)) / time.Duration(total-first))
	}
	o := m.o
	finished := func(xs []float64) bool {
		n := len(xs)
		return n >= o.MaxRuns || n >= o.MinRuns && relCI(xs, 0.5) <= o.RelTol
	}
	turn := func(t *track) (float64, error) {
		for range m.o.Settle {
			if _, err := m.run(t); err != nil {
				return 0, err
			}
		}
		return m.burst(t)
	}
	for {
		var active []*track
		for _, t := range tracks {
			if !t.done {
				active = append(active, t)
			}
		}
		if len(tracks) > 0 && len(active) == 0 || len(tracks) == 0 && ref.done {
			return nil
		}
		if len(tracks) == 0 { // the reference alone (MeasureProgram)
			ms, err := turn(ref)
			if err != nil {
				return err
			}
			ref.ms = append(ref.ms, ms)
			ref.done = finished(ref.ms)
		}
		m.rng.Shuffle(len(active), func(i, j int) { active[i], active[j] = active[j], active[i] })
		for _, t := range active {
			pair := [2]*track{ref, t}
			if m.rng.IntN(2) == 1 {
				pair[0], pair[1] = t, ref
			}
			var ms [2]float64
			for i, p := range pair {
				var err error
				if ms[i], err = turn(p); err != nil {
					return err
				}
			}
			r, c := ms[0], ms[1]
			if pair[0] == t {
				r, c = c, r
			}
			ref.ms = append(ref.ms, r)
			t.ratios = append(t.ratios, c/r)
			t.done = finished(t.ratios)
		}
		if time.Now().After(stop) {
			all := len(ref.ms) >= hardMinRuns
			for _, t := range tracks {
				all = all && len(t.ratios) >= hardMinRuns
			}
			if all {
				return nil
			}
		}
	}
}

// quantile returns the q-quantile of xs (not modified), interpolated between order statistics
// (q = 0.5: the median); NaN when xs is empty.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	h := float64(len(s)-1) * q
	i := int(math.Floor(h))
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (h-float64(i))*(s[i+1]-s[i])
}

// Median returns the median of xs (not modified): the middle value, or the mean of the two
// middle ones; NaN when xs is empty.
func Median(xs []float64) float64 { return quantile(xs, 0.5) }

// P90 returns the 90th percentile of xs (not modified) by nearest rank: the smallest value
// that at least 90% of xs do not exceed; NaN when xs is empty.
func P90(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[int(math.Ceil(0.9*float64(len(s))))-1]
}

// relCI is the width of the distribution-free 95% confidence interval of the q-quantile of xs
// (between the order statistics of ranks n·q ∓ 1.96·√(n·q·(1-q)), 1-based, the upper one plus
// 1), relative to the quantile; +Inf with fewer than 3 values.
func relCI(xs []float64, q float64) float64 {
	n := len(xs)
	if n < hardMinRuns {
		return math.Inf(1)
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	nq := float64(n) * q
	h := 1.96 * math.Sqrt(nq*(1-q))
	lo := max(int(math.Floor(nq-h)), 1)
	hi := min(int(math.Ceil(1+nq+h)), n)
	v := quantile(s, q)
	if v == 0 {
		return math.Inf(1)
	}
	return (s[hi-1] - s[lo-1]) / math.Abs(v)
}

// measureLayer measures one layer: the original, the grid of candidates and the checks.
func (m *meter) measureLayer(l Layer) (*LayerTimes, error) {
	start := time.Now()
	o := m.o
	orig, err := build(l, spec{}, nil, m.o.Context)
	if err != nil {
		return nil, err
	}
	ref, err := m.openWarm(orig)
	if err != nil {
		return nil, err
	}
	defer ref.timer.Close()
	// Opening and warming the original, and one timed run of it, size the grid to the budget.
	setup := time.Since(start)
	t0, err := m.run(ref)
	if err != nil {
		return nil, err
	}
	ref.ms = append(ref.ms, t0)
	var p plan
	for lv, blv := o.Levels, o.BothLevels; ; {
		p = newPlan(l, o.Multiple, lv, blv, o.Checks)
		if p.cost(l, setup, t0, o) <= o.LayerBudget || lv <= 2 && blv <= 2 {
			break
		}
		if blv > 2 {
			blv--
		} else {
			lv--
		}
	}
	progs := make([]Program, len(p.specs))
	for i, s := range p.specs {
		if progs[i], err = build(l, s, nil, m.o.Context); err != nil {
			return nil, err
		}
	}
	refPt, pts, err := m.rounds(ref, progs, start.Add(o.LayerBudget))
	if err != nil {
		return nil, err
	}
	at := map[spec]Point{{}: refPt}
	for i, s := range p.specs {
		pt := pts[i]
		pt.R, pt.K = s.R, s.K
		at[s] = pt
	}
	lt := &LayerTimes{Layer: l, Multiple: o.Multiple, Small: SmallRanks(o.Multiple), Original: refPt, BothR: p.bothR, BothK: p.bothK}
	lt.Layer.Batch = l.batch()
	for _, r := range p.inR {
		lt.Input = append(lt.Input, at[spec{chain, r, 0}])
	}
	for _, k := range p.outK {
		lt.Output = append(lt.Output, at[spec{chain, 0, k}])
	}
	for _, r := range p.bothR {
		for _, k := range p.bothK {
			lt.Both = append(lt.Both, at[spec{chain, r, k}])
		}
	}
	for _, c := range p.checks {
		lt.Checks = append(lt.Checks, Check{
			R: c[0], K: c[1], Chain: at[spec{chain, c[0], c[1]}].Ms, Interp: lt.Time(c[0], c[1]),
			Down: at[spec{down, c[0], 0}].Ms, Core: at[spec{core, c[0], c[1]}].Ms, Up: at[spec{up, 0, c[1]}].Ms,
		})
	}
	lt.Seconds = time.Since(start).Seconds()
	return lt, nil
}

// plan is what measureLayer times for one layer: every spec once (the original excepted).
type plan struct {
	inR, outK, bothR, bothK []int
	checks                  [][2]int
	specs                   []spec
}

func newPlan(l Layer, mult, levels, bothLevels, checks int) plan {
	p := plan{
		inR: ladderRanks(l.In, mult, levels), outK: ladderRanks(l.Out, mult, levels),
		bothR: ladderRanks(l.In, mult, bothLevels), bothK: ladderRanks(l.Out, mult, bothLevels),
	}
	seen := map[spec]bool{{}: true}
	add := func(s spec) {
		if !seen[s] {
			seen[s] = true
			p.specs = append(p.specs, s)
		}
	}
	for _, r := range p.inR {
		add(spec{chain, r, 0})
	}
	for _, k := range p.outK {
		add(spec{chain, 0, k})
	}
	for _, r := range p.bothR {
		for _, k := range p.bothK {
			add(spec{chain, r, k})
		}
	}
	for i := range checks {
		f := float64(i+1) / float64(checks+1)
		c := [2]int{checkRank(l.In, mult, f, p.bothR), checkRank(l.Out, mult, f, p.bothK)}
		if slices.Contains(p.checks, c) {
			continue
		}
		p.checks = append(p.checks, c)
		add(spec{chain, c[0], c[1]})
		add(spec{down, c[0], 0})
		add(spec{core, c[0], c[1]})
		add(spec{up, 0, c[1]})
	}
	return p
}

// checkRank returns a multiple of mult (or n) at about the fraction f of the way from mult to n
// in log scale, the nearest one off the grid when there is one below n.
func checkRank(n, mult int, f float64, grid []int) int {
	if n <= mult {
		return n
	}
	target := float64(mult) * math.Pow(float64(n)/float64(mult), f)
	r := min(max(int(math.Round(target/float64(mult)))*mult, mult), n)
	if !slices.Contains(grid, r) {
		return r
	}
	for d := mult; d < n; d += mult {
		for _, c := range []int{r - d, r + d} {
			if c >= mult && c < n && !slices.Contains(grid, c) {
				return c
			}
		}
	}
	return r
}

// cost estimates the wall time of measuring a plan: setup is what opening and warming up the
// original took, and each program is assumed to take as long to set up and its runs t0 (the
// original's) scaled by its multiply-adds, plus 20 µs.
func (p plan) cost(l Layer, setup time.Duration, t0 float64, o Options) time.Duration {
	orig := float64(l.MACs(0, 0))
	var ms float64
	for _, s := range p.specs {
		ms += t0*float64(s.macs(l))/orig + 0.02 + t0 // and a turn of the original beside it
	}
	groups := (len(p.specs) + groupSize - 2) / (groupSize - 1)
	ms += float64(groups) * t0
	ms *= float64(o.MinRuns * (o.Settle + o.Burst))
	return time.Duration(ms*float64(time.Millisecond)) + time.Duration(len(p.specs))*setup
}
