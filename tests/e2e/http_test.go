package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// lockedBuffer is a log several goroutines read while walsync writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// statusProc is a "walsync watch --addr" started by these tests.
type statusProc struct {
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

// startStatusWatch runs argv (walsync, or a wrapper that execs it) and
// waits until it serves status at addr. It is killed when the test ends.
func startStatusWatch(t *testing.T, addr string, argv ...string) *statusProc {
	t.Helper()
	p := &statusProc{cmd: exec.Command(argv[0], argv[1:]...), log: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("walsync log:\n%s", tail(p.log.String(), 6000))
		}
	})
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/status"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("walsync exited before serving status:\n%s", p.log.String())
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("walsync does not serve status at %s:\n%s", addr, p.log.String())
		}
	}
}

// stop sends SIGTERM and fails the test unless walsync exits 0.
func (p *statusProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("walsync did not exit within 60 s of SIGTERM")
	}
	if !p.cmd.ProcessState.Success() {
		t.Fatalf("walsync exited with %v:\n%s", p.cmd.ProcessState, tail(p.log.String(), 4000))
	}
}

func httpGetCode(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// holdIdleConn opens a connection to addr, makes one keep-alive request
// for /status and leaves the connection idle, open. It reports whether
// the request was answered (false: refused, closed or not accepted in
// time).
func holdIdleConn(addr string) (net.Conn, bool) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, false
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET /status HTTP/1.1\r\nHost: walsync\r\n\r\n"); err != nil {
		return c, false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetDeadline(time.Time{})
	return c, err == nil && resp.StatusCode == http.StatusOK
}

func openFDs(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds)
}

// TestStatusPortCannotStarveReplication: walsync watch runs under an fd
// limit of 256 (hard limit too, so it cannot raise it) with --addr. 400
// clients each make a keep-alive request to the status port and then hold
// the connection idle. Replication must go on: a write to the watched
// database reaches the replica and a database created afterwards is found
// and replicated (each restore equals its source), the status server holds
// at most its connection cap, says once that it refused connections, and
// serves again once the clients are gone.
func TestStatusPortCannotStarveReplication(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("this test needs prlimit (util-linux): %v", err)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "tenants")
	a := filepath.Join(root, "a.db")
	os.MkdirAll(root, 0o755)
	sqlite3(t, a, "PRAGMA journal_mode=WAL; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('first');")
	replica := filepath.Join(dir, "replica")
	addr := freePort(t)
	p := startStatusWatch(t, addr, prlimit, "--nofile=256:256", "--", testenv.WalsyncBinary(t), "watch", "--dir", root, "-b", replica,
		"--addr", addr, "--sync-interval", "200ms")
	pid := p.cmd.Process.Pid
	restoresAs := func(name, src string) bool {
		out := filepath.Join(t.TempDir(), "restored.db")
		if _, _, code := walsyncCmd(t, nil, "restore", name, "-o", out, "-b", replica); code != 0 {
			return false
		}
		return sqlite3(t, out, ".dump") == sqlite3(t, src, ".dump")
	}
	waitUntil(t, 30*time.Second, "a.db's first replication", func() bool { return restoresAs("a.db", a) })
	base := openFDs(pid)

	const clients = 400
	conns := make([]net.Conn, clients)
	answered := make([]bool, clients)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); conns[i], answered[i] = holdIdleConn(addr) }()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	served := 0
	for _, ok := range answered {
		if ok {
			served++
		}
	}
	held := openFDs(pid)
	t.Logf("%d of %d idle keep-alive clients were served; walsync holds %d fds (%d before them)", served, clients, held, base)

	// Replication goes on while the clients hold their connections.
	sqlite3(t, a, "INSERT INTO notes (body) VALUES ('written while the status port is flooded');")
	b := filepath.Join(root, "b.db")
	sqlite3(t, b, "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES ('created while the status port is flooded');")
	waitUntil(t, 45*time.Second, "the write to a.db and the new b.db to be replicated", func() bool {
		return restoresAs("a.db", a) && restoresAs("b.db", b)
	})
	if held > base+80 {
		t.Errorf("the status server holds %d fds for idle clients (%d before them): it is not capped", held-base, base)
	}
	if served > 80 {
		t.Errorf("%d idle clients were served at once: the status server's connections are not capped", served)
	}
	if n := strings.Count(p.log.String(), "status server refuses connections"); n != 1 {
		t.Errorf("the log says %d times that the status server refused connections, want once", n)
	}
	if strings.Contains(p.log.String(), "too many open files") {
		t.Errorf("walsync ran out of fds while the status port was flooded")
	}

	// Gone clients free their slots.
	for i, c := range conns {
		if c != nil {
			c.Close()
			conns[i] = nil
		}
	}
	waitUntil(t, 15*time.Second, "status to be served again", func() bool {
		resp, err := http.Get("http://" + addr + "/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	p.stop(t)
}

// TestStatusPprofOnlyWithFlag: the status port serves /debug/pprof/ only
// with --pprof, never /debug/pprof/cmdline (a command line can hold an
// endpoint URL), and an --addr beyond this machine warns about what it
// exposes: database paths and errors, and profiles with --pprof.
func TestStatusPprofOnlyWithFlag(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "d", "app.db")
	os.MkdirAll(filepath.Dir(db), 0o755)
	sqlite3(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t (x);")
	replica := filepath.Join(dir, "replica")
	for _, c := range []struct {
		host  string
		pprof bool
	}{{"127.0.0.1", false}, {"127.0.0.1", true}, {"0.0.0.0", false}, {"0.0.0.0", true}} {
		_, port, _ := net.SplitHostPort(freePort(t))
		args := []string{testenv.WalsyncBinary(t), "watch", db, "-b", replica, "--addr", net.JoinHostPort(c.host, port)}
		if c.pprof {
			args = append(args, "--pprof")
		}
		p := startStatusWatch(t, "127.0.0.1:"+port, args...)
		base := "http://127.0.0.1:" + port
		want := http.StatusNotFound
		if c.pprof {
			want = http.StatusOK
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1"} {
			if got := httpGetCode(t, base+path); got != want {
				t.Errorf("--addr %s, --pprof %v: GET %s: HTTP %d, want %d", c.host, c.pprof, path, got, want)
			}
		}
		if got := httpGetCode(t, base+"/debug/pprof/cmdline"); got != http.StatusNotFound {
			t.Errorf("--addr %s, --pprof %v: GET /debug/pprof/cmdline: HTTP %d, want 404", c.host, c.pprof, got)
		}
		if got := httpGetCode(t, base+"/status"); got != http.StatusOK {
			t.Errorf("--addr %s, --pprof %v: GET /status: HTTP %d", c.host, c.pprof, got)
		}
		p.stop(t)
		log := p.log.String()
		warned := strings.Contains(log, "beyond this machine")
		switch {
		case c.host == "127.0.0.1" && warned:
			t.Errorf("--addr %s warns about exposure:\n%s", c.host, log)
		case c.host == "0.0.0.0" && !warned:
			t.Errorf("--addr %s does not warn that status is served beyond this machine:\n%s", c.host, log)
		case c.host == "0.0.0.0" && !(strings.Contains(log, "database paths") && strings.Contains(log, "errors")):
			t.Errorf("--addr %s: the warning does not say it exposes database paths and errors:\n%s", c.host, log)
		case c.host == "0.0.0.0" && strings.Contains(log, "profiles") != c.pprof:
			t.Errorf("--addr %s, --pprof %v: the warning mentions profiles: %v, want %v:\n%s", c.host, c.pprof, !c.pprof, c.pprof, log)
		}
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}
