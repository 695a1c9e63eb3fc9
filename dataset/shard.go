package dataset

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// ShardRange returns the first sample and the sample count of shard i (0-based) of n
// contiguous slices of total samples. Slices differ in size by at most one: the first
// total mod n are one sample longer. Shards past the data (n > total) are empty.
func ShardRange(total, i, n int) (start, count int) {
	q, rem := total/n, total%n
	start = i*q + min(i, rem)
	count = q
	if i < rem {
		count++
	}
	return start, count
}

// Slice returns the count samples of r from sample start on (fewer when the data ends
// first), skipping the ones before.
func Slice(r Reader, start, count int) (Reader, error) {
	if err := skip(r, start); err != nil {
		return nil, err
	}
	return Limit(r, count), nil
}

// Shard returns a Reader of shard i (0-based) of n contiguous slices of r's samples (see
// ShardRange), which may be empty. It reads and discards the samples before the shard, so the
// shards of a file may be read by separate processes. Closing the result closes r; on an
// error r is left open.
func Shard(r Reader, i, n int) (Reader, error) {
	if n < 1 || i < 0 || i >= n {
		return nil, fmt.Errorf("shard %d/%d: want 0 <= index < count", i, n)
	}
	start, count := ShardRange(r.Len(), i, n)
	if err := skip(r, start); err != nil {
		return nil, fmt.Errorf("shard %d/%d: %w", i, n, err)
	}
	return Limit(r, count), nil
}

// skip reads and discards the first n samples of r, at most chunk bytes (or one sample) at a
// time.
func skip(r Reader, n int) error {
	if n == 0 {
		return nil
	}
	if fr, ok := r.(FieldReader); ok {
		return skipFields(fr, n)
	}
	size := numel(r.Shape())
	buf := make([]float32, size*max(1, min(n, chunk/4/size)))
	return discard(n, len(buf)/size, func(k int) (int, error) {
		return r.Read(buf[:k*size])
	})
}

// skipFields is skip for a FieldReader.
func skipFields(r FieldReader, n int) error {
	fields := r.Fields()
	per := 0
	for _, f := range fields {
		per += f.Bytes()
	}
	k := max(1, min(n, chunk/per))
	buf := make([][]byte, len(fields))
	for i, f := range fields {
		buf[i] = make([]byte, k*f.Bytes())
	}
	return discard(n, k, func(k int) (int, error) {
		dst := make([][]byte, len(fields))
		for i, f := range fields {
			dst[i] = buf[i][:k*f.Bytes()]
		}
		return r.ReadFields(dst)
	})
}

// discard is the loop of skip and skipFields: it calls read, which reads and discards at most
// k samples and returns how many it read, until n samples are gone, and says when the data
// ends before.
func discard(n, k int, read func(k int) (int, error)) error {
	for done := 0; done < n; {
		got, err := read(min(n-done, k))
		done += got
		if errors.Is(err, io.EOF) || (err == nil && got == 0) {
			if done < n {
				return fmt.Errorf("data ended after %d samples, before the shard's first sample %d", done, n)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("skip to the shard: %w", err)
		}
	}
	return nil
}

// Environment variables read by ShardFromEnv.
const (
	EnvSlurmTask  = "SLURM_ARRAY_TASK_ID"    // Slurm job array: this task's id
	EnvSlurmCount = "SLURM_ARRAY_TASK_COUNT" // Slurm job array: number of tasks
	EnvSlurmMin   = "SLURM_ARRAY_TASK_MIN"   // Slurm job array: lowest task id
	EnvSlurmStep  = "SLURM_ARRAY_TASK_STEP"  // Slurm job array: step between task ids
	EnvK8sIndex   = "JOB_COMPLETION_INDEX"   // Kubernetes Indexed Job: this pod's index
	EnvShardCount = "SHARD_COUNT"            // shard count for JOB_COMPLETION_INDEX (Kubernetes does not set one)
)

// ShardFromEnv returns the shard index i and count n of this process from its environment:
//
//   - in a Slurm job array, SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT; ids need not start
//     at 0 (--array=1-4) or step by 1 (--array=0-6:2): i = (id - SLURM_ARRAY_TASK_MIN) /
//     SLURM_ARRAY_TASK_STEP, which must come out below the count;
//   - in a Kubernetes Indexed Job, JOB_COMPLETION_INDEX and SHARD_COUNT, since Kubernetes does
//     not put the Job's completions in the environment: set SHARD_COUNT to spec.completions.
//
// Slurm's variables take precedence. The errors say which variable is missing or wrong.
func ShardFromEnv() (i, n int, err error) {
	if id, ok := os.LookupEnv(EnvSlurmTask); ok {
		return slurmShard(id)
	}
	if idx, ok := os.LookupEnv(EnvK8sIndex); ok {
		i, err := envInt(EnvK8sIndex, idx, 0)
		if err != nil {
			return 0, 0, err
		}
		cnt, ok := os.LookupEnv(EnvShardCount)
		if !ok {
			return 0, 0, fmt.Errorf("%s is set but %s is not: set it to the Job's completions", EnvK8sIndex, EnvShardCount)
		}
		n, err := envInt(EnvShardCount, cnt, 1)
		if err != nil {
			return 0, 0, err
		}
		if i >= n {
			return 0, 0, fmt.Errorf("%s=%d is not below %s=%d", EnvK8sIndex, i, EnvShardCount, n)
		}
		return i, n, nil
	}
	return 0, 0, fmt.Errorf("no shard in the environment: set %s and %s (a Slurm job array) or %s and %s (a Kubernetes Indexed Job)", EnvSlurmTask, EnvSlurmCount, EnvK8sIndex, EnvShardCount)
}

func slurmShard(idText string) (int, int, error) {
	id, err := envInt(EnvSlurmTask, idText, 0)
	if err != nil {
		return 0, 0, err
	}
	cnt, ok := os.LookupEnv(EnvSlurmCount)
	if !ok {
		return 0, 0, fmt.Errorf("%s is set but %s is not (Slurm 17.11 or later sets both)", EnvSlurmTask, EnvSlurmCount)
	}
	n, err := envInt(EnvSlurmCount, cnt, 1)
	if err != nil {
		return 0, 0, err
	}
	lo, step := 0, 1
	if v, ok := os.LookupEnv(EnvSlurmMin); ok {
		if lo, err = envInt(EnvSlurmMin, v, 0); err != nil {
			return 0, 0, err
		}
	}
	if v, ok := os.LookupEnv(EnvSlurmStep); ok {
		if step, err = envInt(EnvSlurmStep, v, 1); err != nil {
			return 0, 0, err
		}
	}
	if id < lo || (id-lo)%step != 0 || (id-lo)/step >= n {
		return 0, 0, fmt.Errorf("%s=%d is not one of %d evenly stepped task ids from %d (step %d); submit with --array=0-%d", EnvSlurmTask, id, n, lo, step, n-1)
	}
	return (id - lo) / step, n, nil
}

// envInt parses the value of an environment variable as an integer of at least lo.
func envInt(name, v string, lo int) (int, error) {
	x, err := strconv.Atoi(v)
	if err != nil || x < lo {
		return 0, fmt.Errorf("%s=%q is not an integer >= %d", name, v, lo)
	}
	return x, nil
}
