package restore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
)

// Tests for issue 19: a restore never destroys before it has succeeded.

// newReplica replicates a WAL database holding rows rows of 5000 random
// bytes and returns the replica and the source's rows as one string.
func newReplica(t *testing.T, rows int) (storage.Client, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	app, err := sql.Open("sqlite3", "file:"+src+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if _, err := app.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, x)"); err != nil {
		t.Fatal(err)
	}
	client := file.New(filepath.Join(dir, "replica"))
	db, err := capture.Open(ctx, capture.Options{Path: src, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	for i := 0; i < rows; i++ {
		if _, err := app.Exec("INSERT INTO t (x) VALUES (randomblob(5000))"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return client, digest(t, src)
}

// digest returns every row of table t in path, read-only.
func digest(t *testing.T, path string) string {
	t.Helper()
	d, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var s sql.NullString
	if err := d.QueryRow("SELECT group_concat(id || ':' || hex(x), ',') FROM (SELECT * FROM t ORDER BY id)").Scan(&s); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return s.String
}

// sqliteCLI runs the sqlite3 command-line shell, a second process, on db.
func sqliteCLI(t *testing.T, db, script string) string {
	t.Helper()
	cmd := exec.Command("sqlite3", "-batch", db)
	cmd.Stdin = strings.NewReader(".timeout 5000\n" + script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", db, err, out)
	}
	return strings.TrimSpace(string(out))
}

// oldDatabase makes path a WAL database whose last 3 of 10 rows live only
// in its -wal: the shell closes without checkpointing, as after a crash.
func oldDatabase(t *testing.T, path string) {
	t.Helper()
	sqliteCLI(t, path, `PRAGMA journal_mode=WAL;
CREATE TABLE old (n);
WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 7) INSERT INTO old SELECT n FROM c;
PRAGMA wal_checkpoint(TRUNCATE);
.dbconfig no_ckpt_on_close on
PRAGMA wal_autocheckpoint=0;
INSERT INTO old VALUES (8); INSERT INTO old VALUES (9); INSERT INTO old VALUES (10);
`)
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("the old database's rows 8-10 should be only in its WAL: %v", err)
	}
}

func assertOldRows(t *testing.T, path string) {
	t.Helper()
	if got := sqliteCLI(t, path, "SELECT count(*), sum(n) FROM old;"); got != "10|55" {
		t.Fatalf("old database %s after the failed restore: count|sum = %q, want 10|55 (rows 8-10 lived only in its WAL)", path, got)
	}
}

// TestForceRestoreKeepsOldDatabaseWhenRenameFails: when the final rename
// fails, the database it was to replace keeps its WAL, so no committed
// transaction is lost.
func TestForceRestoreKeepsOldDatabaseWhenRenameFails(t *testing.T) {
	ctx := context.Background()
	client, _ := newReplica(t, 2)

	t.Run("bind-mounted file", func(t *testing.T) {
		// A single-file container volume: the database file is a mount
		// point, which rename(2) cannot replace (EBUSY).
		dir := t.TempDir()
		host := filepath.Join(dir, "host", "app.db")
		out := filepath.Join(dir, "ctr", "app.db")
		for _, p := range []string{host, out} {
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := unix.Mount(host, out, "", unix.MS_BIND, ""); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("bind mounts are not permitted (%v): CI runs as root and needs them for this case", err)
			}
			t.Skipf("bind mounts are not permitted here (%v): the directory case below makes the rename fail instead", err)
		}
		t.Cleanup(func() { unix.Unmount(out, unix.MNT_DETACH) })
		oldDatabase(t, out)

		_, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Force: true})
		if err == nil {
			t.Fatal("restore --force onto a bind-mounted file succeeded; rename(2) should have failed")
		}
		t.Logf("error: %v", err)
		if !strings.Contains(err.Error(), "mount") {
			t.Errorf("the error should say the output is a mount point: %v", err)
		}
		assertOldRows(t, out)
		assertOnly(t, filepath.Dir(out), "app.db", "app.db-wal", "app.db-shm")
	})

	t.Run("output is a directory", func(t *testing.T) {
		// -o names a directory that has a database's WAL beside it
		// (DIR-wal): the restore must fail without touching it.
		dir := t.TempDir()
		out := filepath.Join(dir, "data")
		oldDatabase(t, out)
		os.Rename(out, filepath.Join(dir, "data.db"))
		os.Mkdir(out, 0o755)
		wal, _ := os.ReadFile(out + "-wal")

		_, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Force: true})
		if err == nil {
			t.Fatal("restore --force onto a directory succeeded")
		}
		if got, _ := os.ReadFile(out + "-wal"); len(wal) == 0 || string(got) != string(wal) {
			t.Fatalf("%s-wal was removed or changed by the failed restore (%v)", out, err)
		}
		if !strings.Contains(err.Error(), "is a directory") {
			t.Errorf("the error should say the output is a directory: %v", err)
		}
		// Put the database back together: every row is still there.
		os.Rename(filepath.Join(dir, "data.db"), filepath.Join(dir, "back.db"))
		os.Rename(out+"-wal", filepath.Join(dir, "back.db-wal"))
		os.Rename(out+"-shm", filepath.Join(dir, "back.db-shm"))
		assertOldRows(t, filepath.Join(dir, "back.db"))
	})
}

// assertOnly fails unless dir holds exactly the names given (no temp or
// aside files left behind).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, n := range got {
		if !want[n] {
			t.Fatalf("%s holds %v, want only %v", dir, got, names)
		}
	}
}

// TestForceRestoreRefusesOpenDatabase: a database an application has open
// is not replaced under it, whether the application is this process or
// another.
func TestForceRestoreRefusesOpenDatabase(t *testing.T) {
	ctx := context.Background()
	client, want := newReplica(t, 2)
	dir := t.TempDir()
	out := filepath.Join(dir, "app.db")
	app, err := sql.Open("sqlite3", "file:"+out+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	app.SetMaxOpenConns(1)
	if _, err := app.Exec("CREATE TABLE mine (x); INSERT INTO mine VALUES ('keep me')"); err != nil {
		t.Fatal(err)
	}
	_, err = restore.Restore(ctx, restore.Options{Client: client, Output: out, Force: true})
	if err == nil {
		t.Fatal("restore --force replaced a database this process has open")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "open") || !strings.Contains(err.Error(), "stop") {
		t.Fatalf("the error should say the database is open and to stop the application: %v", err)
	}
	// The application carries on with its own data.
	if _, err := app.Exec("INSERT INTO mine VALUES ('and me')"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := app.QueryRow("SELECT count(*) FROM mine").Scan(&n); err != nil || n != 2 {
		t.Fatalf("the application's table holds %d rows (%v), want 2", n, err)
	}
	app.Close()
	assertOnly(t, dir, "app.db")
	// Closed, it can be replaced.
	if _, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Force: true}); err != nil {
		t.Fatal(err)
	}
	if digest(t, out) != want {
		t.Fatal("restored database differs from the source")
	}
}

// TestConcurrentRestores: restores racing to one path without --force:
// exactly one wins; with --force they take turns and all succeed.
func TestConcurrentRestores(t *testing.T) {
	ctx := context.Background()
	client, want := newReplica(t, 3)
	dir := t.TempDir()
	out := filepath.Join(dir, "app.db")
	race := func(force bool) []error {
		errs := make([]error, 4)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range errs {
			wg.Go(func() {
				<-start
				_, errs[i] = restore.Restore(ctx, restore.Options{Client: client, Output: out, Force: force})
			})
		}
		close(start)
		wg.Wait()
		return errs
	}
	ok := 0
	for _, err := range race(false) {
		switch {
		case err == nil:
			ok++
		case !strings.Contains(err.Error(), "already exists"):
			t.Errorf("a losing restore should say the output already exists: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of 4 concurrent restores to one path succeeded, want exactly 1", ok)
	}
	assertOnly(t, dir, "app.db")
	if digest(t, out) != want {
		t.Fatal("restored database differs from the source")
	}

	for _, err := range race(true) {
		if err != nil {
			t.Errorf("concurrent forced restore: %v", err)
		}
	}
	assertOnly(t, dir, "app.db")
	if digest(t, out) != want {
		t.Fatal("restored database differs from the source")
	}
}

// TestRestoreRemovesStaleTempFiles: the temp file of a killed restore is
// removed by the next restore to that path; a live restore's is not.
func TestRestoreRemovesStaleTempFiles(t *testing.T) {
	ctx := context.Background()
	client, _ := newReplica(t, 2)
	dir := t.TempDir()
	out := filepath.Join(dir, "app.db")

	// A process that has exited: its pid is dead.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, fmt.Sprintf("app.db.walsync-%d-1234567.tmp", dead.Process.Pid))
	os.WriteFile(stale, make([]byte, 1<<20), 0o600)

	// A live restore: its process runs and holds the flock on its temp.
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	busy := filepath.Join(dir, fmt.Sprintf("app.db.walsync-%d-7654321.tmp", live.Process.Pid))
	f, err := os.OpenFile(busy, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// Another database's temp file in the same directory is not ours.
	other := filepath.Join(dir, fmt.Sprintf("other.db.walsync-%d-1234567.tmp", dead.Process.Pid))
	os.WriteFile(other, nil, 0o600)

	if _, err := restore.Restore(ctx, restore.Options{Client: client, Output: out}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the killed restore's temp file %s is still there", filepath.Base(stale))
	}
	for _, p := range []string{busy, other} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s, not a killed restore's temp of this output, was removed: %v", filepath.Base(p), err)
		}
	}
}

// TestRestoreMissingDirectory: the error names the missing directory and
// says to create it.
func TestRestoreMissingDirectory(t *testing.T) {
	client, _ := newReplica(t, 1)
	missing := filepath.Join(t.TempDir(), "no", "such")
	_, err := restore.Restore(context.Background(), restore.Options{Client: client, Output: filepath.Join(missing, "app.db")})
	if err == nil || !strings.Contains(err.Error(), "directory "+missing+" does not exist") || !strings.Contains(err.Error(), "mkdir -p "+missing) {
		t.Fatalf("restore into a missing directory: %v; want it to name %s and say to create it", err, missing)
	}
}

// TestRestoreFileMode: a restore that replaces a file keeps its mode and
// owner; a new file gets SQLite's 0644 minus the umask.
func TestRestoreFileMode(t *testing.T) {
	ctx := context.Background()
	client, _ := newReplica(t, 1)
	dir := t.TempDir()
	stat := func(p string) (os.FileMode, uint32, uint32) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return fi.Mode(), st.Uid, st.Gid
	}

	for _, tc := range []struct {
		umask int
		want  os.FileMode
	}{{0o022, 0o644}, {0o077, 0o600}, {0o002, 0o644}} {
		out := filepath.Join(dir, fmt.Sprintf("new-%o.db", tc.umask))
		old := syscall.Umask(tc.umask)
		_, err := restore.Restore(ctx, restore.Options{Client: client, Output: out})
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		if mode, _, _ := stat(out); mode != tc.want {
			t.Errorf("new file with umask %03o: mode %v, want %v", tc.umask, mode, tc.want)
		}
	}

	out := filepath.Join(dir, "replaced.db")
	os.WriteFile(out, []byte("old"), 0o600)
	os.Chmod(out, 0o664)
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 1234, 5678 // root can give the old file any owner
		if err := os.Chown(out, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Force: true}); err != nil {
		t.Fatal(err)
	}
	if mode, u, g := stat(out); mode != 0o664 || int(u) != uid || int(g) != gid {
		t.Fatalf("replaced file: mode %v owner %d:%d, want %v %d:%d", mode, u, g, os.FileMode(0o664), uid, gid)
	}
}

// TestRestoreResolvesAsidesOfKilledRestore: a restore killed between
// setting the old database's -wal and -shm aside and removing them leaves
// .aside files (<out><suffix>.walsync-<inode of the old database>.aside).
// The next restore to that path puts them back if the old database is
// still there, unchanged, and removes them if it was replaced. The states
// a kill -9 leaves are made directly: no kill lands reliably between two
// renames.
func TestRestoreResolvesAsidesOfKilledRestore(t *testing.T) {
	ctx := context.Background()
	client, want := newReplica(t, 2)
	ino := func(p string) uint64 {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	setAside := func(out string, ino uint64) {
		t.Helper()
		for _, s := range []string{"-wal", "-shm"} {
			if err := os.Rename(out+s, fmt.Sprintf("%s%s.walsync-%d.aside", out, s, ino)); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("killed before the rename", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "app.db")
		oldDatabase(t, out)
		time.Sleep(20 * time.Millisecond) // the aside's ctime is after the database's last write
		setAside(out, ino(out))
		_, err := restore.Restore(ctx, restore.Options{Client: client, Output: out})
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("restore without --force: %v", err)
		}
		assertOnly(t, dir, "app.db", "app.db-wal", "app.db-shm")
		assertOldRows(t, out)
	})

	t.Run("killed after the rename", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "app.db")
		old := filepath.Join(dir, "old.db")
		oldDatabase(t, old)
		if _, err := restore.Restore(ctx, restore.Options{Client: client, Output: out}); err != nil {
			t.Fatal(err)
		}
		// The replaced database's files, set aside under its inode.
		for _, s := range []string{"-wal", "-shm"} {
			os.Rename(old+s, fmt.Sprintf("%s%s.walsync-%d.aside", out, s, ino(old)))
		}
		os.Remove(old)
		if _, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Force: true}); err != nil {
			t.Fatal(err)
		}
		assertOnly(t, dir, "app.db")
		if digest(t, out) != want {
			t.Fatal("restored database differs from the source")
		}
	})

	t.Run("database written since", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "app.db")
		oldDatabase(t, out)
		setAside(out, ino(out))
		// An application opened the database without its WAL, wrote and
		// checkpointed: putting the old WAL back would undo that.
		later := time.Now().Add(time.Second)
		os.Chtimes(out, later, later)
		wal := fmt.Sprintf("%s-wal.walsync-%d.aside", out, ino(out))
		// Even --force stops, naming the file: a person decides.
		_, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Force: true})
		if err == nil || !strings.Contains(err.Error(), wal) || !strings.Contains(err.Error(), "written after") {
			t.Fatalf("restore --force with an aside WAL that cannot be put back: %v", err)
		}
		t.Logf("error: %v", err)
		if _, err := os.Stat(wal); err != nil {
			t.Fatalf("the aside WAL of a database written since was not kept: %v", err)
		}
		if _, err := os.Stat(out + "-wal"); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("the aside WAL was put back over a database written since")
		}
		if got := sqliteCLI(t, out, "SELECT count(*) FROM old;"); got != "7" {
			t.Fatalf("the old database was replaced or changed: %q", got)
		}
	})
}
