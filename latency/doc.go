// Package latency measures what each compressible layer of a model costs in time on this
// machine, and what each candidate factorization of it would cost, so that ranks can be
// allocated for latency rather than for multiply-adds.
//
// A Layer is a Conv (group 1, any spatial rank, strides, pads, dilations, auto_pad, with or
// without bias) or a Gemm / MatMul by a constant K x N weight on inputs of any rank (..., K),
// which is a 1x1 Conv over the leading positions (FromNode describes a model's node). Its
// candidates are the factorizations of package rewrite, with input rank r and output rank k
// (0: that side untouched):
//
//	input side only  (r, 0): 1x1 down (in -> r), core (r -> out)
//	output side only (0, k): core (in -> k), 1x1 up (k -> out)
//	both             (r, k): 1x1 down (in -> r), core (r -> k), 1x1 up (k -> out)
//
// Measure builds each candidate as a tiny ONNX model of that layer alone (random weights: the
// time of a dense float kernel does not depend on the values), times it warm in onnxruntime on
// a random input of the layer's shape and batch, and stores the medians in a Table. Ranks are
// measured on a grid: multiples of Options.Multiple (by default RankMultiple of this CPU, the
// width MLAS computes channels in) up to the channel count, at most Options.Levels of them per
// side for one-sided candidates and Options.BothLevels per side for two-sided ones, spread
// evenly in log scale; Table.Time interpolates between them (linearly in r, or bilinearly in r
// and k), which is exact for times of the form a + b·r + c·k + d·r·k, the form of the
// candidates' multiply-adds. Below the multiple, the small ranks (SmallRanks: a quarter and a
// half of it) are always measured too: MLAS runs a Conv whose input is narrower than one block on
// another kernel, so times there follow no line (on MNIST's /2/Conv, rank 4 was faster than 16
// and 8 slower), and no time is interpolated across the multiple. Where a layer's measurement would not fit Options.LayerBudget, its
// grid shrinks (to 2 ranks per side).
//
// Each candidate is measured as one model, as it runs in the compressed model: its nodes share
// one session run, and onnxruntime keeps the tensors between them in its blocked NCHWc layout.
// The decomposition time(r, k) ≈ t_down(r) + t_core(r, k) + t_up(k) of one-node models is not
// used: each one-node model pays its own run overhead and layout conversions at its input and
// output, and on the bundled MNIST model and a ResNet-18 the sum overestimated the chain by a
// median 59% and 28%. On a few ranks per layer (Options.Checks) Measure still times the three
// nodes alone and the chain off the grid, and reports in Check how far the sum and the grid's
// interpolation are from the measured chain.
//
// In a model, a layer's neighbours (Convs, pools, activations fused into them) mostly hand it
// its input, and take its output, in onnxruntime's blocked NCHWc layout, and onnxruntime
// converts layouts only where a node computing in one meets a node computing in the other;
// alone, every program would start and end with such conversions. So where Options.Context
// is set (by default on the CPU provider with AVX: NCHWcBlock), a 2-D Conv's programs are
// timed with an identity depthwise 1x1 Conv in front where the layer's input comes blocked in
// the model (Layer.BlockedIn) and one behind where its output is taken blocked (BlockedOut),
// as FromNode reads them from the graph. Without them, on the bundled MNIST model at batch 64,
// what the chosen ranks save was overstated by 9-12% and the compressed model's predicted
// latency was 18-26% optimistic; with them (and bursts, below), within 8% either way.
//
// A layer timed alone, run after run, also keeps its weights in the processor's caches, which
// in a model the other layers take between its runs. Where Layer.Sweep is set (compress and
// bench layers set it to Pressure's answer: where the layer's weights exceed a core's own
// cache, half again the largest cache), each run of the layer's programs is preceded, untimed,
// by a read of that many bytes and then of the program's input (see pressure.go).
//
// Where the machine does not list its caches in sysfs (a Firecracker virtual machine does
// not), CacheSizes asks the processor (CPUID), and Pressure sweeps at most 1.5x MaxSweptCache.
//
// Profile runs a whole model with onnxruntime's profiling on and returns each node's median
// time in it (NodeTimes, found for a layer by NodeTimes.Of under the names onnxruntime gives
// what it rewrites): what the layer really costs in the model, to set against its table.
//
// The same overheads are in every candidate of a layer and in its original (same input and
// output, same context): differences between them (what a rank saves) are sound, but the sum of the layers'
// times overestimates the whole model (1.1x to 1.9x on MNIST at batch 64 across runs on a busy
// 2-core machine, 1.23x on a ResNet-18), although the other operators are left out. Predict a
// compressed model's latency as the measured original model's minus the layers' savings.
// MeasureTogether times whole models side by side (ModelProgram), as convpca compress does to
// set the predicted and the measured latency of a compression beside each other, and
// LayerTimes.Noise is how precisely a candidate's saving is known: the latency gate (package
// compress, rewrite.Options.TimeNoise) applies a factorization only where it saves more.
//
// Timing: all programs of a layer (in groups of at most groupSize sessions, the original in
// every group, warmed again as each group starts) run in rounds, in a new random order each
// round, after Options.WarmUp runs each; each turn of a candidate sits right beside a turn of
// the original (which first, at random), and a candidate's time is the median of its turns'
// ratios to the original's turns beside them, times the median of all of the original's
// turns, so that the machine getting slower or faster (other processes, clock frequency, other
// tenants of a virtual machine) shifts both sides of a ratio alike. Each turn is Options.Settle
// untimed runs, so that a program finds the caches as a model running over and over leaves
// them, not as the previous program did (timed straight after other programs, a compressed
// MNIST model at batch 64 measured 2.27x faster than the original; after one settling run
// 2.52x, after three 2.80x, and 3.2x run on its own), then Options.Burst runs timed back to
// back, whose median is the turn's time (timed once per turn, the runs of an MNIST layer
// spread ±8-19% around their median after 41 to 77 turns; back to back, within ±5%). On
// MNIST, three fresh sets of paired tables predicted the compressed model 7-12% optimistic;
// unpaired, three sets gave 1-8%, 14% and 27%. Rounds stop once every candidate's ratios have
// a 95% distribution-free confidence interval of their median within Options.RelTol of it, or
// after Options.LayerBudget (each program having had at least hardMinRuns turns), or at
// Options.MaxRuns. With one intra-op thread a run is timed by the CPU time of the thread that
// runs it (onnxruntime computes on the caller's thread), which leaves out the time the system
// gives to other processes; else by the wall clock.
//
// Refine times a few candidates again, each beside its original for longer and in several
// sessions (the candidates an allocation chose: chosen as the fastest of a noisy table, they
// are more often than not those its noise favoured), and keeps the refined points in the table
// (LayerTimes.Refined), where Time and Noise take them before the grid. A session's luck is
// not in its own interval: timed again in six sessions, one MNIST candidate ran at 0.51 to 0.63
// of its original, each session claiming ±2.5-4%; the median over sessions is taken. The
// original's times in those sessions set the layer's level (LayerTimes.Level, which every Time
// of the layer scales with): a table's original comes from one session in one quarter minute,
// and MNIST's largest layer measured 5.0 to 6.3 ms across eleven tables.
//
// Results are cached on disk (DefaultCacheDir, one JSON file per layer and setup, refined
// points included): the table of a layer measured once with the same shapes, attributes,
// batch, onnxruntime library, provider, threads, CPU and grid is never measured again,
// whichever model it comes from, and a candidate refined once is not timed again.
//
// Units: every time is in milliseconds per run of one batch (Layer.Batch samples).
package latency
