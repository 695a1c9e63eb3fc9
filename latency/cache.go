package latency

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/convpca/convpca/onnxio"
)

// CacheEnv is the environment variable that overrides DefaultCacheDir.
const CacheEnv = "CONVPCA_LATENCY_CACHE"

// cacheFormat versions the cache files; changing how layers are measured or stored changes it
// (an optional field that older readers ignore, such as LayerTimes.Refined, does not).
const cacheFormat = "convpca-latency/5"

// DefaultCacheDir is where measurements are cached: $CONVPCA_LATENCY_CACHE, else
// os.UserCacheDir()/convpca/latency (~/.cache/convpca/latency on Linux).
func DefaultCacheDir() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "convpca", "latency")
}

// cacheKey is everything a layer's times depend on. One file per key, named by its SHA-256, in
// the cache folder: other models with the same layer find it.
type cacheKey struct {
	Format     string `json:"format"`
	Layer      Layer  `json:"layer"`   // canonical (see canonical)
	Runtime    string `json:"runtime"` // Runner.Identity: library hash and provider used
	Threads    int    `json:"threads"`
	CPU        string `json:"cpu"`
	Multiple   int    `json:"multiple"`
	Small      []int  `json:"small,omitempty"`
	Levels     int    `json:"levels"`
	BothLevels int    `json:"both_levels"`
	Checks     int    `json:"checks"`
	Settle     int    `json:"settle,omitempty"`
	Burst      int    `json:"burst,omitempty"`
	Context    int    `json:"context,omitempty"`
}

func (o Options) key(l Layer, runtime string) cacheKey {
	return cacheKey{
		Format: cacheFormat, Layer: l.canonical(), Runtime: runtime, Threads: o.Runtime.Threads,
		CPU: o.CPU.String(), Multiple: o.Multiple, Small: SmallRanks(o.Multiple), Levels: o.Levels, BothLevels: o.BothLevels, Checks: o.Checks,
		Settle: o.Settle, Burst: o.Burst, Context: o.Context,
	}
}

// canonical writes a layer one way only: no name, default attributes omitted, batch >= 1.
func (l Layer) canonical() Layer {
	c := l
	c.Name = ""
	c.Batch = l.batch()
	all := func(v []int, x int) []int {
		for _, e := range v {
			if e != x {
				return slices.Clone(v)
			}
		}
		return nil
	}
	c.Strides, c.Dilations, c.Pads = all(l.Strides, 1), all(l.Dilations, 1), all(l.Pads, 0)
	switch l.AutoPad {
	case "NOTSET":
		c.AutoPad = ""
	case "SAME_UPPER", "SAME_LOWER", "VALID":
		c.Pads = nil // pads are ignored with auto_pad
	}
	c.Kernel, c.Input = slices.Clone(l.Kernel), slices.Clone(l.Input)
	return c
}

func (k cacheKey) file() string {
	data, err := json.Marshal(k)
	if err != nil {
		panic("latency: cache key: " + err.Error())
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:20]) + ".json"
}

// cacheEntry is a cache file: the key in full (a file whose key differs is ignored) and the times.
type cacheEntry struct {
	Key   cacheKey    `json:"key"`
	Times *LayerTimes `json:"times"`
}

// loadCache returns the cached times of key, or nil when there are none or the file is unusable
// (unreadable, corrupt, another key, implausible values: Options.Warn says so, and the layer is
// measured again and the file replaced).
func loadCache(o Options, key cacheKey) *LayerTimes {
	path := filepath.Join(o.CacheDir, key.file())
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		o.warn("latency cache: %v", err)
		return nil
	}
	var e cacheEntry
	if err := json.Unmarshal(data, &e); err != nil {
		o.warn("latency cache: ignoring %s: %v", path, err)
		return nil
	}
	if err := e.check(key); err != nil {
		o.warn("latency cache: ignoring %s: %v", path, err)
		return nil
	}
	return e.Times
}

// check verifies that an entry read from disk is for key and holds a usable table.
func (e cacheEntry) check(key cacheKey) error {
	want, _ := json.Marshal(key)
	got, _ := json.Marshal(e.Key)
	if !bytes.Equal(want, got) {
		return errors.New("written for another layer or setup")
	}
	lt := e.Times
	if lt == nil {
		return errors.New("no times")
	}
	if got, _ := json.Marshal(lt.Layer.canonical()); !bytes.Equal(got, mustJSON(key.Layer)) {
		return errors.New("times of another layer")
	}
	if lt.Multiple != key.Multiple || !slices.Equal(lt.Small, key.Small) {
		return fmt.Errorf("grid multiple %d and small ranks %v, want %d and %v", lt.Multiple, lt.Small, key.Multiple, key.Small)
	}
	ok := func(p Point) bool { return p.Ms > 0 && !math.IsInf(p.Ms, 0) && !math.IsNaN(p.Ms) }
	if !ok(lt.Original) || lt.Original.R != 0 || lt.Original.K != 0 {
		return errors.New("bad original time")
	}
	side := func(pts []Point, n int, rank func(Point) int, other func(Point) int) error {
		if len(pts) == 0 || rank(pts[len(pts)-1]) != n {
			return errors.New("incomplete rank grid")
		}
		for i, p := range pts {
			if !ok(p) || other(p) != 0 || rank(p) < 1 || i > 0 && rank(p) <= rank(pts[i-1]) {
				return fmt.Errorf("bad point %+v", p)
			}
		}
		return nil
	}
	r := func(p Point) int { return p.R }
	k := func(p Point) int { return p.K }
	if err := side(lt.Input, lt.Layer.In, r, k); err != nil {
		return fmt.Errorf("input side: %w", err)
	}
	if err := side(lt.Output, lt.Layer.Out, k, r); err != nil {
		return fmt.Errorf("output side: %w", err)
	}
	grid := func(v []int, n int) bool {
		if len(v) == 0 || v[0] < 1 || v[len(v)-1] != n {
			return false
		}
		for i := 1; i < len(v); i++ {
			if v[i] <= v[i-1] {
				return false
			}
		}
		return true
	}
	if !grid(lt.BothR, lt.Layer.In) || !grid(lt.BothK, lt.Layer.Out) || len(lt.Both) != len(lt.BothR)*len(lt.BothK) {
		return errors.New("bad two-sided grid")
	}
	for i, p := range lt.Both {
		if !ok(p) || p.R != lt.BothR[i/len(lt.BothK)] || p.K != lt.BothK[i%len(lt.BothK)] {
			return fmt.Errorf("bad two-sided point %+v", p)
		}
	}
	for i, p := range lt.Refined {
		r, k := lt.Round(p.R, p.K)
		if !ok(p) || !(p.Orig >= 0) || math.IsInf(p.Orig, 0) || p.R < 0 || p.K < 0 || r != p.R || k != p.K || r == 0 && k == 0 || i > 0 && !(lt.Refined[i-1].R < r || lt.Refined[i-1].R == r && lt.Refined[i-1].K < k) {
			return fmt.Errorf("bad refined point %+v", p)
		}
	}
	for _, c := range lt.Checks {
		for _, v := range []float64{c.Chain, c.Interp, c.Down, c.Core, c.Up} {
			if !(v > 0) || math.IsInf(v, 0) {
				return fmt.Errorf("bad check %+v", c)
			}
		}
	}
	return nil
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic("latency: " + err.Error())
	}
	return data
}

// saveCache writes the times of key atomically (a temporary file renamed over the entry), so
// that concurrent processes never read a partial file; the last writer wins.
func saveCache(o Options, key cacheKey, lt *LayerTimes) error {
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return err
	}
	stored := *lt
	stored.Cached = false
	data, err := json.MarshalIndent(cacheEntry{Key: key, Times: &stored}, "", " ")
	if err != nil {
		return err
	}
	return onnxio.WriteFileAtomic(filepath.Join(o.CacheDir, key.file()), func(w io.Writer) error {
		_, err := w.Write(append(data, '\n'))
		return err
	})
}
