//go:build linux

package s3server

import "syscall"

// childSysProcAttr makes the kernel kill the child if the thread that
// started it dies, so that a program that exits without stopping it (panic,
// timeout, os.Exit) does not leave an orphan behind. The thread is kept
// alive for the child's lifetime by StartProcess.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
