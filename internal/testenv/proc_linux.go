//go:build linux

package testenv

import "syscall"

// childSysProcAttr makes the kernel kill the server if the thread that started
// it dies, so that a test binary that exits without calling Stop (panic,
// timeout, os.Exit) does not leave an orphaned server behind. The thread is
// kept alive for the server's lifetime by runServer.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
