package dataset

import (
	"io"
	"os"
	"strings"
	"testing"
)

// numbered returns a Reader of n samples of shape 2x1, sample i holding i and -i.
func numbered(n int) Reader {
	data := make([]float32, 2*n)
	for i := range n {
		data[2*i], data[2*i+1] = float32(i), float32(-i)
	}
	return &memReader{data: data, shape: []int{2, 1}, size: 2, n: n}
}

// readFirsts returns the first value of every sample r yields, reading 2 samples at a time.
func readFirsts(t *testing.T, r Reader) []int {
	t.Helper()
	var got []int
	buf := make([]float32, 4)
	for {
		n, err := r.Read(buf)
		for i := range n {
			got = append(got, int(buf[2*i]))
		}
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestShard(t *testing.T) {
	tests := []struct {
		samples, n int
		sizes      []int
	}{
		{10, 4, []int{3, 3, 2, 2}},
		{8, 4, []int{2, 2, 2, 2}},
		{3, 5, []int{1, 1, 1, 0, 0}},
		{0, 2, []int{0, 0}},
		{7, 1, []int{7}},
		{20000, 3, []int{6667, 6667, 6666}}, // skipping takes several reads
	}
	for _, tt := range tests {
		next := 0
		for i := range tt.n {
			r, err := Shard(numbered(tt.samples), i, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if r.Len() != tt.sizes[i] {
				t.Errorf("%d samples, shard %d/%d: Len %d, want %d", tt.samples, i, tt.n, r.Len(), tt.sizes[i])
			}
			got := readFirsts(t, r)
			if len(got) != tt.sizes[i] || (len(got) > 0 && (got[0] != next || got[len(got)-1] != next+len(got)-1)) {
				t.Errorf("%d samples, shard %d/%d: read samples %v..., want %d from %d", tt.samples, i, tt.n, got[:min(len(got), 5)], tt.sizes[i], next)
			}
			next += len(got)
			r.Close()
		}
		if next != tt.samples {
			t.Errorf("%d samples in %d shards: read %d", tt.samples, tt.n, next)
		}
	}
	for _, bad := range [][2]int{{0, 0}, {-1, 2}, {2, 2}, {5, 4}} {
		if _, err := Shard(numbered(5), bad[0], bad[1]); err == nil || !strings.Contains(err.Error(), "want 0 <= index < count") {
			t.Errorf("Shard(%d, %d): %v", bad[0], bad[1], err)
		}
	}
	// Data that ends before the shard's first sample.
	if _, err := Shard(&truncated{numbered(10), 2}, 3, 4); err == nil || !strings.Contains(err.Error(), "data ended after 2 samples, before the shard's first sample 8") {
		t.Errorf("short data: %v", err)
	}
}

// truncated is a Reader that ends (io.EOF) after n samples whatever it declares.
type truncated struct {
	Reader
	n int
}

func (r *truncated) Read(dst []float32) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	size := numel(r.Shape())
	k, err := r.Reader.Read(dst[:min(len(dst), r.n*size)])
	r.n -= k
	return k, err
}

// unsetenv clears name for the test and restores it afterwards.
func unsetenv(t *testing.T, name string) {
	t.Setenv(name, "")
	os.Unsetenv(name)
}

func TestShardFromEnv(t *testing.T) {
	vars := []string{EnvSlurmTask, EnvSlurmCount, EnvSlurmMin, EnvSlurmStep, EnvK8sIndex, EnvShardCount}
	tests := []struct {
		env  map[string]string
		i, n int
		err  string
	}{
		{map[string]string{EnvSlurmTask: "2", EnvSlurmCount: "4", EnvSlurmMin: "0", EnvSlurmStep: "1"}, 2, 4, ""},
		{map[string]string{EnvSlurmTask: "3", EnvSlurmCount: "4"}, 3, 4, ""},
		{map[string]string{EnvSlurmTask: "4", EnvSlurmCount: "4", EnvSlurmMin: "1"}, 3, 4, ""},                    // --array=1-4
		{map[string]string{EnvSlurmTask: "6", EnvSlurmCount: "4", EnvSlurmMin: "0", EnvSlurmStep: "2"}, 3, 4, ""}, // --array=0-6:2
		{map[string]string{EnvSlurmTask: "1", EnvSlurmCount: "2", EnvK8sIndex: "0", EnvShardCount: "5"}, 1, 2, ""},
		{map[string]string{EnvK8sIndex: "4", EnvShardCount: "5"}, 4, 5, ""},
		{map[string]string{}, 0, 0, "no shard in the environment: set SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (a Slurm job array) or JOB_COMPLETION_INDEX and SHARD_COUNT"},
		{map[string]string{EnvSlurmTask: "4", EnvSlurmCount: "4"}, 0, 0, "SLURM_ARRAY_TASK_ID=4 is not one of 4 evenly stepped task ids from 0 (step 1); submit with --array=0-3"},
		{map[string]string{EnvSlurmTask: "1"}, 0, 0, "SLURM_ARRAY_TASK_COUNT is not"},
		{map[string]string{EnvSlurmTask: "x", EnvSlurmCount: "4"}, 0, 0, `SLURM_ARRAY_TASK_ID="x" is not an integer >= 0`},
		{map[string]string{EnvSlurmTask: "1", EnvSlurmCount: "0"}, 0, 0, `SLURM_ARRAY_TASK_COUNT="0" is not an integer >= 1`},
		{map[string]string{EnvSlurmTask: "3", EnvSlurmCount: "4", EnvSlurmStep: "2"}, 0, 0, "is not one of 4 evenly stepped"},
		{map[string]string{EnvK8sIndex: "1"}, 0, 0, "JOB_COMPLETION_INDEX is set but SHARD_COUNT is not"},
		{map[string]string{EnvK8sIndex: "5", EnvShardCount: "5"}, 0, 0, "JOB_COMPLETION_INDEX=5 is not below SHARD_COUNT=5"},
		{map[string]string{EnvK8sIndex: "-1", EnvShardCount: "5"}, 0, 0, `JOB_COMPLETION_INDEX="-1" is not an integer >= 0`},
	}
	for _, tt := range tests {
		for _, v := range vars {
			unsetenv(t, v)
		}
		for k, v := range tt.env {
			t.Setenv(k, v)
		}
		i, n, err := ShardFromEnv()
		switch {
		case tt.err == "" && (err != nil || i != tt.i || n != tt.n):
			t.Errorf("%v: %d/%d, %v; want %d/%d", tt.env, i, n, err, tt.i, tt.n)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%v: error %v, want %q", tt.env, err, tt.err)
		}
	}
}
