package main

// Starting a local versitygw S3 server. This follows internal/testenv
// (which is a testing.TB helper and so cannot be used here): a posix backend
// in a directory whose filesystem supports user xattrs (else the sidecar
// metadata mode), root credentials from the environment, --keep-alive, and a
// readiness poll on "/".

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const region = "us-east-1"

type s3Server struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Dir       string // posix backend root
	LogFile   string
	Sidecar   bool

	baseDir string
	proc    *proc
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func supportsUserXattr(dir string) bool {
	const name = "user.walsync.bench.probe"
	if err := syscall.Setxattr(dir, name, []byte("1"), 0); err != nil {
		return false
	}
	_ = syscall.Removexattr(dir, name)
	return true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startS3 starts versitygw with its data and log under baseDir.
func startS3(bin, baseDir string) (*s3Server, error) {
	s := &s3Server{
		AccessKey: "WB" + strings.ToUpper(randomHex(9)),
		SecretKey: randomHex(20),
		Dir:       filepath.Join(baseDir, "data"),
		LogFile:   filepath.Join(baseDir, "versitygw.log"),
		Sidecar:   !supportsUserXattr(baseDir),
		baseDir:   baseDir,
	}
	for _, d := range []string{s.Dir, filepath.Join(baseDir, "meta")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.Endpoint = "http://" + addr
		args := []string{"--port", addr, "--region", region, "--keep-alive", "posix"}
		if s.Sidecar {
			args = append(args, "--sidecar", filepath.Join(baseDir, "meta"))
		}
		args = append(args, s.Dir)
		var env []string
		for _, kv := range os.Environ() {
			k, _, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(k, "VGW_") || strings.HasPrefix(k, "ROOT_") || k == "LOGFILE" || k == "WEBHOOK" {
				continue
			}
			env = append(env, kv)
		}
		env = append(env, "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
		cmd := exec.Command(bin, args...)
		cmd.Dir = baseDir
		cmd.Env = env
		p, err := startProc(cmd, s.LogFile)
		if err != nil {
			return nil, fmt.Errorf("starting versitygw: %w", err)
		}
		s.proc = p
		if err := waitHTTP(s.Endpoint, p, 30*time.Second); err != nil {
			_ = p.stop(5 * time.Second)
			lastErr = fmt.Errorf("versitygw %s: %w; log tail:\n%s", strings.Join(args, " "), err, tail(s.LogFile, 2048))
			if strings.Contains(tail(s.LogFile, 4096), "address already in use") {
				continue
			}
			return nil, lastErr
		}
		return s, nil
	}
	return nil, lastErr
}

func waitHTTP(endpoint string, p *proc, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	for {
		if p.exited() {
			return fmt.Errorf("exited during startup: %v", p.waitErr)
		}
		resp, err := client.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *s3Server) stop() error { return s.proc.stop(10 * time.Second) }

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// proc is a child process that the kernel kills if we die (Pdeathsig on a
// thread kept locked for the child's lifetime).
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	state   *os.ProcessState
}

func startProc(cmd *exec.Cmd, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		defer close(p.done)
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		p.state = cmd.ProcessState
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signalAndWait sends SIGTERM and waits up to timeout; it reports whether
// the process exited by itself (else it was killed).
func (p *proc) signalAndWait(timeout time.Duration) (exitedAlone bool) {
	if p.exited() {
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

func (p *proc) stop(timeout time.Duration) error {
	if !p.signalAndWait(timeout) {
		return fmt.Errorf("pid %d did not stop within %v after SIGTERM; killed", p.pid(), timeout)
	}
	return nil
}
