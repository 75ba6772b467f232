package engine_test

import (
	"context"
	"errors"
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

// snapListFails fails every listing of the snapshot level once armed:
// retention lists snapshots first, syncs never do.
type snapListFails struct {
	storage.Client
	armed *atomic.Bool
	fails *atomic.Int64
}

func (c snapListFails) Sub(name string) storage.Client {
	return snapListFails{Client: c.Client.Sub(name), armed: c.armed, fails: c.fails}
}

func (c snapListFails) LTXFiles(ctx context.Context, level int, after ltx.TXID) (storage.FileIterator, error) {
	if level == storage.SnapshotLevel && c.armed.Load() {
		c.fails.Add(1)
		return nil, errors.New("injected: cannot list snapshots")
	}
	return c.Client.LTXFiles(ctx, level, after)
}

// TestRetentionBacksOffWhileHot: retention on its own schedule that keeps
// failing for a hot database waits out its back-off like the other
// background work, instead of running again at every scheduling pass.
func TestRetentionBacksOffWhileHot(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "t", "app.db")
	app := newAppDB(t, p, "one")
	var armed atomic.Bool
	var fails atomic.Int64
	client := snapListFails{Client: file.New(filepath.Join(dir, "replica")), armed: &armed, fails: &fails}
	r := start(t, engine.Options{Databases: []engine.Database{{Path: p, Client: client.Sub("t/app")}},
		SyncInterval: 500 * time.Millisecond, PollInterval: 20 * time.Millisecond, IdleTimeout: -1,
		SnapshotInterval: -1, Levels: []compact.Level{}, RetentionInterval: 50 * time.Millisecond})
	waitUntil(t, 20*time.Second, func() bool { d, _ := r.db(t, p); return d.TXID > 0 && !d.Pending }, "first sync")
	armed.Store(true)
	if _, err := app.Exec("INSERT INTO t (v) VALUES ('two')"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, func() bool { return fails.Load() > 0 }, "retention to fail")
	time.Sleep(1500 * time.Millisecond)
	// Back-off from 1 s (twice the sync interval): two attempts at most.
	if got := fails.Load(); got > 3 {
		t.Fatalf("failing retention ran %d times in 1.5 s: no back-off", got)
	}
	if d, _ := r.db(t, p); d.State != "hot" || d.Error == "" {
		t.Fatalf("status %+v: want hot with the retention error", d)
	}
}

// TestReleasedWhileBackgroundBacksOff: background work that keeps failing
// does not keep an idle database hot: it is released after IdleTimeout
// like any other, and its background work retries while it is cold.
func TestReleasedWhileBackgroundBacksOff(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "t", "app.db")
	app := newAppDB(t, p, "one")
	var armed atomic.Bool
	var fails atomic.Int64
	client := snapListFails{Client: file.New(filepath.Join(dir, "replica")), armed: &armed, fails: &fails}
	r := start(t, engine.Options{Databases: []engine.Database{{Path: p, Client: client.Sub("t/app")}},
		SyncInterval: 500 * time.Millisecond, PollInterval: 20 * time.Millisecond, IdleTimeout: 300 * time.Millisecond,
		SnapshotInterval: -1, Levels: []compact.Level{}, RetentionInterval: 50 * time.Millisecond})
	waitUntil(t, 20*time.Second, func() bool { d, _ := r.db(t, p); return d.State == "cold" }, "first release")
	armed.Store(true)
	if _, err := app.Exec("INSERT INTO t (v) VALUES ('two')"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, func() bool { return fails.Load() > 0 }, "retention to fail")
	// Release waits for file times to settle (up to 3 s more).
	waitUntil(t, 20*time.Second, func() bool { d, _ := r.db(t, p); return d.State == "cold" }, "release while retention backs off")
	if d, _ := r.db(t, p); d.Error == "" {
		t.Fatalf("status %+v: want the retention error", d)
	}
}
