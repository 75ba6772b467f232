package fsx

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func renameExcl(from, to string) error {
	return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
}

// unsupported: old kernels (ENOSYS) and file systems without
// RENAME_NOREPLACE (EINVAL, EOPNOTSUPP).
func unsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)
}

// ChangeTime returns fi's status change time (ctime), which no utimes call
// can set back: a write that restored the mtime still moves it.
func ChangeTime(fi os.FileInfo) time.Time {
	return time.Unix(fi.Sys().(*syscall.Stat_t).Ctim.Unix())
}

// GetLkAll is the fcntl command that reports a conflicting lock of any
// process, this one included (F_OFD_GETLK); F_GETLK reports only other
// processes' and is the fallback where this one fails with EINVAL.
const GetLkAll = unix.F_OFD_GETLK
