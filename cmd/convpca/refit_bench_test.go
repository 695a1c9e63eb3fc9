package main

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/convpca/convpca/testmodels"
)

// BenchmarkRefitMemory reports the peak resident memory of `compress --sequential --refit`
// on the bundled model with 1,000 and 10,000 calibration images: the normal equations are
// streamed sums, so it should not grow with the number of samples. Run with
//
//	go test ./cmd/convpca -run '^$' -bench RefitMemory -benchtime 1x
func BenchmarkRefitMemory(b *testing.B) {
	data, err := testmodels.MNISTDir()
	if err != nil {
		b.Skip(err)
	}
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				cmd := subprocessCmd("compress", testmodels.Path("mnist_cnn.onnx"), "--calib", filepath.Join(data, "train-images-idx3-ubyte.gz"),
					"--max-samples", fmt.Sprint(n), "--provider", "cpu", "--target-macs", "0.1", "--sequential", "--refit", "-q",
					"--out", filepath.Join(b.TempDir(), "m.onnx"))
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%v\n%s", err, out)
				}
				b.ReportMetric(float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)/1024, "peak-MiB")
			}
		})
	}
}
