package engine_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
)

// counting wraps a client and counts every storage call, including those
// of clients derived with Sub.
type counting struct {
	storage.Client
	n      *atomic.Int64
	writes *sync.Map // level -> times of writes
}

func (c counting) Sub(name string) storage.Client {
	return counting{Client: c.Client.Sub(name), n: c.n, writes: c.writes}
}
func (c counting) WriteLTXFile(ctx context.Context, level int, a, b ltx.TXID, r io.Reader) (*storage.FileInfo, error) {
	c.n.Add(1)
	v, _ := c.writes.LoadOrStore(c.String(), &timesList{})
	v.(*timesList).add(time.Now())
	return c.Client.WriteLTXFile(ctx, level, a, b, r)
}
func (c counting) OpenLTXFile(ctx context.Context, level int, a, b ltx.TXID) (io.ReadCloser, error) {
	c.n.Add(1)
	return c.Client.OpenLTXFile(ctx, level, a, b)
}
func (c counting) OpenLTXRange(ctx context.Context, level int, a, b ltx.TXID, off, n int64) (io.ReadCloser, error) {
	c.n.Add(1)
	return c.Client.OpenLTXRange(ctx, level, a, b, off, n)
}
func (c counting) LTXFiles(ctx context.Context, level int, after ltx.TXID) (storage.FileIterator, error) {
	c.n.Add(1)
	return c.Client.LTXFiles(ctx, level, after)
}
func (c counting) DeleteLTXFiles(ctx context.Context, f []*storage.FileInfo) error {
	c.n.Add(1)
	return c.Client.DeleteLTXFiles(ctx, f)
}

type timesList struct {
	mu sync.Mutex
	ts []time.Time
}

func (l *timesList) add(t time.Time) { l.mu.Lock(); l.ts = append(l.ts, t); l.mu.Unlock() }
func (l *timesList) get() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.ts...)
}

func openApp(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestEngine: several databases in one engine; the first change after an
// idle period ships at once, busy databases get at most one upload per sync
// interval, idle databases cause no storage request at all, and stopping
// ships everything.
func TestEngine(t *testing.T) {
	dir := t.TempDir()
	var n atomic.Int64
	root := counting{Client: file.New(filepath.Join(dir, "replica")), n: &n, writes: &sync.Map{}}
	var dbs []engine.Database
	var apps []*sql.DB
	for i := 0; i < 5; i++ {
		p := filepath.Join(dir, fmt.Sprintf("t%d", i), "app.db")
		if err := mkdir(p); err != nil {
			t.Fatal(err)
		}
		apps = append(apps, openApp(t, p))
		dbs = append(dbs, engine.Database{Path: p, Client: root.Sub(fmt.Sprintf("t%d/app", i))})
	}
	const interval = 400 * time.Millisecond
	eng, err := engine.New(engine.Options{Databases: dbs, SyncInterval: interval, PollInterval: 20 * time.Millisecond, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()

	waitFor(t, func() bool { return countWrites(root) >= 5 }, "first snapshots")
	time.Sleep(2 * interval)

	// Idle: not one storage request.
	before := n.Load()
	time.Sleep(1500 * time.Millisecond)
	if got := n.Load() - before; got != 0 {
		t.Fatalf("idle databases made %d storage requests in 1.5 s", got)
	}

	// The first change after idling ships (the database was released
	// while idle, so this wakes it). How fast is bench/'s to measure.
	start := time.Now()
	writesBefore := countWrites(root)
	if _, err := apps[0].Exec("INSERT INTO t (v) VALUES ('first')"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return countWrites(root) > writesBefore }, "first change shipped")
	t.Logf("first change after idle shipped in %s (sync interval %s)", time.Since(start).Round(time.Millisecond), interval)

	// A busy database: a commit every 20 ms for 3 s is batched, at most
	// one upload per sync interval (counted, not timed: under load uploads
	// start late, never early), and still shipped while it is busy.
	busyName := dbs[1].Client.String()
	busyStart := time.Now()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if _, err := apps[1].Exec("INSERT INTO t (v) VALUES ('busy')"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	busy := time.Since(busyStart)
	v, _ := root.writes.Load(busyName)
	ts := v.(*timesList).get()
	uploads := 0
	for _, at := range ts {
		if !at.Before(busyStart) {
			uploads++
		}
	}
	if most := int(busy/interval) + 2; uploads > most || uploads < 2 {
		t.Fatalf("a database committing every 20 ms for %s was uploaded %d times (sync interval %s: want 2..%d)", busy.Round(time.Millisecond), uploads, interval, most)
	}

	// Stopping ships what is left.
	if _, err := apps[2].Exec("INSERT INTO t (v) VALUES ('last')"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, d := range dbs {
		out := filepath.Join(t.TempDir(), "r.db")
		if _, err := restore.Restore(context.Background(), restore.Options{Client: d.Client, Output: out}); err != nil {
			t.Fatal(err)
		}
		if a, b := count(t, out), count(t, d.Path); a != b {
			t.Fatalf("database %d: restored %d rows, source has %d", i, a, b)
		}
	}
}

func countWrites(c counting) int {
	n := 0
	c.writes.Range(func(_, v any) bool { n += len(v.(*timesList).get()); return true })
	return n
}

func waitFor(t *testing.T, f func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func count(t *testing.T, path string) int {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestEngineCompacts: with short intervals, the engine compacts L0 into L1
// and L2, prunes L0 behind L1, takes snapshots and applies their retention,
// and the latest state stays restorable.
func TestEngineCompacts(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "t", "app.db")
	if err := mkdir(p); err != nil {
		t.Fatal(err)
	}
	app := openApp(t, p)
	client := file.New(filepath.Join(dir, "replica")).Sub("t/app")
	eng, err := engine.New(engine.Options{
		Databases: []engine.Database{{Path: p, Client: client}}, SyncInterval: 50 * time.Millisecond, PollInterval: 10 * time.Millisecond,
		Levels: []compact.Level{{Level: 1, Interval: 300 * time.Millisecond}, {Level: 2, Interval: 900 * time.Millisecond}}, L0Retention: 200 * time.Millisecond,
		SnapshotInterval: 400 * time.Millisecond, SnapshotRetention: 700 * time.Millisecond, RetentionInterval: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := app.Exec("INSERT INTO t (v) VALUES ('x')"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	levels := map[int]int{}
	for _, level := range []int{0, 1, 2, 3, 9} {
		it, err := client.LTXFiles(context.Background(), level, 0)
		if err != nil {
			t.Fatal(err)
		}
		files, err := storage.Collect(it)
		if err != nil {
			t.Fatal(err)
		}
		levels[level] = len(files)
		if level == 0 && len(files) > 0 && files[0].MinTXID == 1 {
			t.Fatalf("L0 was never pruned behind L1 (%d files from TXID 1)", len(files))
		}
	}
	if levels[1] == 0 || levels[2] == 0 {
		t.Fatalf("files per level %v: expected L1 and L2 compactions", levels)
	}
	// Snapshots every 400 ms for 2.5 s, kept 700 ms: retention pruned them.
	if levels[9] == 0 || levels[9] > 3 {
		t.Fatalf("%d snapshots left: retention did not run (or deleted the newest)", levels[9])
	}
	out := filepath.Join(t.TempDir(), "r.db")
	if _, err := restore.Restore(context.Background(), restore.Options{Client: client, Output: out}); err != nil {
		t.Fatal(err)
	}
	if a, b := count(t, out), count(t, p); a != b {
		t.Fatalf("restored %d rows, source has %d", a, b)
	}
	t.Logf("files per level after compaction: %v", levels)
}
