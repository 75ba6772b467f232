package engine_test

import (
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/storage/file"
)

// failingRetention starts an engine on one database whose retention, on
// its own schedule, fails from the first write after settled says the
// engine has settled; fails counts the attempts.
func failingRetention(t *testing.T, idle time.Duration, settled func(engine.DBStatus) bool) (r *running, p string, fails *atomic.Int64) {
	t.Helper()
	dir := t.TempDir()
	p = filepath.Join(dir, "t", "app.db")
	app := newAppDB(t, p, "one")
	var armed atomic.Bool
	fails = &atomic.Int64{}
	client := snapListFails{Client: file.New(filepath.Join(dir, "replica")), armed: &armed, fails: fails}
	r = start(t, engine.Options{Databases: []engine.Database{{Path: p, Client: client.Sub("t/app")}},
		SyncInterval: 500 * time.Millisecond, PollInterval: 20 * time.Millisecond, IdleTimeout: idle,
		SnapshotInterval: -1, Levels: []compact.Level{}, RetentionInterval: 50 * time.Millisecond})
	waitUntil(t, 20*time.Second, func() bool { d, _ := r.db(t, p); return settled(d) }, "the first sync to settle")
	armed.Store(true)
	if _, err := app.Exec("INSERT INTO t (v) VALUES ('two')"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, func() bool { return fails.Load() > 0 }, "retention to fail")
	return r, p, fails
}

// TestRetentionBacksOffWhileHot: retention on its own schedule that keeps
// failing for a hot database waits out its back-off like the other
// background work, instead of running again at every scheduling pass.
func TestRetentionBacksOffWhileHot(t *testing.T) {
	r, p, fails := failingRetention(t, -1, func(d engine.DBStatus) bool { return d.TXID > 0 && !d.Pending })
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
	r, p, _ := failingRetention(t, 300*time.Millisecond, func(d engine.DBStatus) bool { return d.State == "cold" })
	// Release waits for file times to settle (up to 3 s more).
	waitUntil(t, 20*time.Second, func() bool { d, _ := r.db(t, p); return d.State == "cold" }, "release while retention backs off")
	if d, _ := r.db(t, p); d.Error == "" {
		t.Fatalf("status %+v: want the retention error", d)
	}
}
