package engine_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/storage/file"
)

// TestRefusedNotSyncedAtStop: a database refused because another one took
// its replica name never writes there, even when the state file of an
// earlier run (in which it owned the name) gives it a state to resume.
func TestRefusedNotSyncedAtStop(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a", "app.db"), filepath.Join(dir, "b", "app.db")
	appA := newAppDB(t, a, "a1")
	newAppDB(t, b, "b1").Close()
	replica := file.New(filepath.Join(dir, "replica")).Sub("x")
	stateFile := filepath.Join(dir, "state")
	opts := engine.Options{StateFile: stateFile, SyncInterval: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond}

	opts.Databases = []engine.Database{{Path: a, Client: replica}}
	r := start(t, opts)
	waitUntil(t, 20*time.Second, func() bool { d, _ := r.db(t, a); return d.TXID > 0 && !d.Pending }, "a's first sync")
	r.stop(t)

	// Now b comes first and owns the name; a changed while stopped.
	if _, err := appA.Exec("INSERT INTO t (v) VALUES ('a2')"); err != nil {
		t.Fatal(err)
	}
	opts.Databases = []engine.Database{{Path: b, Client: replica}, {Path: a, Client: replica}}
	r = start(t, opts)
	waitUntil(t, 20*time.Second, func() bool { d, _ := r.db(t, b); return d.TXID > 0 && !d.Pending }, "b's first sync")
	if d, _ := r.db(t, a); d.State != "refused" {
		t.Fatalf("a is %q, want refused", d.State)
	}
	r.stop(t)
	if got, want := restored(t, replica), rows(t, b); got != want {
		t.Fatalf("the replica b owns restores %q, b has %q", got, want)
	}
}
