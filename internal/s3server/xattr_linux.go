//go:build linux

package s3server

import "syscall"

// supportsUserXattr reports whether dir's filesystem accepts user.* extended
// attributes, which versitygw's posix backend uses for object metadata.
func supportsUserXattr(dir string) bool {
	const name = "user.walsync.probe"
	if err := syscall.Setxattr(dir, name, []byte("1"), 0); err != nil {
		return false
	}
	_ = syscall.Removexattr(dir, name)
	return true
}
