package calib

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/convpca/convpca/dataset"
)

// randomResult returns the statistics of samples random activations of two tensors, one of
// shape samples x 3 x 4 x 5 and one of shape samples x 2, fed in batches of batch.
func randomResult(rng *rand.Rand, samples int) (*Result, [][]float32, [][]float32) {
	res := &Result{Samples: samples, Stats: map[string]*Stats{}, Shapes: map[string][]int64{
		"conv": {3, 4, 5}, "fc": {2},
	}}
	res.Stats["conv"], res.Stats["fc"] = NewStats(3), NewStats(2)
	var a, b [][]float32
	for range samples {
		x := make([]float32, 3*4*5)
		for i := range x {
			x[i] = float32(rng.NormFloat64()*2 + 1)
		}
		y := []float32{float32(rng.NormFloat64()), float32(rng.Float64())}
		a, b = append(a, x), append(b, y)
	}
	return res, a, b
}

// addSamples adds samples [lo, hi) of a and b to res, in batches of up to 3.
func addSamples(res *Result, a, b [][]float32, lo, hi int) {
	for i := lo; i < hi; i += 3 {
		j := min(hi, i+3)
		res.Stats["conv"].AddNCHW(slices.Concat(a[i:j]...), j-i, 3, 20)
		res.Stats["fc"].AddNCHW(slices.Concat(b[i:j]...), j-i, 2, 1)
	}
}

const testHash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// shardFiles returns the statistics of 10 random samples in one file and in n shard files.
func shardFiles(t testing.TB, n int) (*StatsFile, []*StatsFile) {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	const samples = 10
	whole, a, b := randomResult(rng, samples)
	addSamples(whole, a, b, 0, samples)
	var shards []*StatsFile
	for i := range n {
		start, count := dataset.ShardRange(samples, i, n)
		res := &Result{Samples: count, Stats: map[string]*Stats{}, Shapes: map[string][]int64{}}
		if count > 0 {
			res.Stats["conv"], res.Stats["fc"] = NewStats(3), NewStats(2)
			res.Shapes["conv"], res.Shapes["fc"] = []int64{3, 4, 5}, []int64{2}
			addSamples(res, a, b, start, start+count)
		}
		shards = append(shards, &StatsFile{Version: StatsVersion, ModelHash: testHash, Shard: i, Shards: n, ShardsSeen: []int{i}, ShardCount: n, Result: res})
	}
	return &StatsFile{Version: StatsVersion, ModelHash: testHash, Result: whole}, shards
}

func TestStatsFileRoundTrip(t *testing.T) {
	whole, shards := shardFiles(t, 3)
	dir := t.TempDir()
	for k, f := range append([]*StatsFile{whole}, shards...) {
		path := filepath.Join(dir, "s.cps")
		if err := WriteStats(path, f); err != nil {
			t.Fatal(err)
		}
		got, err := ReadStats(path)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != f.Version || got.ModelHash != f.ModelHash || got.Shard != f.Shard || got.Shards != f.Shards ||
			!slices.Equal(got.ShardsSeen, f.ShardsSeen) || got.ShardCount != f.ShardCount || got.Result.Samples != f.Result.Samples {
			t.Errorf("file %d: read %+v, wrote %+v", k, got, f)
		}
		for name, s := range f.Result.Stats {
			g := got.Result.Stats[name]
			if g == nil || g.Dim != s.Dim || g.Count != s.Count || !slices.Equal(g.Sum, s.Sum) || !slices.Equal(g.Outer, s.Outer) ||
				!slices.Equal(got.Result.Shapes[name], f.Result.Shapes[name]) {
				t.Errorf("file %d: tensor %s read back as %+v, wrote %+v", k, name, g, s)
			}
		}
		// The documented size: header 26, trailer 32, hash, shards, samples and per tensor
		// 8·(C(C+1)/2 + C) + 20 + 8·rank + len(name).
		want := int64(26 + 32 + 4 + len(testHash) + 16 + 4*len(f.ShardsSeen) + 8 + 4)
		if f.Result.Samples > 0 {
			want += 8*(6+3) + 20 + 8*3 + 4 // conv: C=3, rank 3
			want += 8*(3+2) + 20 + 8*1 + 2 // fc: C=2, rank 1
		}
		if st, err := os.Stat(path); err != nil || st.Size() != want {
			t.Errorf("file %d: size %v, want %d (%v)", k, st.Size(), want, err)
		}
	}
}

// encode returns the bytes of f as WriteStats writes them.
func encode(t testing.TB, f *StatsFile) []byte {
	t.Helper()
	size, err := checkStatsFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := encodeStats(&b, f, size); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// reseal returns b with its body length and checksum recomputed, as if written so.
func reseal(b []byte) []byte {
	out := slices.Clone(b[:len(b)-statsTrailerLen])
	if len(out) >= statsHeaderLen {
		binary.LittleEndian.PutUint64(out[len(statsMagic)+4:], uint64(len(out)-statsHeaderLen))
	}
	sum := sha256.Sum256(out)
	return append(out, sum[:]...)
}

func TestReadStatsErrors(t *testing.T) {
	whole, _ := shardFiles(t, 1)
	good := encode(t, whole)
	flip := func(i int) []byte { b := slices.Clone(good); b[i] ^= 0x10; return b }
	set := func(off int, v uint32, b []byte) []byte {
		b = slices.Clone(b)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	body := statsHeaderLen
	// Offsets in the body: hash (4+64), 4 shard fields, samples, tensor count, then "conv"
	// (4+4), rank (4), dims (3·8), Dim (4).
	dimAt := body + 4 + 64 + 16 + 8 + 4 + 8 + 4 + 24
	tests := []struct {
		name string
		data []byte
		want string
		is   error
	}{
		{"empty", nil, "not a convpca statistics file", ErrNotStatsFile},
		{"wrong magic", append([]byte("CONVPCA-STATZ\n"), good[14:]...), "not a convpca statistics file", ErrNotStatsFile},
		{"an npy file", []byte("\x93NUMPY\x01\x00v\x00{'descr': '<f4'}"), "not a convpca statistics file", ErrNotStatsFile},
		{"version 2", set(len(statsMagic), 2, good), "unsupported statistics file version 2 (this convpca reads version 1)", ErrStatsVersion},
		{"version 2 resealed", reseal(set(len(statsMagic), 2, good)), "unsupported statistics file version 2", ErrStatsVersion},
		{"flipped body byte", flip(len(good) / 2), "corrupt statistics file: checksum mismatch", ErrStatsCorrupt},
		{"flipped hash byte", flip(body + 10), "checksum mismatch", ErrStatsCorrupt},
		{"flipped checksum byte", flip(len(good) - 1), "checksum mismatch", ErrStatsCorrupt},
		{"longer body length", flip(len(statsMagic) + 4 + 5), "truncated: the header declares a body of", ErrStatsCorrupt},
		{"shorter body length", flip(len(statsMagic) + 4), "16 bytes after the checksum", ErrStatsCorrupt},
		{"truncated in magic", good[:5], "truncated: the file ends within the header", ErrStatsCorrupt},
		{"truncated in header", good[:20], "truncated: the file ends within the header", ErrStatsCorrupt},
		{"truncated in body", good[:len(good)/2], "truncated: the header declares a body of", ErrStatsCorrupt},
		{"truncated checksum", good[:len(good)-1], "truncated", ErrStatsCorrupt},
		{"trailing bytes", append(slices.Clone(good), 0), "1 bytes after the checksum", ErrStatsCorrupt},
		{"absurd dimension", reseal(set(dimAt, 1<<31, good)), `tensor "conv" statistics of dimension 2147483648: 2305843012434919424 entries do not fit in the 142 bytes left`, ErrStatsCorrupt},
		{"absurd tensor count", reseal(set(body+4+64+16+8, 1<<30, good)), "tensor list: 1073741824 entries do not fit", ErrStatsCorrupt},
		{"absurd name", reseal(set(body+4+64+16+8+4, 1<<30, good)), "tensor name: 1073741824 entries do not fit", ErrStatsCorrupt},
		{"absurd hash", reseal(set(body, 1<<31, good)), "model hash: 2147483648 entries do not fit", ErrStatsCorrupt},
		{"bad dimension", reseal(set(dimAt, 2, good)), `tensor "conv": shape [3 4 5] does not start with its 2 channels`, ErrStatsCorrupt},
		{"bad shard", reseal(set(body+4+64, 5, good)), "shard 5 of no shards", ErrStatsCorrupt},
		{"short body", reseal(good[:len(good)-100]), "9 entries do not fit in the 42 bytes left", ErrStatsCorrupt},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".cps")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadStats(path)
			if err == nil {
				t.Fatal("read without error")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) || !errors.Is(err, tt.is) {
				t.Errorf("error %q; want it to name the file, contain %q and be %v", err, tt.want, tt.is)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has several lines: %q", err)
			}
		})
	}
	if _, err := ReadStats(filepath.Join(dir, "none.cps")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestMergeStats(t *testing.T) {
	whole, shards := shardFiles(t, 4)
	merged, err := MergeStats(shards[2], shards[0], shards[3], shards[1])
	if err != nil {
		t.Fatal(err)
	}
	if merged.Shard != 0 || merged.Shards != 0 || merged.ShardCount != 4 || !slices.Equal(merged.ShardsSeen, []int{0, 1, 2, 3}) || missingCount(merged) != 0 {
		t.Errorf("merged shards: %d/%d, seen %v of %d, missing %d", merged.Shard, merged.Shards, merged.ShardsSeen, merged.ShardCount, missingCount(merged))
	}
	if merged.Result.Samples != 10 || merged.ModelHash != testHash {
		t.Errorf("merged %d samples of %q", merged.Result.Samples, merged.ModelHash)
	}
	for name, s := range whole.Result.Stats {
		m := merged.Result.Stats[name]
		if m.Count != s.Count {
			t.Errorf("%s: count %d, want %d", name, m.Count, s.Count)
		}
		for i := range s.Outer {
			if math.Abs(m.Outer[i]-s.Outer[i]) > 1e-12*math.Max(1, math.Abs(s.Outer[i])) {
				t.Errorf("%s: outer[%d] %v, want %v", name, i, m.Outer[i], s.Outer[i])
			}
		}
	}
	if shards[0].Result.Stats["conv"].Count != 60 {
		t.Errorf("MergeStats changed its input: count %d", shards[0].Result.Stats["conv"].Count)
	}
	part, err := MergeStats(shards[1], shards[3])
	if n, first := part.Missing(); err != nil || n != 2 || !slices.Equal(first, []int{0, 2}) {
		t.Errorf("partial merge: missing %d %v, %v", n, first, err)
	}
	// Merging in stages gives the whole.
	if all, err := MergeStats(part, shards[0], shards[2]); err != nil || missingCount(all) != 0 || all.Result.Samples != 10 {
		t.Errorf("staged merge: %v", err)
	}

	// More shards than samples: the empty ones add nothing.
	_, many := shardFiles(t, 12)
	if m, err := MergeStats(many...); err != nil || m.Result.Samples != 10 || m.Result.Stats["fc"].Count != 10 || missingCount(m) != 0 {
		t.Errorf("12 shards of 10 samples: %v", err)
	}

	other := *shards[1]
	other.ModelHash = strings.Repeat("f", 64)
	v2 := *shards[1]
	v2.Version = 2
	_, three := shardFiles(t, 3)
	dims := *shards[1]
	dims.Result = &Result{Samples: 3, Stats: map[string]*Stats{"conv": NewStats(4), "fc": NewStats(2)}, Shapes: map[string][]int64{"conv": {4, 4, 5}, "fc": {2}}}
	fewer := *shards[1]
	fewer.Result = &Result{Samples: 3, Stats: map[string]*Stats{"fc": NewStats(2)}, Shapes: map[string][]int64{"fc": {2}}}
	tests := []struct {
		name  string
		files []*StatsFile
		want  string
	}{
		{"none", nil, "no statistics to merge"},
		{"other model", []*StatsFile{shards[0], &other}, "input 2 holds statistics of another model than input 1"},
		{"version", []*StatsFile{shards[0], &v2}, "input 2: unsupported statistics file version 2"},
		{"same shard twice", []*StatsFile{shards[0], shards[1], shards[1]}, "shard 1 of 4 is in inputs 2 and 3: the same shard twice"},
		{"overlapping merges", []*StatsFile{part, shards[3]}, "shard 3 of 4 is in inputs 1 and 2"},
		{"other count", []*StatsFile{shards[0], three[1]}, "input 2 holds shards of 3 but input 1 shards of 4"},
		{"sharded and not", []*StatsFile{whole, shards[1]}, "mix sharded and unsharded"},
		{"same file twice", []*StatsFile{whole, whole}, "inputs 1 and 2 hold identical statistics"},
		{"dimensions", []*StatsFile{shards[0], &dims}, `tensor "conv" has different dimensions`},
		{"tensors", []*StatsFile{shards[0], &fewer}, "1 tensors, not 2"},
		{"nil", []*StatsFile{shards[0], nil}, "input 2 holds no statistics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := MergeStats(tt.files...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	// Two unsharded runs over different data merge.
	_, one := shardFiles(t, 2)
	a, b := *one[0], *one[1]
	a.Shard, a.Shards, a.ShardsSeen, a.ShardCount = 0, 0, nil, 0
	b.Shard, b.Shards, b.ShardsSeen, b.ShardCount = 0, 0, nil, 0
	if m, err := MergeStats(&a, &b); err != nil || m.Result.Samples != 10 || m.ShardCount != 0 {
		t.Errorf("two unsharded runs: %v", err)
	}
}

// FuzzReadStats checks that no input makes the reader panic or allocate beyond what the data
// backs, and that what it accepts writes back byte for byte. Each input is tried as it is and
// with its length and checksum recomputed, so that the fuzzer reaches the body's parser.
func FuzzReadStats(f *testing.F) {
	whole, shards := shardFiles(f, 2)
	f.Add(encode(f, whole))
	f.Add(encode(f, shards[1]))
	f.Fuzz(func(t *testing.T, data []byte) {
		try := [][]byte{data}
		if len(data) >= statsTrailerLen {
			try = append(try, reseal(data))
		}
		for _, b := range try {
			sf, err := decodeStats(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error has several lines: %q", err)
				}
				continue
			}
			if back := encode(t, sf); !bytes.Equal(back, b) {
				t.Fatalf("accepted %d bytes that write back as %d different bytes", len(b), len(back))
			}
		}
	})
}

// BenchmarkStatsFile writes and reads back the statistics of 8 tensors of 512 channels
// (8.4 MB).
func BenchmarkStatsFile(b *testing.B) {
	res := &Result{Samples: 1, Stats: map[string]*Stats{}, Shapes: map[string][]int64{}}
	for k := range 8 {
		name := fmt.Sprintf("t%d", k)
		s := NewStats(512)
		s.AddNCHW(make([]float32, 512*16), 1, 512, 16)
		res.Stats[name], res.Shapes[name] = s, []int64{512, 4, 4}
	}
	f := &StatsFile{Version: StatsVersion, ModelHash: testHash, Result: res}
	path := filepath.Join(b.TempDir(), "b.cps")
	for b.Loop() {
		if err := WriteStats(path, f); err != nil {
			b.Fatal(err)
		}
		if _, err := ReadStats(path); err != nil {
			b.Fatal(err)
		}
	}
	if st, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(st.Size())/1e6, "MB")
	}
}

func missingCount(f *StatsFile) int {
	n, _ := f.Missing()
	return n
}

// TestMissingHuge: a file may declare 2^32-1 shards; Missing answers at once, listing 16.
func TestMissingHuge(t *testing.T) {
	f := &StatsFile{ShardCount: math.MaxUint32, ShardsSeen: []int{0, 2}}
	n, first := f.Missing()
	if n != math.MaxUint32-2 || len(first) != 16 || first[0] != 1 || first[1] != 3 {
		t.Errorf("Missing = %d, %v", n, first)
	}
}
