package engine

import (
	"errors"
	"os"
	"strings"
	"syscall"
)

// isFDLimit reports whether err came from running out of file
// descriptors. SQLite reports that as "unable to open database file", as it
// does a missing directory, so the process's fd count decides.
func isFDLimit(err error) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return true
	}
	if err == nil || !strings.Contains(err.Error(), "unable to open database file") {
		return false
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return false
	}
	fds, err := os.ReadDir("/proc/self/fd")
	return err == nil && uint64(len(fds)) >= lim.Cur*9/10
}
