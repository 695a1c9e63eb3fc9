// Package filehash names files by their content: the SHA-256 of a file, in hex. It serves the
// latency cache (which onnxruntime library measured a table) and ocrbench (which convpca
// binary compressed a model).
package filehash

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
)

// SHA256 returns the SHA-256 of the file at path as 64 lowercase hex digits.
func SHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
