//go:build !unix

package testmodels

// lockFile does not lock where flock is unavailable: concurrent processes may then export the
// corpus twice, and the rename into place still keeps a complete folder.
func lockFile(path string) (unlock func(), err error) { return func() {}, nil }
