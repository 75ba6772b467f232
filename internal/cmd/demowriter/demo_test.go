package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// ptyDriver runs a command on a new pseudo-terminal, copies its output to
// stdout, types Ctrl-C once the output holds "press Ctrl-C" and a further
// argv[1] seconds have passed, and exits with the command's status.
const ptyDriver = `
import os, pty, select, sys, time
after = float(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out, ready, sent = b"", None, False
while True:
    if ready is None and b"press Ctrl-C" in out:
        ready = time.time()
    if ready is not None and not sent and time.time() - ready > after:
        os.write(fd, b"\x03")
        sent = True
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        out += data
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        if data:
            continue
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
`

// TestDemo runs scripts/demo.sh on a pseudo-terminal for a few seconds,
// stops it with Ctrl-C (SIGINT to its process group, as a terminal does)
// and checks that it showed its syncs and compared the restore with the
// database row by row; then runs it again, which must resume without a
// warning.
func TestDemo(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 (for its pty module) is needed to run the demo on a terminal")
	}
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Fatal("setsid (util-linux) is needed by scripts/demo.sh")
	}
	root := testenv.RepoRoot(t)
	demo := filepath.Join(t.TempDir(), "demo")
	runDemo := func(secs string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "python3", "-c", ptyDriver, secs, "bash", "scripts/demo.sh")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "WALSYNC_DEMO_DIR="+demo)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("demo: %v\n%s", err, out)
		}
		return strings.ReplaceAll(string(out), "\r\n", "\n")
	}

	out := runDemo("3.5")
	for _, re := range []string{
		`as "demo/app"`,
		`synced TXID \d+ +1 commit\(s\)`,
		`OK: \S+restored.db matches \S+app.db row by row: [1-9]\d* rows`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("the demo's output has no %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "MISMATCH") || strings.Contains(out, "warning(s) or error(s)") {
		t.Errorf("the demo reports a problem:\n%s", out)
	}

	out = runDemo("1.5")
	log, err := os.ReadFile(filepath.Join(demo, "walsync.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "resuming") || !strings.Contains(string(log), "resuming replication") {
		t.Errorf("the second run did not resume:\n%s\n%s", out, log)
	}
	if strings.Contains(string(log), "level=WARN") || strings.Contains(string(log), "not running") || !strings.Contains(out, "row by row") {
		t.Errorf("the second run warned, or did not compare:\n%s\n%s", out, log)
	}
}
