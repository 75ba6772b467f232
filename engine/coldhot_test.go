package engine_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync/discover"
	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
)

// running is an engine under test.
type running struct {
	eng    *engine.Engine
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, opts engine.Options) *running {
	t.Helper()
	eng, err := engine.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{eng: eng, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- eng.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
}

func (r *running) status(t *testing.T) engine.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := r.eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (r *running) db(t *testing.T, path string) (engine.DBStatus, bool) {
	t.Helper()
	for _, d := range r.status(t).DBs {
		if d.Path == path {
			return d, true
		}
	}
	return engine.DBStatus{}, false
}

// restored restores the replica and returns its rows of t, or "" when the
// replica has nothing.
func restored(t *testing.T, c storage.Client) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "r.db")
	if _, err := restore.Restore(context.Background(), restore.Options{Client: c, Output: out}); err != nil {
		return ""
	}
	return rows(t, out)
}

func rows(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.Query("SELECT id, v FROM t ORDER BY id")
	if err != nil {
		return "error: " + err.Error()
	}
	defer rs.Close()
	var sb strings.Builder
	for rs.Next() {
		var id int
		var v string
		if err := rs.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, "%d=%s,", id, v)
	}
	return sb.String()
}

func waitUntil(t *testing.T, d time.Duration, f func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

func newAppDB(t *testing.T, path string, rows ...string) *sql.DB {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	app := openApp(t, path)
	for _, v := range rows {
		if _, err := app.Exec("INSERT INTO t (v) VALUES (?)", v); err != nil {
			t.Fatal(err)
		}
	}
	return app
}

// TestDiscovery: databases in a directory tree are found at start and as
// they appear; non-SQLite files are ignored; a deleted database is
// released, a renamed one replicated under its new name, a replaced one
// replicated as its new content.
func TestDiscovery(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "tenants")
	replica := file.New(filepath.Join(dir, "replica"))
	app1 := newAppDB(t, filepath.Join(root, "t1", "app.db"), "one")
	newAppDB(t, filepath.Join(root, "t2", "app.db"), "two")
	if err := os.WriteFile(filepath.Join(root, "t1", "notes.db"), []byte("not a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "t1", "readme.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, _ := discover.Source{Dir: root, Recursive: true}.Normalize()
	r := start(t, engine.Options{Sources: []engine.Source{{Source: src, Client: replica}},
		SyncInterval: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond, IdleTimeout: 500 * time.Millisecond,
		SweepInterval: 2 * time.Second})

	waitUntil(t, 10*time.Second, func() bool {
		return restored(t, replica.Sub("t1/app.db")) == "1=one," && restored(t, replica.Sub("t2/app.db")) == "1=two,"
	}, "the databases present at start to be replicated")
	if st := r.status(t); st.Databases != 2 {
		t.Fatalf("status lists %d databases, want 2 (the non-SQLite files must be ignored): %+v", st.Databases, st.DBs)
	}

	// Created while running, in a new nested directory.
	p3 := filepath.Join(root, "t3", "deep", "app.db")
	newAppDB(t, p3, "three")
	waitUntil(t, 10*time.Second, func() bool { return restored(t, replica.Sub("t3/deep/app.db")) == "1=three," },
		"a database created while running to be replicated")

	// Deleted: released; its replica stays.
	for _, sfx := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(root, "t2", "app.db") + sfx)
	}
	waitUntil(t, 10*time.Second, func() bool { _, ok := r.db(t, filepath.Join(root, "t2", "app.db")); return !ok },
		"a deleted database to be released")
	if got := restored(t, replica.Sub("t2/app.db")); got != "1=two," {
		t.Fatalf("the deleted database's replica restores %q", got)
	}

	// Renamed: replicated under the new name.
	old := filepath.Join(root, "t4", "old.db")
	newAppDB(t, old, "four").Close()
	waitUntil(t, 10*time.Second, func() bool { return restored(t, replica.Sub("t4/old.db")) == "1=four," }, "t4/old.db")
	// Renamed as a careful user would: nobody has it open, WAL files removed.
	waitUntil(t, 10*time.Second, func() bool { d, _ := r.db(t, old); return d.State == "cold" }, "t4/old.db to go cold")
	if err := os.Rename(old, filepath.Join(root, "t4", "new.db")); err != nil {
		t.Fatal(err)
	}
	os.Remove(old + "-wal")
	os.Remove(old + "-shm")
	waitUntil(t, 10*time.Second, func() bool { return restored(t, replica.Sub("t4/new.db")) == "1=four," },
		"a renamed database to be replicated under its new name")

	// Replaced by another file (new inode): its new content is replicated.
	// The application lets go of the old file first, as a real one must.
	app1.Close()
	other := filepath.Join(dir, "other.db")
	o := newAppDB(t, other, "replacement", "rows")
	o.Close()
	if err := os.Rename(other, filepath.Join(root, "t1", "app.db")); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root, "t1", "app.db-wal"))
	waitUntil(t, 10*time.Second, func() bool { return restored(t, replica.Sub("t1/app.db")) == "1=replacement,2=rows," },
		"a replaced database's new content to be replicated")
	r.stop(t)
}

// TestColdBurst: a database that went cold gets bursts of writes far past
// the application's auto-checkpoint; whatever walsync catches in the WAL or
// has to resync, the replica ends equal to the database after each burst.
func TestColdBurst(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t1", "app.db")
	app := newAppDB(t, path, "seed")
	if _, err := app.Exec("PRAGMA wal_autocheckpoint=50"); err != nil {
		t.Fatal(err)
	}
	app.SetMaxOpenConns(1)
	replica := file.New(filepath.Join(dir, "replica"))
	r := start(t, engine.Options{Databases: []engine.Database{{Path: path, Client: replica}},
		SyncInterval: 50 * time.Millisecond, PollInterval: 20 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	for burst := 0; burst < 4; burst++ {
		waitUntil(t, 20*time.Second, func() bool { d, _ := r.db(t, path); return d.State == "cold" }, "the database to go cold")
		// 300 transactions of 8 KiB blobs: well over 1,000 pages.
		for i := 0; i < 300; i++ {
			if _, err := app.Exec("INSERT INTO t (v) VALUES (? || hex(randomblob(4000)))", fmt.Sprint(burst, "-", i)); err != nil {
				t.Fatal(err)
			}
		}
		want := rows(t, path)
		waitUntil(t, 20*time.Second, func() bool { return restored(t, replica) == want },
			fmt.Sprintf("burst %d to be replicated", burst))
	}
}

// tenants makes n databases <dir>/tenants/<name>/app.db, each with one
// row, and a counting file replica for them.
func tenants(t *testing.T, n int, name string) (string, []string, discover.Source, counting, *atomic.Int64) {
	dir := t.TempDir()
	root := filepath.Join(dir, "tenants")
	var paths []string
	for i := 0; i < n; i++ {
		p := filepath.Join(root, fmt.Sprintf(name, i), "app.db")
		newAppDB(t, p, "start").Close()
		paths = append(paths, p)
	}
	requests := &atomic.Int64{}
	replica := counting{Client: file.New(filepath.Join(dir, "replica")), n: requests, writes: &sync.Map{}}
	src, err := discover.Source{Dir: root, Recursive: true}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	return dir, paths, src, replica, requests
}

// TestManyDatabases: a few hundred databases with a small hot set: idle
// ones go cold, random ones are written, and at the end every one restores
// to exactly its rows.
func TestManyDatabases(t *testing.T) {
	const n = 200
	_, paths, src, replica, requests := tenants(t, n, "t%03d")
	r := start(t, engine.Options{Sources: []engine.Source{{Source: src, Client: replica}},
		SyncInterval: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond, IdleTimeout: 300 * time.Millisecond,
		HotSet: 16, Workers: 4})
	waitUntil(t, 60*time.Second, func() bool {
		st := r.status(t)
		if testing.Verbose() {
			states := map[string]int{}
			for _, d := range st.DBs {
				states[d.State+fmt.Sprint(d.Pending)]++
			}
			t.Logf("hot %d cold %d %v", st.Hot, st.Cold, states)
		}
		return st.Cold == n
	}, "every database to be replicated and go cold")

	// Idle: no storage request at all.
	before := requests.Load()
	time.Sleep(1500 * time.Millisecond)
	if got := requests.Load() - before; got != 0 {
		t.Fatalf("%d cold databases made %d storage requests in 1.5 s", n, got)
	}
	if st := r.status(t); st.Hot > 16 {
		t.Fatalf("%d databases hot, hot set is 16", st.Hot)
	}

	// Writes to random databases, from short-lived connections too.
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 400; i++ {
		p := paths[rnd.IntN(n)]
		app, err := sql.Open("sqlite3", "file:"+p+"?_busy_timeout=5000")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := app.Exec("INSERT INTO t (v) VALUES (?)", fmt.Sprint("w", i)); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			app.Close()
		} else {
			t.Cleanup(func() { app.Close() })
		}
		if st := r.status(t); st.Hot > 16 {
			t.Fatalf("%d databases hot, hot set is 16", st.Hot)
		}
	}
	r.stop(t)
	for i, p := range paths {
		name := fmt.Sprintf("t%03d/app.db", i)
		if got, want := restored(t, replica.Sub(name)), rows(t, p); got != want {
			t.Fatalf("%s: replica restores %q, database has %q", name, got, want)
		}
	}
}

// TestStateFile: after a clean stop with a state file, a restart reads no
// replica for unchanged databases, still ships what changed while stopped,
// and a damaged state file only costs the replica reads.
func TestStateFile(t *testing.T) {
	const n = 30
	dir, paths, src, replica, requests := tenants(t, n, "t%02d")
	stateFile := filepath.Join(dir, "state", "walsync.state")
	opts := engine.Options{Sources: []engine.Source{{Source: src, Client: replica}}, StateFile: stateFile,
		SyncInterval: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
	r := start(t, opts)
	waitUntil(t, 30*time.Second, func() bool { st := r.status(t); return st.Databases == n && st.MaxLag == 0 }, "first sync of every database")
	r.stop(t)
	if _, err := os.Stat(stateFile); err != nil {
		t.Fatalf("no state file after a clean stop: %v", err)
	}

	// Changed while stopped.
	w, err := sql.Open("sqlite3", "file:"+paths[3]+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec("INSERT INTO t (v) VALUES ('while stopped')"); err != nil {
		t.Fatal(err)
	}

	before := requests.Load()
	r = start(t, opts)
	waitUntil(t, 30*time.Second, func() bool { st := r.status(t); return st.Databases == n && st.MaxLag == 0 && st.Cold == n },
		"restart to settle")
	if _, err := os.Stat(stateFile); !os.IsNotExist(err) {
		t.Fatalf("the state file must be deleted once read: %v", err)
	}
	// For the changed database, its uploads (it resyncs: released with
	// forced, untrusted file times at the stop, it cannot prove what the
	// new WAL generation replaced, so a full image and its snapshot) and
	// the reads they need; none for the others.
	if got := requests.Load() - before; got > 4 {
		t.Fatalf("restart with a state file made %d storage requests for %d databases, one of them changed", got, n)
	}
	if got, want := restored(t, replica.Sub("t03/app.db")), rows(t, paths[3]); got != want {
		t.Fatalf("the database changed while stopped restores %q, has %q", got, want)
	}
	w.Close()
	r.stop(t)

	// A damaged state file: ignored, every replica read, nothing wrong.
	if err := os.WriteFile(stateFile, []byte(`{"version":1,"dbs":[{"path":`), 0o600); err != nil {
		t.Fatal(err)
	}
	before = requests.Load()
	r = start(t, opts)
	waitUntil(t, 30*time.Second, func() bool { st := r.status(t); return st.Databases == n && st.MaxLag == 0 }, "restart after damage")
	if got := requests.Load() - before; got < n {
		t.Fatalf("with a damaged state file only %d requests for %d databases: the replicas were not read", got, n)
	}
	r.stop(t)
	for i, p := range paths {
		if got, want := restored(t, replica.Sub(fmt.Sprintf("t%02d/app.db", i))), rows(t, p); got != want {
			t.Fatalf("t%02d: replica restores %q, database has %q", i, got, want)
		}
	}
}

// TestSweepOnly: without file events (a filesystem without inotify, or
// the watch limit reached), the stat sweep still wakes cold databases and
// the rescan still finds new ones.
func TestSweepOnly(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "tenants")
	p1 := filepath.Join(root, "t1", "app.db")
	app := newAppDB(t, p1, "one")
	replica := file.New(filepath.Join(dir, "replica"))
	src, _ := discover.Source{Dir: root, Recursive: true}.Normalize()
	r := start(t, engine.Options{Sources: []engine.Source{{Source: src, Client: replica}}, NoFileEvents: true,
		SyncInterval: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond, IdleTimeout: 300 * time.Millisecond,
		SweepInterval: 500 * time.Millisecond})
	waitUntil(t, 20*time.Second, func() bool { d, _ := r.db(t, p1); return d.State == "cold" }, "t1 to go cold")
	if st := r.status(t); st.SweepOnly == "" {
		t.Fatal("status does not say changes are found by sweeps only")
	}
	if _, err := app.Exec("INSERT INTO t (v) VALUES ('while cold')"); err != nil {
		t.Fatal(err)
	}
	newAppDB(t, filepath.Join(root, "t2", "app.db"), "two")
	waitUntil(t, 20*time.Second, func() bool {
		return restored(t, replica.Sub("t1/app.db")) == "1=one,2=while cold," && restored(t, replica.Sub("t2/app.db")) == "1=two,"
	}, "the sweep to find the change and the rescan the new database")
}
