package fsx

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func renameExcl(from, to string) error {
	return unix.RenamexNp(from, to, unix.RENAME_EXCL)
}

// unsupported: file systems without RENAME_EXCL (ENOTSUP; EINVAL on some
// network file systems).
func unsupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)
}

// ChangeTime returns fi's status change time (ctime), which no utimes call
// can set back: a write that restored the mtime still moves it.
func ChangeTime(fi os.FileInfo) time.Time {
	return time.Unix(fi.Sys().(*syscall.Stat_t).Ctimespec.Unix())
}

// GetLkAll is F_GETLK on macOS, which has no OFD locks: it reports only
// other processes' locks.
const GetLkAll = unix.F_GETLK
