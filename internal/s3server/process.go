package s3server

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// Process is a child process that does not outlive us: on Linux the kernel
// kills it when the thread that started it exits (a parent-death signal),
// and that thread stays locked to the goroutine waiting for the child. A
// test binary or benchmark that dies without stopping its children (panic,
// timeout, os.Exit) so leaves none behind. versitygw runs in one; bench
// runs the replicators it measures in them too.
type Process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	exited  atomic.Bool   // set just before done is closed
	waitErr error         // cmd.Wait's result, valid once exited
}

// StartProcess starts cmd with its standard output and error appended to
// logPath. It sets cmd.SysProcAttr.
func StartProcess(cmd *exec.Cmd, logPath string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the log of %s: %w", cmd.Path, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childSysProcAttr()
	p := &Process{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that started the
		// child exits; keep this thread alive, and to ourselves, until the
		// child has exited. It is never unlocked, so it exits with us.
		runtime.LockOSThread()
		defer close(p.done)
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		p.exited.Store(true)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool { return p.exited.Load() }

// Err returns what waiting for the process returned; nil while it runs.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.waitErr
}

// State returns the exit state (with its rusage); nil while it runs.
func (p *Process) State() *os.ProcessState {
	if !p.Exited() {
		return nil
	}
	return p.cmd.ProcessState
}

// Stop sends SIGTERM, waits up to timeout, then sends SIGKILL. It reports
// whether the process exited by itself (true also when it had exited
// already) and returns once it has exited.
func (p *Process) Stop(timeout time.Duration) (exitedAlone bool) {
	if p.Exited() {
		return true
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return false
}
