package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// wakeRuns is how many times each database of TestWakeNoBusy is woken:
// WALSYNC_WAKE_RUNS, default 25 (4 databases: 100 wakes).
func wakeRuns(t *testing.T) int {
	if v := os.Getenv("WALSYNC_WAKE_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("WALSYNC_WAKE_RUNS=%q: want a positive number", v)
		}
		return n
	}
	return 25
}

// appRun runs statements in one sqlite3 process with no busy timeout, as
// many scripts and CLIs do, and returns its failure, if any.
func appRun(db, statements string) error {
	cmd := exec.Command("sqlite3", "-batch", "-bail", db)
	cmd.Stdin = strings.NewReader(statements)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "locked") {
		return fmt.Errorf("sqlite3: %v: %s", err, out)
	}
	return nil
}

// TestWakeNoBusy: an application with no busy_timeout writes to a
// database walsync has released (cold); walsync wakes on its first write.
// On main 9 of 25 such runs failed with "database is locked": waking took
// the write lock (the seal) while the application wrote. Waking now takes
// no write lock, and releasing none either.
func TestWakeNoBusy(t *testing.T) {
	b := backendArgs{url: filepath.Join(t.TempDir(), "replica")}
	dir := t.TempDir()
	var dbs []string
	for i := range 4 {
		p := filepath.Join(dir, fmt.Sprintf("t%d", i), "c.db")
		newTenantDB(t, p)
		dbs = append(dbs, p)
	}
	w := startWatch(t, b, append(dbs, "--idle-timeout", "300ms", "--sync-interval", "50ms")...)
	runs := wakeRuns(t)
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for run := range runs {
				if !waitState(w, db, "cold", 30*time.Second) {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s run %d: not released within 30 s", db, run))
					mu.Unlock()
					return
				}
				var sb strings.Builder
				for k := range 20 {
					fmt.Fprintf(&sb, "INSERT INTO t (v) VALUES ('d%d-r%d-%d');\n", i, run, k)
				}
				if err := appRun(db, sb.String()); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s run %d: %v", db, run, err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	w.stop(t)
	if len(failures) > 0 {
		t.Fatalf("%d of %d application runs failed:\n%s", len(failures), runs*len(dbs), strings.Join(failures, "\n"))
	}
	t.Logf("%d application runs on a released database, 0 failed", runs*len(dbs))
	for i, db := range dbs {
		name := fmt.Sprintf("t%d/c", i)
		if got, stderr := restoreRows(t, b, name); got != tableRows(t, db) {
			t.Fatalf("%s restores %q (%s), the database has %q", name, got, stderr, tableRows(t, db))
		}
	}
}

func waitState(w *watchProc, db, state string, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(25 * time.Millisecond) {
		st, err := fetchStatus(w.addr)
		if err != nil {
			continue
		}
		for _, s := range st.DBs {
			if s.Path == db && s.State == state && !s.Pending {
				return true
			}
		}
	}
	return false
}

// TestCreateUnderWatchedDir: an application with no busy_timeout creates
// databases in a directory walsync watches: it creates the file in
// rollback mode, switches it to WAL, then writes, each step a new process
// (a migration tool, then the app). walsync must take no lock while the
// database is not in WAL mode, and none that fails the app's writes
// after. On main the first snapshot of a new database took the write
// lock.
func TestCreateUnderWatchedDir(t *testing.T) {
	b := backendArgs{url: filepath.Join(t.TempDir(), "replica")}
	dir := t.TempDir()
	w := startWatch(t, b, "--dir", dir, "--recursive", "--sync-interval", "50ms", "--idle-timeout", "300ms")
	n := 20
	var failures []string
	for i := range n {
		db := filepath.Join(dir, fmt.Sprintf("t%02d", i), "app.db")
		if err := os.MkdirAll(filepath.Dir(db), 0o755); err != nil {
			t.Fatal(err)
		}
		steps := []string{
			"CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('created');",
			"PRAGMA journal_mode=WAL;",
		}
		// Then the app writes, back to back, over the time walsync takes
		// to find and open the new database.
		steps = append(steps, strings.Repeat("INSERT INTO t (v) VALUES ('written');\n", 300))
		for k, st := range steps {
			if err := appRun(db, st); err != nil {
				failures = append(failures, fmt.Sprintf("%s step %d: %v", db, k, err))
			}
			time.Sleep(time.Duration(k*37%40) * time.Millisecond)
		}
	}
	for i := range n {
		db := filepath.Join(dir, fmt.Sprintf("t%02d", i), "app.db")
		want := tableRows(t, db)
		waitFor(t, 30*time.Second, func() bool { got, _ := restoreRows(t, b, fmt.Sprintf("t%02d/app.db", i)); return got == want }, db+" to be replicated")
	}
	w.stop(t)
	if len(failures) > 0 {
		t.Fatalf("%d of %d application steps failed:\n%s", len(failures), 3*n, strings.Join(failures, "\n"))
	}
}
