package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// Issue 19: a restore never destroys before it has succeeded. These run the
// walsync binary against file replicas.

// snapshotted makes dir/d/app.db with rows rows of size random bytes,
// snapshots it into dir/replica as "d/app" and returns the database.
func snapshotted(t *testing.T, dir string, rows, size int) string {
	t.Helper()
	db := filepath.Join(dir, "d", "app.db")
	os.MkdirAll(filepath.Dir(db), 0o755)
	sqlite3(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, data BLOB);"+
		"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < "+strconv.Itoa(rows)+") "+
		"INSERT INTO notes (body, data) SELECT 'note ' || n, randomblob("+strconv.Itoa(size)+") FROM c;")
	if _, stderr, code := walsyncCmd(t, nil, "snapshot", db, "-b", filepath.Join(dir, "replica")); code != 0 {
		t.Fatalf("snapshot: %s", stderr)
	}
	return db
}

// TestCLIRestoreRefusesOpenDatabase: restore --force onto a database the
// sqlite3 shell (another process) has open is refused, and the
// application's writes keep landing in the file at that path.
func TestCLIRestoreRefusesOpenDatabase(t *testing.T) {
	dir := t.TempDir()
	snapshotted(t, dir, 3, 1000)
	replica := filepath.Join(dir, "replica")
	out := filepath.Join(dir, "out", "app.db")
	os.MkdirAll(filepath.Dir(out), 0o755)
	if _, stderr, code := walsyncCmd(t, nil, "restore", "d/app", "-o", out, "-b", replica); code != 0 {
		t.Fatalf("restore: %s", stderr)
	}

	// The application: a sqlite3 shell holding a connection open.
	app := exec.Command("sqlite3", "-batch", out)
	stdin, _ := app.StdinPipe()
	stdout, _ := app.StdoutPipe()
	app.Stderr = os.Stderr
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	defer app.Process.Kill()
	lines := bufio.NewScanner(stdout)
	say := func(sql string) string {
		t.Helper()
		io.WriteString(stdin, sql+"\nSELECT 'done';\n")
		var got []string
		for lines.Scan() {
			if lines.Text() == "done" {
				return strings.Join(got, "\n")
			}
			got = append(got, lines.Text())
		}
		t.Fatalf("sqlite3 shell exited: %v", lines.Err())
		return ""
	}
	say(".timeout 5000\nINSERT INTO notes (body) VALUES ('written by the app before');")

	_, stderr, code := walsyncCmd(t, nil, "restore", "d/app", "-o", out, "-b", replica, "--force")
	t.Logf("restore --force: exit %d: %s", code, stderr)
	if code == 0 {
		t.Error("restore --force replaced a database the sqlite3 shell has open")
	} else if !strings.Contains(stderr, "open") || !strings.Contains(stderr, "stop") {
		t.Errorf("the error should say the database is open and to stop the application: %s", stderr)
	}
	say("INSERT INTO notes (body) VALUES ('written by the app after');")
	io.WriteString(stdin, ".quit\n")
	stdin.Close()
	if err := app.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(sqlite3(t, out, "SELECT count(*) FROM notes WHERE body LIKE 'written by the app%';")); got != "2" {
		t.Fatalf("%s holds %s of the application's 2 rows: its writes went to a file that is no longer there", out, got)
	}
}

// TestCLIConcurrentRestores: four restores to one path at once, without
// --force: exactly one succeeds, the others say the output already exists.
func TestCLIConcurrentRestores(t *testing.T) {
	dir := t.TempDir()
	src := snapshotted(t, dir, 50, 20000)
	replica := filepath.Join(dir, "replica")
	out := filepath.Join(dir, "out", "app.db")
	os.MkdirAll(filepath.Dir(out), 0o755)
	testenv.WalsyncBinary(t)

	type result struct {
		code   int
		stderr string
	}
	results := make([]result, 4)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			_, stderr, code := walsyncCmd(t, nil, "restore", "d/app", "-o", out, "-b", replica)
			results[i] = result{code, stderr}
		})
	}
	wg.Wait()
	ok := 0
	for _, r := range results {
		switch {
		case r.code == 0:
			ok++
		case !strings.Contains(r.stderr, "already exists"):
			t.Errorf("a losing restore should say the output already exists: exit %d: %s", r.code, r.stderr)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of 4 concurrent restores to one path succeeded, want exactly 1: %+v", ok, results)
	}
	if sqlite3(t, out, ".dump") != sqlite3(t, src, ".dump") {
		t.Fatal("the restored database differs from the source")
	}
	assertNoTemp(t, filepath.Dir(out))
}

// TestCLIRestoreAfterKill: a restore killed with SIGKILL mid-way leaves its
// temp file; the next restore to that path removes it.
func TestCLIRestoreAfterKill(t *testing.T) {
	dir := t.TempDir()
	src := snapshotted(t, dir, 96, 1<<20) // ~100 MB of random pages
	replica := filepath.Join(dir, "replica")
	out := filepath.Join(dir, "out", "app.db")
	os.MkdirAll(filepath.Dir(out), 0o755)

	killed := false
	for attempt := 0; attempt < 5 && !killed; attempt++ {
		cmd := exec.Command(testenv.WalsyncBinary(t), "restore", "d/app", "-o", out, "-b", replica)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		deadline := time.Now().Add(20 * time.Second)
	poll:
		for time.Now().Before(deadline) {
			select {
			case <-done:
				os.Remove(out) // finished before the kill: try again
				break poll
			default:
			}
			if len(temps(t, filepath.Dir(out))) > 0 {
				cmd.Process.Kill()
				<-done
				killed = true
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	if !killed {
		t.Fatal("every restore finished before it could be killed mid-way")
	}
	left := temps(t, filepath.Dir(out))
	if len(left) == 0 {
		t.Fatal("the killed restore left no temp file; the test proves nothing")
	}
	t.Logf("the killed restore left %v", left)

	if _, stderr, code := walsyncCmd(t, nil, "restore", "d/app", "-o", out, "-b", replica); code != 0 {
		t.Fatalf("restore after the kill: %s", stderr)
	}
	assertNoTemp(t, filepath.Dir(out))
	if sqlite3(t, out, "SELECT count(*), sum(length(data)) FROM notes;") != sqlite3(t, src, "SELECT count(*), sum(length(data)) FROM notes;") {
		t.Fatal("the restored database differs from the source")
	}
}

func temps(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".walsync-") {
			names = append(names, e.Name())
		}
	}
	return names
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	if left := temps(t, dir); len(left) > 0 {
		t.Fatalf("%s holds temp or aside files: %v", dir, left)
	}
}
