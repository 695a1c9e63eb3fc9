package calib

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio"
)

// StatsVersion is the version of the statistics file format that WriteStats writes and
// ReadStats reads.
const StatsVersion = 1

// statsMagic opens every statistics file.
const statsMagic = "CONVPCA-STATS\n"

// Sizes of the fixed parts of a statistics file: magic, uint32 version and uint64 body length
// before the body; the SHA-256 of everything before it after.
const (
	statsHeaderLen  = len(statsMagic) + 4 + 8
	statsTrailerLen = sha256.Size
)

// Errors that ReadStats returns wrapped, for errors.Is.
var (
	ErrNotStatsFile = errors.New("not a convpca statistics file")
	ErrStatsVersion = errors.New("unsupported statistics file version")
	ErrStatsCorrupt = errors.New("corrupt statistics file")
)

// StatsFile is the content of a statistics file (".cps"): the channel statistics of one
// calibration run, of one shard of it, or of several shards merged, with the hash of the model
// they belong to.
//
// A file of shard i of n has Shard, Shards = i, n, ShardsSeen = [i] and ShardCount = n. A
// merged file has Shard, Shards = 0, 0 and lists every shard it holds in ShardsSeen, out of
// ShardCount. An unsharded file has all of these zero or empty.
type StatsFile struct {
	Version    int    // format version; StatsVersion
	ModelHash  string // ModelHash of the model calibrated
	Shard      int    // this file's shard index i (0-based); 0 when unsharded or merged
	Shards     int    // this file's shard count n; 0 when unsharded or merged
	ShardsSeen []int  // the shard indices whose samples it holds, ascending; nil when unsharded
	ShardCount int    // the shard count n that ShardsSeen refers to; 0 when unsharded
	Result     *Result
}

// maxMissing bounds the shard indices Missing lists: a file may declare up to 2^32 shards.
const maxMissing = 16

// Missing returns the number of shards, out of ShardCount, whose statistics f lacks, and the
// first of them (at most 16); 0 and nil when f is unsharded or holds every shard. Its time
// does not depend on ShardCount, which a file may declare as large as 2^32.
func (f *StatsFile) Missing() (int, []int) {
	n := f.ShardCount - len(f.ShardsSeen)
	if f.ShardCount == 0 || n <= 0 {
		return 0, nil
	}
	seen := slices.Clone(f.ShardsSeen)
	slices.Sort(seen)
	var first []int
	for i, k := 0, 0; i < f.ShardCount && len(first) < maxMissing; i++ {
		for k < len(seen) && seen[k] < i {
			k++
		}
		if k < len(seen) && seen[k] == i {
			continue
		}
		first = append(first, i)
	}
	return n, first
}

// ModelHash returns the hex SHA-256 of the deterministic serialization of m's main graph, so
// that statistics are used only with the graph they were computed on.
func ModelHash(m *onnxio.Model) (string, error) {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Graph.Proto())
	if err != nil {
		return "", fmt.Errorf("hash model graph: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// WriteStats writes f to path atomically (see onnxio.WriteFileAtomic). The format, all
// integers and floats little-endian:
//
//	magic "CONVPCA-STATS\n", uint32 version, uint64 body length, body, SHA-256 of all before it
//	body: model hash (uint32 length, bytes); uint32 shard, shards, shard count, number of
//	      shards seen, then each; uint64 samples; uint32 tensor count; then per tensor in
//	      name order: name (uint32 length, bytes), uint32 rank, int64 dims, uint32 Dim,
//	      uint64 Count, Dim float64 Sum, Dim·(Dim+1)/2 float64 Outer
//
// Only the upper triangle of Outer is stored (row by row, j >= i), which is all that Stats
// uses; ReadStats leaves the lower triangle zero, as Stats.AddNCHW does. A tensor of C
// channels and rank r takes 8·(C(C+1)/2 + C) + 20 + 8·r + len(name) bytes.
func WriteStats(path string, f *StatsFile) error {
	size, err := checkStatsFile(f)
	if err != nil {
		return fmt.Errorf("write statistics %s: %w", path, err)
	}
	return onnxio.WriteFileAtomic(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<16)
		if err := encodeStats(bw, f, size); err != nil {
			return err
		}
		return bw.Flush()
	})
}

// checkStatsFile checks that f can be written and returns the length of its body.
func checkStatsFile(f *StatsFile) (int64, error) {
	if f == nil || f.Result == nil {
		return 0, errors.New("no statistics")
	}
	if f.Version != StatsVersion {
		return 0, fmt.Errorf("%w %d (this convpca writes version %d)", ErrStatsVersion, f.Version, StatsVersion)
	}
	if err := checkShards(f); err != nil {
		return 0, err
	}
	res := f.Result
	if res.Samples < 0 {
		return 0, fmt.Errorf("negative sample count %d", res.Samples)
	}
	size := int64(4+len(f.ModelHash)) + 4*4 + 4*int64(len(f.ShardsSeen)) + 8 + 4
	for name, s := range res.Stats {
		shape, ok := res.Shapes[name]
		if err := checkTensor(name, s, shape, ok); err != nil {
			return 0, err
		}
		c := int64(s.Dim)
		size += 4 + int64(len(name)) + 4 + 8*int64(len(shape)) + 4 + 8 + 8*c + 8*(c*(c+1)/2)
	}
	if len(res.Shapes) != len(res.Stats) {
		return 0, errors.New("tensor shapes and statistics do not match")
	}
	return size, nil
}

func checkTensor(name string, s *Stats, shape []int64, hasShape bool) error {
	switch {
	case s == nil || !hasShape:
		return fmt.Errorf("tensor %q lacks its statistics or shape", name)
	case s.Dim < 1 || s.Dim > math.MaxUint32 || len(s.Sum) != s.Dim || len(s.Outer) != s.Dim*s.Dim:
		return fmt.Errorf("tensor %q: statistics of dimension %d hold %d sums and %d products", name, s.Dim, len(s.Sum), len(s.Outer))
	case s.Count < 0:
		return fmt.Errorf("tensor %q: negative count %d", name, s.Count)
	case len(shape) == 0 || shape[0] != int64(s.Dim):
		return fmt.Errorf("tensor %q: shape %v does not start with its %d channels", name, shape, s.Dim)
	}
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("tensor %q: shape %v has a negative dimension", name, shape)
		}
	}
	return nil
}

// checkShards checks that the shard fields of f agree with each other.
func checkShards(f *StatsFile) error {
	switch {
	case f.Shards < 0 || f.Shard < 0 || f.ShardCount < 0 || f.ShardCount > math.MaxUint32:
		return fmt.Errorf("negative or huge shard fields (shard %d of %d, shard count %d)", f.Shard, f.Shards, f.ShardCount)
	case f.Shards == 0 && f.Shard != 0:
		return fmt.Errorf("shard %d of no shards", f.Shard)
	case f.Shards > 0 && (f.Shard >= f.Shards || f.ShardCount != f.Shards || !slices.Equal(f.ShardsSeen, []int{f.Shard})):
		return fmt.Errorf("shard %d/%d lists shards %v of %d", f.Shard, f.Shards, f.ShardsSeen, f.ShardCount)
	case f.ShardCount == 0 && len(f.ShardsSeen) > 0:
		return fmt.Errorf("lists shards %v of no shard count", f.ShardsSeen)
	case f.ShardCount > 0 && len(f.ShardsSeen) == 0:
		return fmt.Errorf("holds none of its %d shards", f.ShardCount)
	}
	for k, i := range f.ShardsSeen {
		if i < 0 || i >= f.ShardCount || (k > 0 && i <= f.ShardsSeen[k-1]) {
			return fmt.Errorf("shards %v of %d are not distinct ascending indices below the count", f.ShardsSeen, f.ShardCount)
		}
	}
	return nil
}

// encodeStats writes the file f, whose body is size bytes long (see checkStatsFile).
func encodeStats(w io.Writer, f *StatsFile, size int64) error {
	h := sha256.New()
	e := &encoder{w: io.MultiWriter(w, h)}
	e.bytes([]byte(statsMagic))
	e.u32(StatsVersion)
	e.u64(uint64(size))
	start := e.n
	e.str(f.ModelHash)
	e.u32(uint32(f.Shard))
	e.u32(uint32(f.Shards))
	e.u32(uint32(f.ShardCount))
	e.u32(uint32(len(f.ShardsSeen)))
	for _, i := range f.ShardsSeen {
		e.u32(uint32(i))
	}
	res := f.Result
	e.u64(uint64(res.Samples))
	names := make([]string, 0, len(res.Stats))
	for name := range res.Stats {
		names = append(names, name)
	}
	sort.Strings(names)
	e.u32(uint32(len(names)))
	for _, name := range names {
		s, shape := res.Stats[name], res.Shapes[name]
		e.str(name)
		e.u32(uint32(len(shape)))
		for _, d := range shape {
			e.u64(uint64(d))
		}
		e.u32(uint32(s.Dim))
		e.u64(uint64(s.Count))
		e.floats(s.Sum)
		for i := 0; i < s.Dim; i++ {
			e.floats(s.Outer[i*s.Dim+i : (i+1)*s.Dim])
		}
	}
	if e.err != nil {
		return e.err
	}
	if e.n-start != size {
		panic(fmt.Sprintf("calib: statistics body is %d bytes, computed %d", e.n-start, size))
	}
	_, err := w.Write(h.Sum(nil))
	return err
}

// encoder writes little-endian values, remembering the first error and the bytes written.
type encoder struct {
	w    io.Writer
	buf  [8]byte
	fbuf []byte // scratch for floats
	n    int64
	err  error
}

func (e *encoder) bytes(b []byte) {
	if e.err != nil {
		return
	}
	var n int
	n, e.err = e.w.Write(b)
	e.n += int64(n)
}

func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:4], v)
	e.bytes(e.buf[:4])
}

func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], v)
	e.bytes(e.buf[:])
}

func (e *encoder) str(s string) {
	e.u32(uint32(len(s)))
	e.bytes([]byte(s))
}

func (e *encoder) floats(v []float64) {
	for len(v) > 0 {
		k := min(len(v), 4096)
		e.fbuf = e.fbuf[:0]
		for _, x := range v[:k] {
			e.fbuf = binary.LittleEndian.AppendUint64(e.fbuf, math.Float64bits(x))
		}
		e.bytes(e.fbuf)
		v = v[k:]
	}
}

// ReadStats reads a statistics file written by WriteStats. It refuses, with a one-line error
// naming the file, data that is not a statistics file, another format version, a file whose
// checksum does not match (corrupt) or that is truncated, and sizes the file cannot hold; it
// allocates only what the file's length can back.
func ReadStats(path string) (*StatsFile, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read statistics: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("read statistics: %w", err)
	}
	f, err := decodeStats(fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("statistics file %s: %w", path, err)
	}
	return f, nil
}

// decodeStats reads a statistics file of size bytes from r: the header, then the checksum over
// everything before it, then the body.
func decodeStats(r io.ReaderAt, size int64) (*StatsFile, error) {
	var head [statsHeaderLen]byte
	n, err := r.ReadAt(head[:min(int64(len(head)), size)], 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	if n < len(statsMagic) {
		if !bytes.HasPrefix([]byte(statsMagic), head[:n]) || n == 0 {
			return nil, ErrNotStatsFile
		}
		return nil, fmt.Errorf("%w: truncated: the file ends within the header (%d bytes)", ErrStatsCorrupt, size)
	}
	if string(head[:len(statsMagic)]) != statsMagic {
		return nil, ErrNotStatsFile
	}
	if n < statsHeaderLen {
		return nil, fmt.Errorf("%w: truncated: the file ends within the header (%d bytes)", ErrStatsCorrupt, size)
	}
	if v := binary.LittleEndian.Uint32(head[len(statsMagic):]); v != StatsVersion {
		return nil, fmt.Errorf("%w %d (this convpca reads version %d)", ErrStatsVersion, v, StatsVersion)
	}
	body := binary.LittleEndian.Uint64(head[len(statsMagic)+4:])
	if avail := size - int64(statsHeaderLen+statsTrailerLen); avail < 0 || body > uint64(avail) {
		return nil, fmt.Errorf("%w: truncated: the header declares a body of %d bytes but the file holds %d bytes", ErrStatsCorrupt, body, size)
	} else if body < uint64(avail) {
		return nil, fmt.Errorf("%w: %d bytes after the checksum", ErrStatsCorrupt, uint64(avail)-body)
	}
	// The checksum, before reading the body, so that a flipped byte reads as corruption.
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size-statsTrailerLen)); err != nil {
		return nil, err
	}
	var sum [statsTrailerLen]byte
	if _, err := r.ReadAt(sum[:], size-statsTrailerLen); err != nil && err != io.EOF {
		return nil, err
	}
	if !bytes.Equal(sum[:], h.Sum(nil)) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrStatsCorrupt)
	}
	d := &decoder{r: bufio.NewReaderSize(io.NewSectionReader(r, int64(statsHeaderLen), int64(body)), 1<<16), left: int64(body)}
	f, err := d.file()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStatsCorrupt, err)
	}
	if d.left != 0 {
		return nil, fmt.Errorf("%w: %d unread bytes at the end of the body", ErrStatsCorrupt, d.left)
	}
	return f, nil
}

// decoder reads little-endian values from a body of known length; left is what remains of it,
// which bounds every allocation.
type decoder struct {
	r    *bufio.Reader
	left int64
	buf  [8]byte
}

var errShortBody = errors.New("the body ends early")

func (d *decoder) read(b []byte) error {
	if int64(len(b)) > d.left {
		return errShortBody
	}
	if _, err := io.ReadFull(d.r, b); err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	d.left -= int64(len(b))
	return nil
}

func (d *decoder) u32() (uint32, error) {
	err := d.read(d.buf[:4])
	return binary.LittleEndian.Uint32(d.buf[:4]), err
}

func (d *decoder) u64() (uint64, error) {
	err := d.read(d.buf[:])
	return binary.LittleEndian.Uint64(d.buf[:]), err
}

// fits returns an error unless n items of width bytes each fit in what is left of the body.
func (d *decoder) fits(what string, n uint64, width int64) error {
	if n > uint64(d.left/width) {
		return fmt.Errorf("%s: %d entries do not fit in the %d bytes left", what, n, d.left)
	}
	return nil
}

func (d *decoder) str(what string) (string, error) {
	n, err := d.u32()
	if err != nil {
		return "", err
	}
	if err := d.fits(what, uint64(n), 1); err != nil {
		return "", err
	}
	b := make([]byte, n)
	err = d.read(b)
	return string(b), err
}

func (d *decoder) floats(dst []float64) error {
	var b [8 * 512]byte
	for len(dst) > 0 {
		k := min(len(dst), 512)
		if err := d.read(b[:8*k]); err != nil {
			return err
		}
		for i := range k {
			dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		dst = dst[k:]
	}
	return nil
}

func (d *decoder) file() (*StatsFile, error) {
	f := &StatsFile{Version: StatsVersion}
	var err error
	if f.ModelHash, err = d.str("model hash"); err != nil {
		return nil, err
	}
	var fields [4]uint32
	for i := range fields {
		if fields[i], err = d.u32(); err != nil {
			return nil, err
		}
	}
	f.Shard, f.Shards, f.ShardCount = int(fields[0]), int(fields[1]), int(fields[2])
	if err := d.fits("shard list", uint64(fields[3]), 4); err != nil {
		return nil, err
	}
	for range fields[3] {
		i, err := d.u32()
		if err != nil {
			return nil, err
		}
		f.ShardsSeen = append(f.ShardsSeen, int(i))
	}
	if err := checkShards(f); err != nil {
		return nil, err
	}
	samples, err := d.u64()
	if err != nil {
		return nil, err
	}
	if samples > math.MaxInt64 {
		return nil, fmt.Errorf("sample count %d is too large", samples)
	}
	ntensors, err := d.u32()
	if err != nil {
		return nil, err
	}
	if err := d.fits("tensor list", uint64(ntensors), 4+4+4+8+8+8); err != nil {
		return nil, err
	}
	res := &Result{Samples: int(samples), Stats: make(map[string]*Stats, ntensors), Shapes: make(map[string][]int64, ntensors)}
	prev := ""
	for k := range ntensors {
		name, err := d.str("tensor name")
		if err != nil {
			return nil, err
		}
		if k > 0 && name <= prev {
			return nil, fmt.Errorf("tensor %q is out of order or repeated", name)
		}
		prev = name
		s, shape, err := d.tensor(name)
		if err != nil {
			return nil, err
		}
		res.Stats[name], res.Shapes[name] = s, shape
	}
	f.Result = res
	return f, nil
}

func (d *decoder) tensor(name string) (*Stats, []int64, error) {
	rank, err := d.u32()
	if err != nil {
		return nil, nil, err
	}
	if err := d.fits(fmt.Sprintf("tensor %q shape", name), uint64(rank), 8); err != nil {
		return nil, nil, err
	}
	shape := make([]int64, rank)
	for i := range shape {
		v, err := d.u64()
		if err != nil {
			return nil, nil, err
		}
		shape[i] = int64(v)
	}
	dim, err := d.u32()
	if err != nil {
		return nil, nil, err
	}
	count, err := d.u64()
	if err != nil {
		return nil, nil, err
	}
	// Sum and the upper triangle of Outer: dim + dim(dim+1)/2 floats, which fit in uint64.
	c := uint64(dim)
	if err := d.fits(fmt.Sprintf("tensor %q statistics of dimension %d", name, dim), c+c*(c+1)/2, 8); err != nil {
		return nil, nil, err
	}
	if c*c > math.MaxInt/8 {
		return nil, nil, fmt.Errorf("tensor %q: dimension %d is too large", name, dim)
	}
	s := &Stats{Dim: int(dim), Count: int64(count), Sum: make([]float64, dim), Outer: make([]float64, c*c)}
	if err := checkTensor(name, s, shape, true); err != nil {
		return nil, nil, err
	}
	if err := d.floats(s.Sum); err != nil {
		return nil, nil, err
	}
	for i := 0; i < s.Dim; i++ {
		if err := d.floats(s.Outer[i*s.Dim+i : (i+1)*s.Dim]); err != nil {
			return nil, nil, err
		}
	}
	return s, shape, nil
}

// MergeStats adds up the statistics of several files of the same model: shards of one run, or
// runs over distinct data. It refuses files of other format versions or models, different
// tensors or dimensions, a mix of sharded and unsharded files, shards of different counts, the
// same shard twice, and two unsharded files holding identical statistics (one file given
// twice). Files of shards that held no samples (more shards than samples) add nothing. The
// inputs are not modified.
func MergeStats(files ...*StatsFile) (*StatsFile, error) {
	if len(files) == 0 {
		return nil, errors.New("no statistics to merge")
	}
	for k, f := range files {
		if f == nil || f.Result == nil {
			return nil, fmt.Errorf("input %d holds no statistics", k+1)
		}
		if f.Version != StatsVersion {
			return nil, fmt.Errorf("input %d: %w %d (this convpca merges version %d)", k+1, ErrStatsVersion, f.Version, StatsVersion)
		}
		if err := checkShards(f); err != nil {
			return nil, fmt.Errorf("input %d: %w", k+1, err)
		}
	}
	first := files[0]
	out := &StatsFile{Version: first.Version, ModelHash: first.ModelHash, ShardCount: first.ShardCount}
	seen := map[int]int{} // shard index -> input number
	for k, f := range files {
		if f.ModelHash != first.ModelHash {
			return nil, fmt.Errorf("input %d holds statistics of another model than input 1 (model hash %.12s, not %.12s)", k+1, f.ModelHash, first.ModelHash)
		}
		if (f.ShardCount == 0) != (first.ShardCount == 0) {
			return nil, fmt.Errorf("inputs 1 and %d mix sharded and unsharded statistics", k+1)
		}
		if f.ShardCount != first.ShardCount {
			return nil, fmt.Errorf("input %d holds shards of %d but input 1 shards of %d", k+1, f.ShardCount, first.ShardCount)
		}
		for _, i := range f.ShardsSeen {
			if j, dup := seen[i]; dup {
				return nil, fmt.Errorf("shard %d of %d is in inputs %d and %d: the same shard twice", i, f.ShardCount, j, k+1)
			}
			seen[i] = k + 1
			out.ShardsSeen = append(out.ShardsSeen, i)
		}
	}
	sort.Ints(out.ShardsSeen)
	if first.ShardCount == 0 {
		for a := range files {
			for b := a + 1; b < len(files); b++ {
				if files[a].Result.Samples > 0 && identical(files[a].Result, files[b].Result) {
					return nil, fmt.Errorf("inputs %d and %d hold identical statistics: the same file twice?", a+1, b+1)
				}
			}
		}
	}
	// The tensors of the first file that saw samples are the reference.
	ref := 0
	for k, f := range files {
		if !emptyShard(f.Result) {
			ref = k
			break
		}
	}
	res := &Result{Stats: map[string]*Stats{}, Shapes: map[string][]int64{}}
	for name, s := range files[ref].Result.Stats {
		res.Stats[name] = NewStats(s.Dim)
		res.Shapes[name] = slices.Clone(files[ref].Result.Shapes[name])
	}
	for k, f := range files {
		res.Samples += f.Result.Samples
		if emptyShard(f.Result) {
			continue
		}
		if err := sameTensors(res, f.Result); err != nil {
			return nil, fmt.Errorf("input %d and input %d: %w", k+1, ref+1, err)
		}
		for name, s := range f.Result.Stats {
			if err := res.Stats[name].Merge(s); err != nil {
				return nil, fmt.Errorf("input %d: tensor %q: %w", k+1, name, err)
			}
		}
	}
	out.Result = res
	return out, nil
}

// emptyShard reports whether r is the result of a shard that held no samples.
func emptyShard(r *Result) bool { return r.Samples == 0 && len(r.Stats) == 0 }

// sameTensors returns an error unless r holds the same tensors, dimensions and shapes as ref.
func sameTensors(ref, r *Result) error {
	if len(r.Stats) != len(ref.Stats) {
		return fmt.Errorf("%d tensors, not %d", len(r.Stats), len(ref.Stats))
	}
	for name, s := range r.Stats {
		want, ok := ref.Stats[name]
		switch {
		case !ok:
			return fmt.Errorf("tensor %q is in one only", name)
		case s == nil || s.Dim != want.Dim:
			return fmt.Errorf("tensor %q has different dimensions", name)
		case !slices.Equal(r.Shapes[name], ref.Shapes[name]):
			return fmt.Errorf("tensor %q has shapes %v and %v", name, r.Shapes[name], ref.Shapes[name])
		}
	}
	return nil
}

// identical reports whether two results hold the same sample count and sums.
func identical(a, b *Result) bool {
	if a.Samples != b.Samples || len(a.Stats) != len(b.Stats) {
		return false
	}
	for name, s := range a.Stats {
		o := b.Stats[name]
		if o == nil || o.Count != s.Count || !slices.Equal(o.Sum, s.Sum) {
			return false
		}
	}
	return true
}
