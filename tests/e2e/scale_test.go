package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage/file"
)

// scaleDBs is the number of tenant databases of TestFDLimit;
// WALSYNC_SCALE_DBS raises it for longer runs.
func scaleDBs(t *testing.T, def int) int {
	if v := os.Getenv("WALSYNC_SCALE_DBS"); v != "" {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1 {
			t.Fatalf("WALSYNC_SCALE_DBS=%q: want a positive number", v)
		}
		return n
	}
	return def
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func fetchStatus(addr string) (engine.Status, error) {
	var st engine.Status
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// TestFDLimit: 1,000 tenant databases found with --dir under `ulimit -n
// 256` (hard limit too, so walsync cannot raise it). Holding every one
// open would need far more fds: walsync must hold fewer at once, say so in
// its log, and still replicate every database and every write.
func TestFDLimit(t *testing.T) {
	n := scaleDBs(t, 1000)
	dir := t.TempDir()
	root := filepath.Join(dir, "tenants")
	seed := filepath.Join(dir, "seed.db")
	sqlite3(t, seed, "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('seed');")
	seedBytes, err := os.ReadFile(seed)
	if err != nil {
		t.Fatal(err)
	}
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(root, fmt.Sprintf("t%04d", i), "app.db")
		if err := os.MkdirAll(filepath.Dir(paths[i]), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(paths[i], seedBytes, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	replica := filepath.Join(dir, "replica")
	addr := freePort(t)
	var logBuf bytes.Buffer
	cmd := exec.Command("bash", "-c", `ulimit -n 256 && exec "$@"`, "walsync", testenv.WalsyncBinary(t), "watch",
		"--dir", root, "--recursive", "-b", replica, "--addr", addr,
		"--sync-interval", "200ms", "--idle-timeout", "1s", "--snapshot-interval", "0", "--levels", "none")
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
			t.Logf("walsync log:\n%s", tail(logBuf.String(), 4000))
		}
	}()
	waitStatus := func(what string, d time.Duration, ok func(engine.Status) bool) engine.Status {
		t.Helper()
		var st engine.Status
		var err error
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if st, err = fetchStatus(addr); err == nil && ok(st) {
				return st
			}
		}
		t.Fatalf("timed out after %s waiting for %s; last status: %d dbs, %d hot, %d cold, %d failing (error %v)",
			d, what, st.Databases, st.Hot, st.Cold, st.Failing, err)
		return st
	}
	waitStatus("every database to be replicated once", 4*time.Minute, func(st engine.Status) bool {
		return st.Databases == n && st.Cold+st.Hot == n && st.MaxLag == 0
	})

	// Writes to a tenth of the databases, from this (other) process.
	rnd := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < n/10; i++ {
		p := paths[rnd.IntN(n)]
		db, err := sql.Open("sqlite3", "file:"+p+"?_busy_timeout=10000")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("INSERT INTO t (v) VALUES (?)", fmt.Sprint("write ", i)); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	time.Sleep(time.Second)
	st := waitStatus("every write to be shipped", 4*time.Minute, func(st engine.Status) bool { return st.MaxLag == 0 && st.Failing == 0 })
	t.Logf("status: %d databases, %d hot (hot set now %d), %d cold", st.Databases, st.Hot, st.HotSet, st.Cold)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("walsync exited with %v\n%s", err, tail(logBuf.String(), 4000))
	}
	stopped = true
	log := logBuf.String()
	if !strings.Contains(log, "out of file descriptors") && !strings.Contains(log, "hot set full") {
		t.Fatalf("walsync never said it was short of fds; the test proves nothing:\n%s", tail(log, 3000))
	}
	if strings.Contains(log, "panic") {
		t.Fatalf("walsync panicked:\n%s", tail(log, 3000))
	}
	client := file.New(replica)
	for i, p := range paths {
		name := fmt.Sprintf("t%04d/app.db", i)
		out := filepath.Join(dir, "restored.db")
		os.Remove(out)
		if _, err := restore.Restore(context.Background(), restore.Options{Client: client.Sub(name), Output: out}); err != nil {
			t.Fatalf("restore %s: %v", name, err)
		}
		if got, want := tableRows(t, out), tableRows(t, p); got != want {
			t.Fatalf("%s: restored %q, database has %q", name, got, want)
		}
	}
}

func tableRows(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var s sql.NullString
	if err := db.QueryRow("SELECT group_concat(id || '=' || v, ',') FROM (SELECT * FROM t ORDER BY id)").Scan(&s); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s.String
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
