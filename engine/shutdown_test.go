package engine_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
)

// gated holds the first listing made once armed until release is closed.
type gated struct {
	storage.Client
	armed   *atomic.Bool
	waiting chan struct{} // closed when that listing waits
	release chan struct{}
}

func (c gated) Sub(name string) storage.Client {
	return gated{Client: c.Client.Sub(name), armed: c.armed, waiting: c.waiting, release: c.release}
}

func (c gated) LTXFiles(ctx context.Context, level int, after ltx.TXID) (storage.FileIterator, error) {
	if c.armed.CompareAndSwap(true, false) {
		close(c.waiting)
		<-c.release
	}
	return c.Client.LTXFiles(ctx, level, after)
}

func deleteLTX(t *testing.T, c storage.Client, level int, keep func(*storage.FileInfo) bool) {
	t.Helper()
	it, err := c.LTXFiles(context.Background(), level, 0)
	if err != nil {
		t.Fatal(err)
	}
	files, err := storage.Collect(it)
	if err != nil {
		t.Fatal(err)
	}
	var del []*storage.FileInfo
	for _, f := range files {
		if !keep(f) {
			del = append(del, f)
		}
	}
	if err := c.DeleteLTXFiles(context.Background(), del); err != nil {
		t.Fatal(err)
	}
}

// TestFinalSyncResyncs: a resync asked for while stopping (here: the
// compaction in flight finds that the replica lost files) is written by
// the final sync of a hot database, so the replica restores when walsync
// has stopped.
func TestFinalSyncResyncs(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "t", "app.db")
	app := newAppDB(t, p, "one")
	raw := file.New(filepath.Join(dir, "replica")).Sub("t/app")
	var armed atomic.Bool
	client := gated{Client: raw, armed: &armed, waiting: make(chan struct{}), release: make(chan struct{})}
	r := start(t, engine.Options{Databases: []engine.Database{{Path: p, Client: client}},
		SyncInterval: 50 * time.Millisecond, PollInterval: 20 * time.Millisecond, IdleTimeout: -1, SnapshotInterval: -1,
		Levels: []compact.Level{{Level: 1, Interval: 3 * time.Second}}})
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
	// Lost: the snapshot and the full image; L0 now starts at TXID 2.
	deleteLTX(t, raw, storage.SnapshotLevel, func(*storage.FileInfo) bool { return false })
	deleteLTX(t, raw, 0, func(f *storage.FileInfo) bool { return f.MinTXID > 1 })
	r.cancel()
	time.Sleep(200 * time.Millisecond) // the scheduler stops first, then the compaction ends
	close(client.release)
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	r.cancel = nil
	if got, want := restored(t, raw), rows(t, p); got != want {
		t.Fatalf("after the stop the replica restores %q, the database has %q", got, want)
	}
}
