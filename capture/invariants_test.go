package capture_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/wal"
)

func newDB(t *testing.T, pragmas ...string) (string, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.db")
	app := openApp(t, path, append([]string{"CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)"}, pragmas...)...)
	return path, app
}

func TestRejectsDatabaseNotInWALMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rollback.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=DELETE")
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, "CREATE TABLE t (x)")
	db.Close()
	_, err = capture.Open(context.Background(), capture.Options{Path: path, Client: file.New(t.TempDir())})
	if err == nil || !strings.Contains(err.Error(), "not in WAL mode") || !strings.Contains(err.Error(), "PRAGMA journal_mode=WAL") {
		t.Fatalf("error %v should say the database is not in WAL mode and how to switch", err)
	}
	if _, err := os.Stat(path + "-wal"); !os.IsNotExist(err) {
		t.Fatal("walsync created a -wal file for a database in rollback-journal mode")
	}
	db, _ = sql.Open("sqlite3", "file:"+path)
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "delete" {
		t.Fatalf("journal mode is now %q (%v)", mode, err)
	}

	notSQLite := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notSQLite, []byte("hello, this is not a database at all, not even close........................................................"), 0o644)
	if _, err := capture.Open(context.Background(), capture.Options{Path: notSQLite, Client: file.New(t.TempDir())}); err == nil || !strings.Contains(err.Error(), "not a SQLite database") {
		t.Fatalf("a text file: %v", err)
	}
	if _, err := capture.Open(context.Background(), capture.Options{Path: filepath.Join(t.TempDir(), "missing.db"), Client: file.New(t.TempDir())}); err == nil {
		t.Fatal("a missing database was opened (or created)")
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestNeverWritesIntoDatabase: replication adds no table or row and leaves
// the journal mode alone; on a database nobody writes, not one byte of the
// database file changes.
func TestNeverWritesIntoDatabase(t *testing.T) {
	ctx := context.Background()
	path, app := newDB(t)
	for i := 0; i < 50; i++ {
		mustExec(t, app, "INSERT INTO t (v, b) VALUES (?, randomblob(3000))", fmt.Sprint(i))
	}
	mustExec(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")
	schema := func() string {
		var s []string
		rows, err := app.Query("SELECT type, name, sql FROM sqlite_schema ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var a, b string
			var c sql.NullString
			rows.Scan(&a, &b, &c)
			s = append(s, a+" "+b+" "+c.String)
		}
		return strings.Join(s, "\n")
	}
	before, beforeRows := schema(), dump(t, path)
	sumBefore := fileSum(t, path)

	client := file.New(t.TempDir())
	db, err := capture.Open(ctx, capture.Options{Path: path, Client: client, CheckpointPages: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := db.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fileSum(t, path); got != sumBefore {
		t.Fatal("the database file changed although nobody wrote to it")
	}
	if schema() != before || dump(t, path) != beforeRows {
		t.Fatal("schema or rows changed")
	}
	var mode string
	if err := app.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q %v", mode, err)
	}
	out, _ := restoreTo(t, client, restore.Target{})
	if dump(t, out) != beforeRows {
		t.Fatal("restore differs")
	}
}

// lockedByUs reports whether /proc/locks lists a POSIX lock of this process
// on the file's inode.
func lockedByUs(t *testing.T, path string) bool {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	f, err := os.Open("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: POSIX  ADVISORY  READ  1234 08:01:5678 1073741826 1073741826
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "POSIX" {
			continue
		}
		if fields[4] != fmt.Sprint(os.Getpid()) {
			continue
		}
		dev := strings.Split(fields[5], ":")
		if len(dev) == 3 && dev[2] == fmt.Sprint(ino) {
			return true
		}
	}
	return false
}

// TestKeepsSQLiteLocks: reading the database for a snapshot must not drop
// the POSIX locks SQLite holds for walsync's own connections (closing any fd
// on the file would). The control case shows the check can fail.
func TestKeepsSQLiteLocks(t *testing.T) {
	ctx := context.Background()
	path, app := newDB(t)
	mustExec(t, app, "INSERT INTO t (v) VALUES ('x')")
	db, err := capture.Open(ctx, capture.Options{Path: path, Client: file.New(t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	app.Close() // only walsync holds locks now
	if _, err := db.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !lockedByUs(t, path) {
		t.Fatal("after a snapshot this process holds no POSIX lock on the database: SQLite's locks were dropped")
	}
	// Control: what a careless reader does.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if lockedByUs(t, path) {
		t.Fatal("control failed: closing an fd should have dropped the locks, so the check above proves nothing")
	}
}

// TestWALStaysBounded: with writes going on, walsync's checkpoints let the
// WAL restart, so it stays small however much is written.
func TestWALStaysBounded(t *testing.T) {
	ctx := context.Background()
	path, app := newDB(t, "PRAGMA wal_autocheckpoint=0") // the app never checkpoints
	client := file.New(t.TempDir())
	db, err := capture.Open(ctx, capture.Options{Path: path, Client: client, CheckpointPages: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var maxSize int64
	restarts := map[uint32]bool{}
	for i := 0; i < 300; i++ {
		mustExec(t, app, "INSERT INTO t (v, b) VALUES (?, randomblob(3000))", fmt.Sprint(i))
		if i%5 == 4 {
			if _, err := db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		maxSize = max(maxSize, fi.Size())
		if b, err := os.ReadFile(path + "-wal"); err == nil {
			if h, err := wal.ParseHeader(b); err == nil {
				restarts[h.Salt1] = true
			}
		}
	}
	// ~300 transactions of 1-2 pages each: without restarts the WAL would
	// pass 600 frames (2.5 MB).
	limit := int64(400 * 4120)
	if maxSize > limit {
		t.Fatalf("WAL grew to %d bytes (limit %d)", maxSize, limit)
	}
	if len(restarts) < 2 {
		t.Fatalf("the WAL never restarted (%d generations seen)", len(restarts))
	}
	out, _ := restoreTo(t, client, restore.Target{})
	if _, err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	out, _ = restoreTo(t, client, restore.Target{})
	if dump(t, out) != dump(t, path) {
		t.Fatal("restore differs")
	}
}

// TestUncommittedNotShipped: frames of a transaction still open (spilled
// to the WAL because the cache is small) or rolled back never reach the
// replica.
func TestUncommittedNotShipped(t *testing.T) {
	ctx := context.Background()
	path, app := newDB(t)
	mustExec(t, app, "INSERT INTO t (v) VALUES ('committed')")
	client := file.New(t.TempDir())
	db, err := capture.Open(ctx, capture.Options{Path: path, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := app.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"PRAGMA cache_size=10", "BEGIN IMMEDIATE"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 200; i++ {
		if _, err := conn.ExecContext(ctx, "INSERT INTO t (v, b) VALUES ('uncommitted', randomblob(4000))"); err != nil {
			t.Fatal(err)
		}
	}
	fi, _ := os.Stat(path + "-wal")
	if fi.Size() < 100*4096 {
		t.Fatalf("the open transaction did not spill to the WAL (%d bytes); the test proves nothing", fi.Size())
	}
	// The write lock is held by the app: Sync cannot seal, but must not
	// ship what it sees either. Use a short busy timeout.
	db2 := db
	st, err := db2.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := restoreTo(t, client, restore.Target{TXID: st.TXID})
	if d := dump(t, out); strings.Contains(d, "uncommitted") || !strings.Contains(d, "committed") {
		t.Fatalf("replica holds uncommitted rows or lost committed ones:\n%s", d)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, app, "INSERT INTO t (v) VALUES ('after')")
	if _, err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	out, _ = restoreTo(t, client, restore.Target{})
	if d := dump(t, out); strings.Contains(d, "uncommitted") || !strings.Contains(d, "after") || d != dump(t, path) {
		t.Fatalf("after rollback the replica differs:\n%s", d)
	}
}
