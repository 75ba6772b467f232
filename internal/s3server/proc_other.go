//go:build !linux

package s3server

import "syscall"

// childSysProcAttr returns nil: only Linux has a parent-death signal, so
// elsewhere the server is stopped by Stop alone.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
