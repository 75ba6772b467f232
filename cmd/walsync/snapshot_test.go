package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

// TestSnapshotGoesOnPastAFailure: `walsync snapshot BAD GOOD` snapshots GOOD,
// names BAD's error, and exits non-zero (it used to stop at BAD).
func TestSnapshotGoesOnPastAFailure(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad", "app.db")
	good := filepath.Join(dir, "good", "app.db")
	for _, d := range []string{filepath.Dir(bad), filepath.Dir(good)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(bad, bytes.Repeat([]byte{0x5a}, 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+good+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('x')"); err != nil {
		t.Fatal(err)
	}
	replica := filepath.Join(dir, "replica")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"snapshot", bad, good, "-b", replica}, &stdout, &stderr)
	if code == 0 {
		t.Fatalf("exit 0 with a database that cannot be snapshotted\n%s%s", stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), bad) {
		t.Fatalf("the error does not name %s:\n%s", bad, stderr.String())
	}
	snaps, _ := filepath.Glob(filepath.Join(replica, "good", "app", "ltx", "9", "*.ltx"))
	if len(snaps) == 0 || !strings.Contains(stdout.String(), good) {
		t.Fatalf("the good database was not snapshotted (snapshots %v)\n%s%s", snaps, stdout.String(), stderr.String())
	}
}
