//go:build !linux

package s3server

// supportsUserXattr reports false on platforms where the probe is not
// implemented; the server then keeps metadata in a sidecar directory.
func supportsUserXattr(string) bool { return false }
