package compat

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	lsfile "github.com/benbjohnson/litestream/file"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/storage/file"
)

// TestLitestreamRestoresAcrossPageSizeChange: the application changes its
// database's page size (rollback mode, PRAGMA page_size, VACUUM, back to
// WAL) while walsync replicates it. walsync resyncs with a full image and a
// snapshot of the same state; Litestream v0.5.18 restores the latest state
// and every TXID after the change from that snapshot.
func TestLitestreamRestoresAcrossPageSizeChange(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	replica := filepath.Join(dir, "replica")
	createDB(t, driverMattn, path, 4096)
	app := openApp(t, driverMattn, path)
	for _, q := range splitSQL(schema) {
		mustExec(t, app, q)
	}
	now := walsyncClockStart
	open := func() *capture.DB {
		cdb, err := capture.Open(ctx, capture.Options{Path: path, Client: file.New(replica), TempDir: t.TempDir(),
			Logger: quietLogger(), Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return cdb
	}
	var states []syncedState
	cdb := open()
	sync := func() capture.Stats {
		t.Helper()
		now = now.Add(time.Minute)
		st, err := cdb.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, syncedState{txid: st.TXID, at: now, state: readState(t, app)})
		return st
	}
	w := newWorkload(7)
	for r := range 3 {
		w.round(t, app, r)
		sync()
	}
	if err := cdb.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Only one connection may leave WAL mode: the application's pool
	// holds one.
	app.SetMaxOpenConns(1)
	for _, q := range []string{"PRAGMA journal_mode=DELETE", "PRAGMA page_size=8192", "VACUUM", "PRAGMA journal_mode=WAL"} {
		mustExec(t, app, q)
	}
	var ps int
	if err := app.QueryRow("PRAGMA page_size").Scan(&ps); err != nil || ps != 8192 {
		t.Fatalf("page size %d after the change: %v", ps, err)
	}
	cdb = open()
	defer cdb.Close(ctx)
	changed := len(states)
	if st := sync(); !st.Snapshot {
		t.Fatalf("the first sync after the page-size change was no resync: %+v", st)
	}
	for r := 3; r < 6; r++ {
		w.round(t, app, r)
		sync()
	}
	client := lsfile.NewReplicaClient(replica)
	final := states[len(states)-1]
	out, err := litestreamRestore(t, client, 0, time.Time{})
	if err != nil {
		t.Fatalf("litestream restore (latest, TXID %s): %v", final.txid, err)
	}
	checkRestored(t, driverMattn, out, final.state, "litestream restore of the latest state")
	for _, s := range states[changed:] {
		out, err := litestreamRestore(t, client, s.txid, time.Time{})
		if err != nil {
			t.Fatalf("litestream restore to TXID %s: %v", s.txid, err)
		}
		checkRestored(t, driverMattn, out, s.state, "litestream restore to TXID "+s.txid.String())
	}
}
