package engine_test

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
)

// TestFinalSyncResyncs: a resync asked for while stopping (here: the
// compaction in flight finds that the replica lost files) is written by
// the final sync of a hot database, so the replica restores when walsync
// has stopped.
func TestFinalSyncResyncs(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "t", "app.db")
	app := newAppDB(t, p, "one")
	raw := file.New(filepath.Join(dir, "replica", "t", "app"))
	var armed atomic.Bool
	client := gated{Client: raw, armed: &armed, waiting: make(chan struct{}), release: make(chan struct{})}
	r := start(t, engine.Options{Databases: []engine.Database{{Path: p, Client: client}},
		SyncInterval: 50 * time.Millisecond, PollInterval: 20 * time.Millisecond, IdleTimeout: -1, SnapshotInterval: -1,
		Levels: []compact.Level{{Level: 1, Interval: 3 * time.Second}}})
	release := sync.OnceFunc(func() { close(client.release) })
	t.Cleanup(release) // before stopping the engine, which waits for the compaction
	for i, v := range []string{"two", "three"} {
		waitUntil(t, 20*time.Second, func() bool { d, _ := r.db(t, p); return d.TXID > uint64(i) && !d.Pending }, "a sync")
		if _, err := app.Exec("INSERT INTO t (v) VALUES (?)", v); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 20*time.Second, func() bool { d, _ := r.db(t, p); return d.TXID >= 3 && !d.Pending }, "the last sync")
	armed.Store(true)
	select {
	case <-client.waiting:
	case <-time.After(20 * time.Second):
		t.Fatal("no compaction")
	}
	// Lost: the full image of TXID 1 and any snapshot; L0 now starts at
	// TXID 2.
	if err := os.Remove(filepath.Join(raw.LevelDir(0), ltx.FormatFilename(1, 1))); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(raw.LevelDir(storage.SnapshotLevel)); err != nil {
		t.Fatal(err)
	}
	r.cancel()
	time.Sleep(200 * time.Millisecond) // the scheduler stops first, then the compaction ends
	release()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	r.cancel = nil
	if got, want := restored(t, raw), rows(t, p); got != want {
		t.Fatalf("after the stop the replica restores %q, the database has %q", got, want)
	}
}
