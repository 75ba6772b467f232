package e2e

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage/file"
)

// TestDatabaseOverOneGiB replicates a database that spans SQLite's lock-byte
// page (the page at byte offset 1 GiB, never used), with random data on
// both sides of it, and restores it exactly.
func TestDatabaseOverOneGiB(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "big.db")
	app, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	app.SetMaxOpenConns(1)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := app.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB)")
	// ~980 MiB of zero pages (cheap), then random pages across 1 GiB.
	exec("BEGIN")
	for i := 0; i < 980; i++ {
		exec("INSERT INTO big (b) VALUES (zeroblob(1048576))")
	}
	exec("COMMIT")
	exec("BEGIN")
	for i := 0; i < 90; i++ {
		exec("INSERT INTO big (b) VALUES (randomblob(1048576))")
	}
	exec("COMMIT")
	exec("PRAGMA wal_checkpoint(TRUNCATE)")
	var pages int64
	app.QueryRow("PRAGMA page_count").Scan(&pages)
	if pages*4096 <= 1<<30 {
		t.Fatalf("database is only %d bytes; the test needs more than 1 GiB", pages*4096)
	}

	client := file.New(filepath.Join(dir, "replica"))
	db, err := capture.Open(ctx, capture.Options{Path: path, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Changes beyond the lock page go through the WAL.
	exec("UPDATE big SET b = randomblob(1048576) WHERE id > 1060")
	exec("DELETE FROM big WHERE id BETWEEN 100 AND 120")
	if _, err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	sums := func(p string) string {
		t.Helper()
		d, err := sql.Open("sqlite3", "file:"+p+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		var s string
		// A digest of every random blob: their bytes straddle 1 GiB.
		if err := d.QueryRow("SELECT group_concat(id || ':' || hex(substr(b, 1, 16)) || hex(substr(b, 500000, 16)) || hex(substr(b, -16)), ',') FROM big WHERE id > 975").Scan(&s); err != nil {
			t.Fatal(err)
		}
		var n int
		d.QueryRow("SELECT count(*) FROM big").Scan(&n)
		return s + "|" + string(rune(n))
	}
	out := filepath.Join(dir, "restored.db")
	res, err := restore.Restore(ctx, restore.Options{Client: client, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if int64(res.Pages) != pages {
		t.Fatalf("restored %d pages, the database has %d", res.Pages, pages)
	}
	if sums(out) != sums(path) {
		t.Fatal("restored blobs differ from the source")
	}
}
