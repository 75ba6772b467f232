package compat

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/benbjohnson/litestream"
	lsfile "github.com/benbjohnson/litestream/file"

	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
)

// walsync restores what Litestream replicated: L0 files, L1 compactions and
// a level-9 snapshot, to the latest state, to every TXID Litestream synced,
// and to a point in time.

func TestWalsyncRestoresLitestreamReplica_File(t *testing.T) {
	dir := t.TempDir()
	replica := filepath.Join(dir, "replica")
	states := replicateWithLitestream(t, filepath.Join(dir, "app.db"), 0, lsfile.NewReplicaClient(replica))
	checkWalsyncRestores(t, file.New(replica), states)
}

func TestWalsyncRestoresLitestreamReplica_S3(t *testing.T) {
	r := newS3Replica(t)
	// 64 KiB pages: SQLite stores that page size as 1 in its header.
	states := replicateWithLitestream(t, filepath.Join(t.TempDir(), "app.db"), 65536, r.litestream())
	checkWalsyncRestores(t, r.walsync(t), states)
}

// replicateWithLitestream writes a database with modernc.org/sqlite (the
// SQLite Litestream links) while Litestream replicates it to client, wired
// as cmd/litestream wires it but with the background monitors off so the
// test decides when to sync, compact, snapshot and checkpoint. It returns
// the state after each sync (at is a time between that sync and the next);
// the last one is the final state of the source. pageSize 0 keeps SQLite's
// default.
func replicateWithLitestream(t *testing.T, path string, pageSize int, client litestream.ReplicaClient) []syncedState {
	t.Helper()
	ctx := context.Background()
	if pageSize > 0 {
		createDB(t, driverModernc, path, pageSize)
	}
	app := openApp(t, driverModernc, path)
	for _, q := range splitSQL(schema) {
		mustExec(t, app, q)
	}

	lsdb := litestream.NewDB(path)
	lsdb.Logger = quietLogger()
	lsdb.MonitorInterval = 0     // no background sync
	lsdb.CheckpointInterval = 0  // no time-based checkpoints
	lsdb.ShutdownSyncTimeout = 0 // one final sync on close, no retry loop
	lsdb.Replica = litestream.NewReplicaWithClient(lsdb, client)
	lsdb.Replica.MonitorEnabled = false
	if err := lsdb.Open(); err != nil {
		t.Fatalf("litestream open: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			lsdb.Close(ctx)
		}
	}()

	var states []syncedState
	sync := func(what string) {
		t.Helper()
		if err := lsdb.SyncAndWait(ctx); err != nil {
			t.Fatalf("litestream sync (%s): %v", what, err)
		}
		txid := lsdb.Replica.Pos().TXID
		if len(states) > 0 && txid <= states[len(states)-1].txid {
			t.Fatalf("litestream sync (%s) left the replica at TXID %s, after TXID %s", what, txid, states[len(states)-1].txid)
		}
		states = append(states, syncedState{txid: txid, at: time.Now(), state: readState(t, app)})
		time.Sleep(5 * time.Millisecond) // the next sync's timestamp is after at
	}
	sync("schema only")

	w := newWorkload(2)
	for r := 0; r < 10; r++ {
		w.round(t, app, r)
		switch r {
		case 2:
			mustExec(t, app, "VACUUM")
		case 4:
			if err := lsdb.Checkpoint(ctx, litestream.CheckpointModeTruncate); err != nil {
				t.Fatalf("litestream checkpoint: %v", err)
			}
			mustExec(t, app, "UPDATE t SET v = v || '!' WHERE id % 2 = 0")
		case 5:
			mustExec(t, app, "DELETE FROM t WHERE id % 2 = 0")
			mustExec(t, app, "DELETE FROM kv WHERE k > 'k040'")
			mustExec(t, app, "VACUUM")
		}
		sync(fmt.Sprintf("round %d", r))
		switch r {
		case 1, 6:
			if _, err := lsdb.Compact(ctx, 1); err != nil {
				t.Fatalf("litestream compact to L1 after round %d: %v", r, err)
			}
		case 3:
			if _, err := lsdb.Snapshot(ctx); err != nil {
				t.Fatalf("litestream snapshot: %v", err)
			}
		}
	}
	closed = true
	if err := lsdb.Close(ctx); err != nil {
		t.Fatalf("litestream close: %v", err)
	}
	final := readState(t, app)
	if d := diffState(final, states[len(states)-1].state); d != "" {
		t.Fatalf("the source changed after its last sync: %s", d)
	}
	if final.rows() < 150 {
		t.Fatalf("workload left only %d rows (%v); the comparison would prove little", final.rows(), final)
	}
	if n := len(queryStrings(t, app, `SELECT name FROM sqlite_schema WHERE name LIKE '\_litestream\_%' ESCAPE '\'`)); n == 0 {
		t.Fatal("Litestream created no _litestream_* table in the source: is it really replicating it?")
	}
	return states
}

// checkWalsyncRestores restores with walsync's restore.Restore to the
// latest state, to every synced TXID and to a point in time, and compares
// each result with the source's state at that point.
func checkWalsyncRestores(t *testing.T, client storage.Client, states []syncedState) {
	t.Helper()
	ctx := context.Background()
	final := states[len(states)-1]

	levels := replicaLevels(t, client)
	if levels[0] < len(states) || levels[1] < 2 || levels[storage.SnapshotLevel] != 1 {
		t.Fatalf("Litestream's replica holds files per level %v, want >= %d at L0, >= 2 at L1 and 1 at L9", levels, len(states))
	}

	restoreTo := func(target restore.Target) (string, restore.Result) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "walsync-restored.db")
		res, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Target: target, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("walsync restore to %s: %v", target, err)
		}
		return out, res
	}

	out, res := restoreTo(restore.Target{})
	if res.TXID < final.txid {
		t.Fatalf("walsync restored TXID %s, Litestream had synced TXID %s", res.TXID, final.txid)
	}
	checkRestored(t, driverModernc, out, final.state, "walsync restore of the latest state")

	// The latest restore starts from Litestream's level-9 snapshot, and some
	// restore applies an L1 compaction: all of Litestream's levels are read.
	plan, err := restore.Plan(ctx, client, restore.Target{})
	if err != nil {
		t.Fatal(err)
	}
	if plan[0].Level != storage.SnapshotLevel {
		t.Fatalf("latest restore plan %v does not start from the L9 snapshot", plan)
	}
	usedL1 := false
	for i, s := range states {
		if i < len(states)-1 && diffState(s.state, final.state) == "" {
			t.Fatalf("state at TXID %s equals the final state: the TXID restores would prove nothing", s.txid)
		}
		plan, err := restore.Plan(ctx, client, restore.Target{TXID: s.txid})
		if err != nil {
			t.Fatalf("walsync plan to TXID %s: %v", s.txid, err)
		}
		for _, fi := range plan {
			usedL1 = usedL1 || fi.Level == 1
		}
		out, res := restoreTo(restore.Target{TXID: s.txid})
		if res.TXID != s.txid {
			t.Fatalf("walsync restore to TXID %s restored TXID %s", s.txid, res.TXID)
		}
		checkRestored(t, driverModernc, out, s.state, "walsync restore to TXID "+s.txid.String())
	}
	if !usedL1 {
		t.Fatal("no walsync restore plan used one of Litestream's L1 files")
	}

	// Litestream's LTX timestamps: the last sync at or before a time.
	mid := states[len(states)/2]
	out, res = restoreTo(restore.Target{Time: mid.at})
	if res.TXID != mid.txid {
		t.Fatalf("walsync restore to %s restored TXID %s, want TXID %s", mid.at.Format(time.RFC3339Nano), res.TXID, mid.txid)
	}
	checkRestored(t, driverModernc, out, mid.state, "walsync restore to the time of TXID "+mid.txid.String())
}
