package restore_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
)

var ts = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func put(t *testing.T, c storage.Client, level int, minTX, maxTX ltx.TXID) {
	t.Helper()
	data := storagetest.LTX(t, minTX, maxTX, 2, 4096, ts.Add(time.Duration(maxTX)*time.Second), false)
	if _, err := c.WriteLTXFile(context.Background(), level, minTX, maxTX, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

func names(plan []*storage.FileInfo) string {
	var s []string
	for _, fi := range plan {
		s = append(s, fi.String())
	}
	return strings.Join(s, " ")
}

func TestPlan(t *testing.T) {
	ctx := context.Background()
	c := file.New(t.TempDir())
	put(t, c, 0, 1, 1)
	for i := ltx.TXID(2); i <= 10; i++ {
		put(t, c, 0, i, i)
	}
	put(t, c, 1, 2, 6) // a compaction covering 2..6
	put(t, c, 9, 1, 4) // a snapshot at 4
	put(t, c, 9, 1, 8) // a snapshot at 8

	cases := []struct {
		target restore.Target
		want   string
	}{
		{restore.Target{}, "L9/0000000000000001-0000000000000008.ltx L0/0000000000000009-0000000000000009.ltx L0/000000000000000a-000000000000000a.ltx"},
		{restore.Target{TXID: 6}, "L9/0000000000000001-0000000000000004.ltx L1/0000000000000002-0000000000000006.ltx"},
		{restore.Target{TXID: 3}, "L0/0000000000000001-0000000000000001.ltx L0/0000000000000002-0000000000000002.ltx L0/0000000000000003-0000000000000003.ltx"},
		{restore.Target{TXID: 8}, "L9/0000000000000001-0000000000000008.ltx"},
		// Header timestamps are ts + TXID seconds.
		{restore.Target{Time: ts.Add(7*time.Second + 500*time.Millisecond)}, "L9/0000000000000001-0000000000000004.ltx L1/0000000000000002-0000000000000006.ltx L0/0000000000000007-0000000000000007.ltx"},
	}
	for _, tc := range cases {
		plan, err := restore.Plan(ctx, c, tc.target)
		if err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		if got := names(plan); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.target, got, tc.want)
		}
	}
	if _, err := restore.Plan(ctx, c, restore.Target{TXID: 11}); err == nil || !strings.Contains(err.Error(), "cannot be reached") {
		t.Fatalf("TXID past the end: %v", err)
	}
	if _, err := restore.Plan(ctx, c, restore.Target{Time: ts}); err == nil || !strings.Contains(err.Error(), "oldest sync") {
		t.Fatalf("time before the first sync: %v", err)
	}

	// A gap: latest cannot be restored silently.
	put(t, c, 0, 12, 12)
	if _, err := restore.Plan(ctx, c, restore.Target{}); err == nil || !strings.Contains(err.Error(), "gap") {
		t.Fatalf("gap: %v", err)
	}
	if _, err := restore.Plan(ctx, file.New(t.TempDir()), restore.Target{}); !errors.Is(err, restore.ErrNoReplica) {
		t.Fatalf("empty replica: %v", err)
	}
}

// TestRestoreWritesNothingOnFailure: an unreachable target, a corrupt file
// or an existing output leave the output path as it was.
func TestRestoreWritesNothingOnFailure(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	app, err := sql.Open("sqlite3", "file:"+src+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	app.Exec("CREATE TABLE t (x)")
	client := file.New(filepath.Join(dir, "replica"))
	db, err := capture.Open(ctx, capture.Options{Path: src, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		app.Exec("INSERT INTO t VALUES (randomblob(5000))")
		if _, err := db.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	db.Close(ctx)

	out := filepath.Join(dir, "out.db")
	if _, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Target: restore.Target{TXID: 99}}); err == nil {
		t.Fatal("restore to an unreachable TXID succeeded")
	}
	assertNoFiles(t, dir, "out.db")

	// Corrupt the last file behind the client's back.
	last := client.Path(0, 3, 3)
	b, _ := os.ReadFile(last)
	b[len(b)/2] ^= 0xff
	os.WriteFile(last, b, 0o644)
	_, err = restore.Restore(ctx, restore.Options{Client: client, Output: out})
	if !storage.IsCorrupt(err) {
		t.Fatalf("restore with a corrupt file: %v, want a CorruptError", err)
	}
	assertNoFiles(t, dir, "out.db")

	// Up to TXID 2 is still good; stale -wal/-shm beside an existing output
	// are replaced only with --force.
	os.WriteFile(out, []byte("old"), 0o644)
	os.WriteFile(out+"-wal", []byte("stale wal"), 0o644)
	os.WriteFile(out+"-shm", []byte("stale shm"), 0o644)
	if _, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Target: restore.Target{TXID: 2}}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore over an existing output: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Fatal("existing output was touched")
	}
	res, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Target: restore.Target{TXID: 2}, Force: true})
	if err != nil || res.TXID != 2 {
		t.Fatalf("forced restore: %v %v", res, err)
	}
	for _, s := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(out + s); !os.IsNotExist(err) {
			t.Fatalf("stale %s left beside the restored database", s)
		}
	}
	check, _ := sql.Open("sqlite3", "file:"+out+"?mode=ro")
	defer check.Close()
	var n int
	if err := check.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("restored %d rows (%v), want 2", n, err)
	}
}

// assertNoFiles fails if anything but the replica is left in dir matching
// the output's name (temp files included).
func assertNoFiles(t *testing.T, dir, base string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), base) {
			t.Fatalf("failed restore left %s behind", e.Name())
		}
	}
}

// TestDescribeWindow: list's restorable window is the chain's. Of only
// snapshots, it is the newest (it used to be the oldest); with a level-9
// file holding the newest TXIDs that restores never use, there is none.
func TestDescribeWindow(t *testing.T) {
	ctx := context.Background()
	c := file.New(t.TempDir())
	put(t, c, storage.SnapshotLevel, 1, 5)
	put(t, c, storage.SnapshotLevel, 1, 10)
	info, err := restore.Describe(ctx, c)
	if err != nil || info.TXID != 10 || info.EarliestTXID != 10 || !info.EarliestTime.Equal(ts.Add(10*time.Second)) {
		t.Fatalf("only snapshots: %+v, %v; want the window at TXID 10", info, err)
	}
	for i := ltx.TXID(11); i <= 14; i++ {
		put(t, c, 0, i, i)
	}
	put(t, c, storage.SnapshotLevel, 12, 16)
	if info, err = restore.Describe(ctx, c); err != nil || info.TXID != 16 || info.EarliestTXID != 0 {
		t.Fatalf("a stray L9 file past the latest TXID: %+v, %v; want no window", info, err)
	}
	if _, err := restore.Plan(ctx, c, restore.Target{}); err == nil || !strings.Contains(err.Error(), "restore to TXID 000000000000000e explicitly") {
		t.Fatalf("the latest plan: %v", err)
	}
}
