package capture_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
)

// countingClient counts the requests a replica sees.
type countingClient struct {
	storage.Client
	n atomic.Int64
}

func (c *countingClient) WriteLTXFile(ctx context.Context, level int, min, max ltx.TXID, r io.Reader) (*storage.FileInfo, error) {
	c.n.Add(1)
	return c.Client.WriteLTXFile(ctx, level, min, max, r)
}

func (c *countingClient) OpenLTXFile(ctx context.Context, level int, min, max ltx.TXID) (io.ReadCloser, error) {
	c.n.Add(1)
	return c.Client.OpenLTXFile(ctx, level, min, max)
}

func (c *countingClient) OpenLTXRange(ctx context.Context, level int, min, max ltx.TXID, off, size int64) (io.ReadCloser, error) {
	c.n.Add(1)
	return c.Client.OpenLTXRange(ctx, level, min, max, off, size)
}

func (c *countingClient) LTXFiles(ctx context.Context, level int, after ltx.TXID) (storage.FileIterator, error) {
	c.n.Add(1)
	return c.Client.LTXFiles(ctx, level, after)
}

// coolDB cools db, waiting out ErrNotIdle (the file times need a moment).
func coolDB(t *testing.T, db *capture.DB) *capture.State {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := db.Cool(context.Background(), false)
		if err == nil {
			return st
		}
		if !errors.Is(err, capture.ErrNotSettled) || time.Now().After(deadline) {
			t.Fatalf("cool: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// openFDs counts this process's fds on path.
func openFDs(t *testing.T, path string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(target, path) {
			n++
		}
	}
	return n
}

// TestColdWake: a cooled database holds no fd or lock; whatever the
// application does while it is cold, waking it (with no replica request)
// and syncing ships exactly the database's state — without a snapshot when
// the WAL proves nothing was missed, with a logged resync when it cannot.
func TestColdWake(t *testing.T) {
	cases := []struct {
		name       string
		whileCold  func(t *testing.T, path string, app *sql.DB) *sql.DB
		wantResync bool
	}{
		{"nothing", func(t *testing.T, path string, app *sql.DB) *sql.DB { return app }, false},
		{"small writes restart the WAL", func(t *testing.T, path string, app *sql.DB) *sql.DB {
			for i := 0; i < 5; i++ {
				mustExec(t, app, "INSERT INTO t (v) VALUES (?)", fmt.Sprint("cold", i))
			}
			return app
		}, false},
		{"burst past the auto-checkpoint", func(t *testing.T, path string, app *sql.DB) *sql.DB {
			mustExec(t, app, "PRAGMA wal_autocheckpoint=10")
			for i := 0; i < 60; i++ {
				mustExec(t, app, "INSERT INTO t (v, b) VALUES (?, randomblob(20000))", fmt.Sprint("burst", i))
			}
			return app
		}, true},
		{"truncate checkpoint", func(t *testing.T, path string, app *sql.DB) *sql.DB {
			mustExec(t, app, "INSERT INTO t (v) VALUES ('before truncate')")
			mustExec(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")
			return app
		}, true},
		{"last connection closes", func(t *testing.T, path string, app *sql.DB) *sql.DB {
			mustExec(t, app, "INSERT INTO t (v) VALUES ('short-lived')")
			app.Close() // SQLite checkpoints and deletes the WAL
			if _, err := os.Stat(path + "-wal"); !os.IsNotExist(err) {
				t.Fatalf("expected the WAL to be gone after the last close: %v", err)
			}
			return openApp(t, path)
		}, true},
		{"replaced", func(t *testing.T, path string, app *sql.DB) *sql.DB {
			app.Close()
			other := path + ".new"
			o := openApp(t, other, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
			mustExec(t, o, "INSERT INTO t (v) VALUES ('another file')")
			o.Close()
			for _, sfx := range []string{"", "-wal", "-shm"} {
				os.Remove(path + sfx)
			}
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
			return openApp(t, path)
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path, app := newDB(t)
			for i := 0; i < 20; i++ {
				mustExec(t, app, "INSERT INTO t (v, b) VALUES (?, randomblob(3000))", fmt.Sprint("hot", i))
			}
			client := &countingClient{Client: file.New(t.TempDir())}
			db, err := capture.Open(ctx, capture.Options{Path: path, Client: client})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			// The application lives in this process here, so it closes while
			// the fds and locks are counted: SQLite defers closing a
			// connection's fd while another one in the process holds locks.
			app.Close()
			st := coolDB(t, db)
			if n := openFDs(t, path); n != 0 {
				t.Fatalf("cold database: this process still has %d fds on it", n)
			}
			if lockedByUs(t, path) {
				t.Fatal("cold database: this process still holds POSIX locks on it")
			}
			app = openApp(t, path)
			app = tc.whileCold(t, path, app)
			want := dump(t, path)

			before := client.n.Load()
			db, err = capture.Open(ctx, capture.Options{Path: path, Client: client, Resume: st})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close(ctx)
			if n := client.n.Load() - before; n != 0 {
				t.Fatalf("waking made %d replica requests, want 0", n)
			}
			res, err := db.Sync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Snapshot != tc.wantResync {
				t.Fatalf("sync after waking: snapshot=%v (reason %q), want %v", res.Snapshot, res.Reason, tc.wantResync)
			}
			if tc.name == "nothing" && (res.Uploaded || client.n.Load() != before) {
				t.Fatalf("nothing changed, yet the sync uploaded=%v with %d requests", res.Uploaded, client.n.Load()-before)
			}
			got, _ := restoreTo(t, client, restore.Target{})
			if d := dump(t, got); d != want {
				t.Fatalf("restored rows differ from the database:\n got %d bytes\nwant %d bytes", len(d), len(want))
			}
			// And it keeps replicating once awake.
			mustExec(t, app, "INSERT INTO t (v) VALUES ('awake')")
			if _, err := db.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			got, _ = restoreTo(t, client, restore.Target{})
			if d := dump(t, got); d != dump(t, path) {
				t.Fatal("after waking, a later write was not replicated")
			}
		})
	}
}

// TestForcedCoolKeepsProof: a forced release (hot set full) does not
// checkpoint, so the database file's times stay old and trustworthy, and
// writes after it wake without a resync.
func TestForcedCoolKeepsProof(t *testing.T) {
	ctx := context.Background()
	path, app := newDB(t)
	mustExec(t, app, "INSERT INTO t (v) VALUES ('before')")
	app.Close()
	time.Sleep(2500 * time.Millisecond) // let the file's times age
	app = openApp(t, path)
	client := file.New(t.TempDir())
	db, err := capture.Open(ctx, capture.Options{Path: path, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, app, "INSERT INTO t (v) VALUES ('hot')")
	if _, err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := db.Cool(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if st.DBMod == 0 {
		t.Fatal("a forced release wrote the database file (its times are untrusted)")
	}
	for i := 0; i < 10; i++ {
		mustExec(t, app, "INSERT INTO t (v) VALUES (?)", fmt.Sprint("cold ", i))
	}
	db, err = capture.Open(ctx, capture.Options{Path: path, Client: client, Resume: st})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	res, err := db.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshot {
		t.Fatalf("woke with a resync: %s", res.Reason)
	}
	got, _ := restoreTo(t, client, restore.Target{})
	if dump(t, got) != dump(t, path) {
		t.Fatal("restore differs from the database")
	}
}

// TestCloseDoesNotCheckpoint: when walsync's connection is the last one to
// close, SQLite would checkpoint the WAL into the database file; walsync
// turns that off, so letting a database go never writes it.
func TestCloseDoesNotCheckpoint(t *testing.T) {
	ctx := context.Background()
	path, app := newDB(t, "PRAGMA wal_autocheckpoint=0")
	db, err := capture.Open(ctx, capture.Options{Path: path, Client: file.New(t.TempDir()), CheckpointPages: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		mustExec(t, app, "INSERT INTO t (v, b) VALUES (?, randomblob(2000))", fmt.Sprint(i))
	}
	if _, err := db.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	app.Close() // walsync's connection is now the last one
	before := fileSum(t, path)
	if err := db.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, path) != before {
		t.Fatal("closing walsync's last connection wrote the database file (checkpoint on close)")
	}
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("the WAL was removed or emptied on close: %v", err)
	}
}
