package testmodels

import (
	"os"
	"strings"
	"testing"
)

// RequireOrSkip does nothing when err is nil; otherwise it skips the test with err's message,
// or fails it when the environment variable CI is set (to anything but "", "0" or "false"):
// under CI (.ci/run sets CI=true) test material must be there, and a test may not skip.
func RequireOrSkip(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if UnderCI() {
		t.Fatalf("%v (CI is set: this test may not skip)", err)
	}
	t.Skip(err)
}

// UnderCI says whether the environment variable CI is set to anything but "", "0" or "false".
func UnderCI() bool {
	switch strings.ToLower(os.Getenv("CI")) {
	case "", "0", "false":
		return false
	}
	return true
}
