package capture_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	_ "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/wal"
)

// openApp opens the database the way an application would.
func openApp(t testing.TB, path string, pragmas ...string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=300&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, p := range pragmas {
		mustExec(t, db, p)
	}
	return db
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// dump returns every row of table t in a comparable form.
func dump(t testing.TB, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT id, v, coalesce(length(b), 0) FROM t ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var sb strings.Builder
	for rows.Next() {
		var id, n int64
		var v string
		if err := rows.Scan(&id, &v, &n); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, "%d|%s|%d\n", id, v, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

func restoreTo(t testing.TB, c storage.Client, target restore.Target) (string, restore.Result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored.db")
	res, err := restore.Restore(context.Background(), restore.Options{Client: c, Output: out, Target: target})
	if err != nil {
		t.Fatalf("restore to %s: %v", target, err)
	}
	return out, res
}

func TestSyncRestoreAcrossCheckpoints(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	app := openApp(t, path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
	client := file.New(filepath.Join(dir, "replica"))

	db, err := capture.Open(ctx, capture.Options{Path: path, Client: client, CheckpointPages: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)

	var states []string
	var txids []ltx.TXID
	sync := func() {
		t.Helper()
		st, err := db.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, dump(t, path))
		txids = append(txids, st.TXID)
	}
	sync()
	for round := 0; round < 12; round++ {
		for i := 0; i < 20; i++ {
			mustExec(t, app, "INSERT INTO t (v, b) VALUES (?, randomblob(?))", fmt.Sprintf("r%d-%d", round, i), 100+i*50)
		}
		mustExec(t, app, "UPDATE t SET v = v || '+' WHERE id % 3 = ?", round%3)
		switch round % 4 {
		case 1:
			mustExec(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")
		case 2:
			mustExec(t, app, "DELETE FROM t WHERE id % 5 = 0")
			mustExec(t, app, "VACUUM")
		case 3:
			mustExec(t, app, "PRAGMA wal_checkpoint(RESTART)")
		}
		sync()
	}
	for i, want := range states {
		got, res := restoreTo(t, client, restore.Target{TXID: txids[i]})
		if d := dump(t, got); d != want {
			t.Fatalf("state %d (TXID %s): restored rows differ:\n got %d bytes\nwant %d bytes", i, res.TXID, len(d), len(want))
		}
	}
	got, _ := restoreTo(t, client, restore.Target{})
	if d := dump(t, got); d != states[len(states)-1] {
		t.Fatal("latest restore differs")
	}
}

// TestSnapshotAfterTruncatedWAL: the application truncates the WAL to zero
// bytes (everything was backfilled, walsync's pin sat on slot 0) and then a
// scheduled snapshot runs. The captured position is in the truncated
// generation, the WAL is empty: the snapshot must still be taken, at the
// state the database file holds.
func TestSnapshotAfterTruncatedWAL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	app := openApp(t, path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
	app.SetMaxOpenConns(1)
	client := file.New(filepath.Join(dir, "replica"))
	db, err := capture.Open(ctx, capture.Options{Path: path, Client: client, CheckpointPages: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	mustExec(t, app, "INSERT INTO t (v) VALUES ('a')")
	// The sync captures, then lets the WAL checkpoint: the pin restarts
	// with the WAL fully backfilled, on read mark 0.
	if _, err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() != 0 {
		t.Fatalf("the WAL was not truncated (%v, %v): the test does not test what it says", fi, err)
	}
	st, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatalf("snapshot after the WAL was truncated: %v", err)
	}
	got, res := restoreTo(t, client, restore.Target{})
	if res.TXID != st.TXID || dump(t, got) != dump(t, path) {
		t.Fatalf("restore after the snapshot (TXID %s, want %s) differs from the database", res.TXID, st.TXID)
	}
	mustExec(t, app, "INSERT INTO t (v) VALUES ('b')")
	st, err = db.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, res = restoreTo(t, client, restore.Target{})
	if res.TXID != st.TXID || dump(t, got) != dump(t, path) {
		t.Fatalf("restore after the next write (TXID %s, want %s) differs from the database", res.TXID, st.TXID)
	}
}

// TestSnapshotAfterResyncWritesOnce: when the WAL was checkpointed away while
// walsync was not running, Snapshot's sync resyncs with a full image and a
// snapshot of that state; Snapshot does not encode and upload a second one.
func TestSnapshotAfterResyncWritesOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	app := openApp(t, path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
	client := &levelCounter{Client: file.New(filepath.Join(dir, "replica"))}
	db, err := capture.Open(ctx, capture.Options{Path: path, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, app, "INSERT INTO t (v) VALUES ('a')")
	if _, err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, app, "INSERT INTO t (v) VALUES ('b')")
	mustExec(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")

	db, err = capture.Open(ctx, capture.Options{Path: path, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	st, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := client.snapshots.Load(); n != 1 {
		t.Fatalf("%d snapshots uploaded for one Snapshot call, want 1", n)
	}
	got, res := restoreTo(t, client, restore.Target{})
	if res.TXID != st.TXID || dump(t, got) != dump(t, path) {
		t.Fatalf("restore (TXID %s, want %s) differs from the database", res.TXID, st.TXID)
	}
}

// levelCounter counts uploaded snapshots.
type levelCounter struct {
	storage.Client
	snapshots atomic.Int64
}

func (c *levelCounter) WriteLTXFile(ctx context.Context, level int, min, max ltx.TXID, r io.Reader) (*storage.FileInfo, error) {
	if level == storage.SnapshotLevel {
		c.snapshots.Add(1)
	}
	return c.Client.WriteLTXFile(ctx, level, min, max, r)
}

// appendForgedCommit appends to path's WAL one frame with valid salts and
// checksums that commits a database of commit pages (SQLite never writes
// such a frame: the pages are nowhere).
func appendForgedCommit(t *testing.T, path string, pgno, commit uint32) {
	t.Helper()
	b, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	h, err := wal.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	frames := (int64(len(b)) - wal.HeaderSize) / h.FrameSize()
	if frames == 0 {
		t.Fatal("the WAL has no frame to continue")
	}
	last := wal.ParseFrameHeader(b[h.FrameOffset(frames):])
	fr := make([]byte, h.FrameSize())
	binary.BigEndian.PutUint32(fr[0:], pgno)
	binary.BigEndian.PutUint32(fr[4:], commit)
	binary.BigEndian.PutUint32(fr[8:], h.Salt1)
	binary.BigEndian.PutUint32(fr[12:], h.Salt2)
	copy(fr[wal.FrameHeaderSize:], b[h.FrameOffset(frames)+wal.FrameHeaderSize:])
	s1, s2 := wal.Checksum(h.BigEndian(), last.Checksum1, last.Checksum2, fr[:8])
	s1, s2 = wal.Checksum(h.BigEndian(), s1, s2, fr[wal.FrameHeaderSize:])
	binary.BigEndian.PutUint32(fr[16:], s1)
	binary.BigEndian.PutUint32(fr[20:], s2)
	f, err := os.OpenFile(path+"-wal", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(fr); err != nil {
		t.Fatal(err)
	}
}

// TestForgedCommitSizeRefused: a WAL frame with valid checksums whose
// commit claims billions of pages that exist nowhere is refused with an
// error naming the database, by a sync (which used to ship it as a file
// its own restore rejects) and by a snapshot (which used to write zero
// pages to the temp dir for hours); what was shipped before stays the
// latest restorable state.
func TestForgedCommitSizeRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	app := openApp(t, path, "PRAGMA wal_autocheckpoint=0", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
	app.SetMaxOpenConns(1)
	mustExec(t, app, "INSERT INTO t (v) VALUES ('a')")
	client := file.New(filepath.Join(dir, "replica"))
	db, err := capture.Open(ctx, capture.Options{Path: path, Client: client, CheckpointPages: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	st, err := db.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := dump(t, path)
	appendForgedCommit(t, path, 2, 4294967294)
	if _, err := db.Sync(ctx); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "4294967294 pages") {
		t.Fatalf("sync of a forged commit: %v", err)
	}
	got, res := restoreTo(t, client, restore.Target{})
	if res.TXID != st.TXID || dump(t, got) != want {
		t.Fatalf("latest restore is TXID %s, want %s as before the forged frame", res.TXID, st.TXID)
	}

	// A first snapshot of the same WAL: refused at once.
	other := file.New(filepath.Join(dir, "replica2"))
	db2, err := capture.Open(ctx, capture.Options{Path: path, Client: other, CheckpointPages: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close(ctx)
	if _, err := db2.Sync(ctx); err == nil || !strings.Contains(err.Error(), "4294967294 pages") {
		t.Fatalf("first snapshot of a forged commit: %v", err)
	}
}
