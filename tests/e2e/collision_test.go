package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// watchProc is a `walsync watch` process under test.
type watchProc struct {
	cmd  *exec.Cmd
	logs *lockedBuffer
	addr string
}

func startWatch(t *testing.T, b backendArgs, args ...string) *watchProc {
	t.Helper()
	w := &watchProc{logs: &lockedBuffer{}, addr: freePort(t)}
	all := append(append([]string{"watch"}, args...), append([]string{"-b", b.url, "--addr", w.addr}, b.args...)...)
	w.cmd = exec.Command(testenv.WalsyncBinary(t), all...)
	w.cmd.Env = append(os.Environ(), b.env...)
	w.cmd.Stderr = w.logs
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cmd.Process.Kill(); w.cmd.Wait() })
	return w
}

func (w *watchProc) stop(t *testing.T) {
	t.Helper()
	w.cmd.Process.Signal(syscall.SIGTERM)
	if err := w.cmd.Wait(); err != nil {
		t.Fatalf("watch did not exit cleanly: %v\n%s", err, w.logs)
	}
}

// restoreRows restores name with the CLI and returns its rows of t.
func restoreRows(t *testing.T, b backendArgs, name string, extra ...string) (string, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored.db")
	_, stderr, code := walsyncCmd(t, b.env, append(append([]string{"restore", name, "-o", out, "-b", b.url}, extra...), b.args...)...)
	if code != 0 {
		return "", stderr
	}
	return tableRows(t, out), ""
}

func newTenantDB(t *testing.T, path string, rows ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	sql := "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
	for _, r := range rows {
		sql += fmt.Sprintf("INSERT INTO t (v) VALUES ('%s');", r)
	}
	sqlite3(t, path, sql)
}

// TestNameCollision: two databases that map to one replica name. The
// first keeps the replica, whichever way each entered; the second is
// refused with an ERROR naming both paths, shown in status, and never
// writes a byte there. On main both wrote into one replica and the first's
// later commits existed at no TXID.
func TestNameCollision(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("dir-found-later", func(t *testing.T) {
				b := mk()
				dir := t.TempDir()
				a, bb := filepath.Join(dir, "A"), filepath.Join(dir, "B")
				first, second := filepath.Join(a, "t1", "app.db"), filepath.Join(bb, "t1", "app.db")
				newTenantDB(t, first, "a1")
				os.MkdirAll(bb, 0o755)
				w := startWatch(t, b, "--dir", a, "--dir", bb, "--recursive", "--sync-interval", "100ms")
				waitFor(t, 20*time.Second, func() bool { got, _ := restoreRows(t, b, "t1/app.db"); return got == "1=a1" }, "A's database to be replicated")

				newTenantDB(t, second, "b1", "b2")
				waitFor(t, 20*time.Second, func() bool { return strings.Contains(w.logs.String(), "refusing the second") }, "the refusal in the log")
				sqlite3(t, first, "INSERT INTO t (v) VALUES ('a2'); INSERT INTO t (v) VALUES ('a3');")
				sqlite3(t, second, "INSERT INTO t (v) VALUES ('b3');")
				waitFor(t, 20*time.Second, func() bool { got, _ := restoreRows(t, b, "t1/app.db"); return got == "1=a1,2=a2,3=a3" }, "A's later commits to be replicated")
				checkRefused(t, w, second, first)
				w.stop(t)
				assertOnlyFirst(t, b, "t1/app.db", "1=a1,2=a2,3=a3", w.logs.String(), first, second)
			})
			t.Run("explicit-and-dir", func(t *testing.T) {
				b := mk()
				dir := t.TempDir()
				first := filepath.Join(dir, "X", "t1", "app.db")
				second := filepath.Join(dir, "Y", "t1", "app")
				newTenantDB(t, first, "x1")
				newTenantDB(t, second, "y1")
				w := startWatch(t, b, first, "--dir", filepath.Join(dir, "Y"), "--pattern", "*", "--recursive", "--sync-interval", "100ms")
				waitFor(t, 20*time.Second, func() bool { got, _ := restoreRows(t, b, "t1/app"); return got == "1=x1" }, "X's database to be replicated")
				sqlite3(t, second, "INSERT INTO t (v) VALUES ('y2');")
				sqlite3(t, first, "INSERT INTO t (v) VALUES ('x2');")
				waitFor(t, 20*time.Second, func() bool { got, _ := restoreRows(t, b, "t1/app"); return got == "1=x1,2=x2" }, "X's later commit")
				checkRefused(t, w, second, first)
				w.stop(t)
				assertOnlyFirst(t, b, "t1/app", "1=x1,2=x2", w.logs.String(), first, second)
			})
			t.Run("case-and-unicode", func(t *testing.T) {
				b := mk()
				dir := t.TempDir()
				// "café" precomposed and with a combining accent, and in
				// another case: one name on a normalising or
				// case-insensitive store.
				first := filepath.Join(dir, "D", "caf\u00e9", "app.db")
				second := filepath.Join(dir, "D", "CAFE\u0301", "app.db")
				newTenantDB(t, first, "c1")
				newTenantDB(t, second, "c2")
				w := startWatch(t, b, "--dir", filepath.Join(dir, "D"), "--recursive", "--sync-interval", "100ms")
				time.Sleep(3 * time.Second)
				w.stop(t)
				if !strings.Contains(w.logs.String(), "refusing the second") {
					t.Fatalf("no refusal:\n%s", w.logs)
				}
			})
		})
	}
}

// TestNameCollisionThroughSymlink: two config entries whose file replicas
// are one directory reached through a symbolic link are one replica: the
// second database is refused, not merged into the first's replica.
func TestNameCollisionThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "A", "app.db"), filepath.Join(dir, "B", "app.db")
	newTenantDB(t, first, "a1")
	newTenantDB(t, second, "b1")
	rep := filepath.Join(dir, "rep")
	if err := os.MkdirAll(rep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rep, filepath.Join(dir, "repl")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "walsync.yml")
	yml := "dbs:\n" +
		"  - path: " + first + "\n    replica:\n      url: file://" + filepath.Join(rep, "a") + "\n" +
		"  - path: " + second + "\n    replica:\n      url: file://" + filepath.Join(dir, "repl", "a") + "\n"
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	cmd := exec.Command(testenv.WalsyncBinary(t), "watch", "--config", cfg, "--sync-interval", "100ms")
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	b := backendArgs{url: rep}
	waitFor(t, 20*time.Second, func() bool { got, _ := restoreRows(t, b, "a"); return got == "1=a1" }, "the first database's replica")
	time.Sleep(time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if got, _ := restoreRows(t, b, "a"); got != "1=a1" {
		t.Fatalf("the replica restores %q, the first database's rows are 1=a1", got)
	}
	if !strings.Contains(logs.String(), "refusing the second") {
		t.Fatalf("no refusal of the second database:\n%s", logs)
	}
}

func checkRefused(t *testing.T, w *watchProc, refused, owner string) {
	t.Helper()
	st, err := fetchStatus(w.addr)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range st.DBs {
		if d.Path == refused {
			found = true
			if d.State != "refused" || !strings.Contains(d.Error, owner) {
				t.Fatalf("status of the refused database: state %q error %q", d.State, d.Error)
			}
		}
	}
	if !found || st.Refused != 1 {
		t.Fatalf("status does not show %s as refused (refused=%d): %+v", refused, st.Refused, st.DBs)
	}
}

func assertOnlyFirst(t *testing.T, b backendArgs, name, want, logs, first, second string) {
	t.Helper()
	var line string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, "refusing the second") {
			line = l
		}
	}
	if !strings.Contains(line, first) || !strings.Contains(line, second) || !strings.Contains(line, "replica=") {
		t.Fatalf("no ERROR naming both paths and the replica:\n%s", logs)
	}
	// Every TXID of the replica is a state of the first database.
	for txid := 1; ; txid++ {
		got, stderr := restoreRows(t, b, name, "--txid", fmt.Sprint(txid))
		if stderr != "" {
			if txid == 1 {
				t.Fatalf("restore --txid 1: %s", stderr)
			}
			break
		}
		if !strings.HasPrefix(want, got) {
			t.Fatalf("TXID %d restores %q, which the first database never had (want a prefix of %q)", txid, got, want)
		}
	}
	if got, stderr := restoreRows(t, b, name); got != want {
		t.Fatalf("latest restores %q (%s), want %q", got, stderr, want)
	}
}

func waitFor(t *testing.T, d time.Duration, f func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}
