package capture_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
)

// TestSecondWriterConflict: two databases (two copies, two processes in
// real life) replicate to one replica. The one whose next TXID the other
// created first stops with storage.ErrConflict, names the database, the
// replica and what to do, never writes again (no retry loop), and every
// file stays as its writer wrote it. On main the second writer's files
// silently replaced the first's.
func TestSecondWriterConflict(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	repDir := filepath.Join(dir, "replica")
	client := file.New(repDir)
	pathA, pathB := filepath.Join(dir, "a", "app.db"), filepath.Join(dir, "b", "app.db")
	os.MkdirAll(filepath.Dir(pathA), 0o755)
	os.MkdirAll(filepath.Dir(pathB), 0o755)
	appA := openApp(t, pathA, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
	appB := openApp(t, pathB, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)")

	a, err := capture.Open(ctx, capture.Options{Path: pathA, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	mustExec(t, appA, "INSERT INTO t (v) VALUES ('a1')")
	if _, err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, appA, "INSERT INTO t (v) VALUES ('a2')")
	stA, err := a.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stateA := dump(t, pathA)

	// B starts on the same replica and writes the next TXID first.
	mustExec(t, appB, "INSERT INTO t (v) VALUES ('b1')")
	b, err := capture.Open(ctx, capture.Options{Path: pathB, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	if _, err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := storagetest.LTXSums(repDir)

	mustExec(t, appA, "INSERT INTO t (v) VALUES ('a3')")
	_, err = a.Sync(ctx)
	if !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("A's sync after B wrote its next TXID: %v, want ErrConflict", err)
	}
	for _, want := range []string{pathA, client.String(), "another walsync (or Litestream) process writes this replica", "stop one of them", "kept"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("the conflict error does not say %q: %v", want, err)
		}
	}
	// Never again: later syncs, a release and the close write nothing.
	mustExec(t, appA, "INSERT INTO t (v) VALUES ('a4')")
	if _, err2 := a.Sync(ctx); !errors.Is(err2, storage.ErrConflict) {
		t.Fatalf("A's next sync: %v, want the same conflict", err2)
	}
	if _, err2 := a.Cool(ctx, true); !errors.Is(err2, storage.ErrConflict) {
		t.Fatalf("A's release: %v, want the conflict", err2)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatalf("closing A: %v", err)
	}
	after := storagetest.LTXSums(repDir)
	if len(after) != len(before) {
		t.Fatalf("the refused writer added or removed files: %d before, %d after", len(before), len(after))
	}
	for p, sum := range before {
		if after[p] != sum {
			t.Fatalf("%s changed after the conflict", p)
		}
	}

	// A's history up to its last upload restores as A had it; the
	// latest state is B's.
	got, _ := restoreTo(t, client, restore.Target{TXID: stA.TXID})
	if d := dump(t, got); d != stateA {
		t.Fatalf("TXID %s restores %q, A had %q", stA.TXID, d, stateA)
	}
	mustExec(t, appB, "INSERT INTO t (v) VALUES ('b2')")
	if _, err := b.Sync(ctx); err != nil {
		t.Fatalf("B goes on: %v", err)
	}
	got, _ = restoreTo(t, client, restore.Target{})
	if d, want := dump(t, got), dump(t, pathB); d != want {
		t.Fatalf("latest restores %q, B has %q", d, want)
	}
}
