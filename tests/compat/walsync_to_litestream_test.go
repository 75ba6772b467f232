package compat

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/benbjohnson/litestream"
	lsfile "github.com/benbjohnson/litestream/file"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
)

// Litestream restores what walsync replicated, to the latest state, to
// every TXID walsync synced, and to a point in time.

func TestLitestreamRestoresWalsyncReplica_File(t *testing.T) {
	dir := t.TempDir()
	replica := filepath.Join(dir, "replica")
	states := replicateWithWalsync(t, filepath.Join(dir, "app.db"), 0, file.New(replica))
	checkLitestreamRestores(t, lsfile.NewReplicaClient(replica), states)
}

func TestLitestreamRestoresWalsyncReplica_S3(t *testing.T) {
	r := newS3Replica(t)
	// 64 KiB pages: SQLite stores that page size as 1 in its header.
	states := replicateWithWalsync(t, filepath.Join(t.TempDir(), "app.db"), 65536, r.walsync(t))
	checkLitestreamRestores(t, r.litestream(), states)
}

// syncedState is the source database's content right after a sync that
// left the replica at txid; at is that sync's LTX timestamp.
type syncedState struct {
	txid  ltx.TXID
	at    time.Time
	state dbState
}

// walsyncClockStart is when walsync's (fake) clock starts: every sync is a
// minute after the previous one, so a point-in-time restore has room on
// either side of each.
var walsyncClockStart = time.Now().Add(-24 * time.Hour).Truncate(time.Second)

// replicateWithWalsync writes a database with mattn/go-sqlite3 while
// walsync's capture replicates it to client across many syncs, a level-9
// snapshot, VACUUMs (the database shrinks), WAL checkpoints by the
// application (TRUNCATE) and by walsync itself, and walsync restarts (one
// resuming in the WAL, one resyncing with a full L0 snapshot because the
// WAL was truncated while it was stopped). It returns the state after each
// sync; the last one is the final state of the source. pageSize 0 keeps
// SQLite's default.
func replicateWithWalsync(t *testing.T, path string, pageSize int, client storage.Client) []syncedState {
	t.Helper()
	ctx := context.Background()
	if pageSize > 0 {
		createDB(t, driverMattn, path, pageSize)
	}
	app := openApp(t, driverMattn, path)
	for _, q := range splitSQL(schema) {
		mustExec(t, app, q)
	}

	now := walsyncClockStart
	open := func(checkpointPages int64) *capture.DB {
		t.Helper()
		cdb, err := capture.Open(ctx, capture.Options{
			Path:            path,
			Client:          client,
			TempDir:         t.TempDir(),
			BusyTimeout:     5 * time.Second,
			CheckpointPages: checkpointPages,
			Logger:          quietLogger(),
			Now:             func() time.Time { return now },
		})
		if err != nil {
			t.Fatalf("capture.Open: %v", err)
		}
		return cdb
	}
	cdb := open(60) // walsync lets the WAL restart often
	defer func() { cdb.Close(ctx) }()

	var states []syncedState
	sync := func(what string) capture.Stats {
		t.Helper()
		now = now.Add(time.Minute)
		st, err := cdb.Sync(ctx)
		if err != nil {
			t.Fatalf("walsync sync (%s): %v", what, err)
		}
		if !st.Uploaded {
			t.Fatalf("walsync sync (%s) uploaded nothing: %+v", what, st)
		}
		if len(states) > 0 && st.TXID != states[len(states)-1].txid+1 {
			t.Fatalf("walsync sync (%s) reached TXID %s after TXID %s", what, st.TXID, states[len(states)-1].txid)
		}
		states = append(states, syncedState{txid: st.TXID, at: now, state: readState(t, app)})
		return st
	}
	closeCapture := func() {
		t.Helper()
		if err := cdb.Close(ctx); err != nil {
			t.Fatalf("capture close: %v", err)
		}
	}
	sync("schema only")

	w := newWorkload(1)
	snapshotted, resynced := false, false
	for r := 0; r < 10; r++ {
		switch r {
		case 6:
			// walsync restarts, now without checkpoints of its own, and
			// the application's automatic checkpoints are off too, so that
			// the WAL stays in one generation until round 8.
			closeCapture()
			mustExec(t, app, "PRAGMA wal_autocheckpoint = 0")
			cdb = open(-1)
			w.round(t, app, r)
		case 7:
			// walsync stops while the application writes into the same
			// WAL generation: it must resume where the replica ends.
			closeCapture()
			w.round(t, app, r)
			cdb = open(-1)
		case 8:
			// walsync stops, the WAL is checkpointed and truncated without
			// it: the next sync must be a full snapshot in L0, mid-replica.
			closeCapture()
			mustExec(t, app, "PRAGMA wal_autocheckpoint = 1000")
			w.round(t, app, r)
			if !checkpointTruncate(t, app) {
				t.Fatal("wal_checkpoint(TRUNCATE) without walsync running did not reset the WAL")
			}
			cdb = open(60)
		default:
			w.round(t, app, r)
		}
		switch r {
		case 2:
			mustExec(t, app, "DELETE FROM t WHERE id % 3 = 0")
			mustExec(t, app, "VACUUM")
		case 4:
			checkpointTruncate(t, app)
		case 5:
			// Shrink the database a lot: pages past the new end must not
			// come back in a restore.
			mustExec(t, app, "DELETE FROM t WHERE id % 2 = 0")
			mustExec(t, app, "DELETE FROM kv WHERE k > 'k040'")
			mustExec(t, app, "VACUUM")
			checkpointTruncate(t, app)
		}
		st := sync(fmt.Sprintf("round %d", r))
		t.Logf("round %d: TXID %s snapshot=%v %s", r, st.TXID, st.Snapshot, st.Reason)
		switch {
		case r == 7 && st.Snapshot:
			t.Fatalf("walsync did not resume in the WAL after a restart: %+v", st)
		case r == 8 && !st.Snapshot:
			t.Fatalf("walsync's first sync after the WAL was truncated behind its back was not a snapshot: %+v", st)
		case r == 8:
			resynced = true
		}
		if r == 9 {
			// Right after a sync, with walsync's read transaction at the
			// WAL's end: the checkpoint may backfill every frame.
			checkpointTruncate(t, app)
		}
		if r == 3 {
			now = now.Add(10 * time.Second)
			st, err := cdb.Snapshot(ctx)
			if err != nil {
				t.Fatalf("walsync snapshot: %v", err)
			}
			if st.TXID != states[len(states)-1].txid {
				t.Fatalf("walsync snapshot at TXID %s, last sync was TXID %s", st.TXID, states[len(states)-1].txid)
			}
			snapshotted = true
		}
	}
	closeCapture()
	if !snapshotted || !resynced {
		t.Fatalf("snapshot taken: %v, resync snapshot taken: %v", snapshotted, resynced)
	}
	final := states[len(states)-1]
	if final.state.rows() < 150 {
		t.Fatalf("workload left only %d rows (%v); the comparison would prove little", final.state.rows(), final.state)
	}

	// The replica holds what the restores below rely on: the resync of
	// round 8 wrote a snapshot beside its full image.
	levels := replicaLevels(t, client)
	if levels[0] != len(states) || levels[storage.SnapshotLevel] != 2 {
		t.Fatalf("replica holds files per level %v, want %d at L0 and 2 at L9", levels, len(states))
	}
	return states
}

// checkpointTruncate runs the application's PRAGMA wal_checkpoint(TRUNCATE)
// with a short busy timeout: walsync's read transaction may keep it from
// resetting the WAL, which SQLite reports as busy, not as an error. It
// reports whether the WAL was reset.
func checkpointTruncate(t *testing.T, app *sql.DB) (reset bool) {
	t.Helper()
	ctx := context.Background()
	conn, err := app.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 200"); err != nil {
		t.Fatal(err)
	}
	var busy, logN, ckpt int64
	start := time.Now()
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logN, &ckpt); err != nil {
		t.Fatalf("wal_checkpoint(TRUNCATE): %v", err)
	}
	t.Logf("wal_checkpoint(TRUNCATE): busy=%d log=%d checkpointed=%d in %v", busy, logN, ckpt, time.Since(start).Round(time.Millisecond))
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 5000"); err != nil {
		t.Fatal(err)
	}
	return busy == 0
}

// checkLitestreamRestores restores with Litestream to the latest state, to
// every synced TXID and to a point in time, and compares each result with
// the source's state at that point.
func checkLitestreamRestores(t *testing.T, client litestream.ReplicaClient, states []syncedState) {
	t.Helper()
	final := states[len(states)-1]

	out, err := litestreamRestore(t, client, 0, time.Time{})
	if err != nil {
		t.Fatalf("litestream restore (latest, TXID %s): %v", final.txid, err)
	}
	checkRestored(t, driverMattn, out, final.state, "litestream restore of the latest state")

	// That restore started from walsync's level-9 snapshot.
	plan, err := litestream.CalcRestorePlan(context.Background(), client, 0, time.Time{}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if plan[0].Level != litestream.SnapshotLevel || plan[0].MinTXID != 1 {
		t.Fatalf("Litestream's restore plan starts with L%d %s-%s, want walsync's L9 snapshot", plan[0].Level, plan[0].MinTXID, plan[0].MaxTXID)
	}

	for i, s := range states {
		if i < len(states)-1 && diffState(s.state, final.state) == "" {
			t.Fatalf("state at TXID %s equals the final state: the TXID restores would prove nothing", s.txid)
		}
		out, err := litestreamRestore(t, client, s.txid, time.Time{})
		if err != nil {
			t.Fatalf("litestream restore to TXID %s: %v", s.txid, err)
		}
		checkRestored(t, driverMattn, out, s.state, "litestream restore to TXID "+s.txid.String())
	}

	// Between two syncs a minute apart: the earlier one's state.
	mid := states[len(states)/2]
	out, err = litestreamRestore(t, client, 0, mid.at.Add(30*time.Second))
	if err != nil {
		t.Fatalf("litestream restore to %s (TXID %s): %v", mid.at.Add(30*time.Second), mid.txid, err)
	}
	checkRestored(t, driverMattn, out, mid.state, "litestream restore to the time of TXID "+mid.txid.String())
}

// replicaLevels counts the replica's files per level, as walsync lists them.
func replicaLevels(t *testing.T, c storage.Client) map[int]int {
	t.Helper()
	n := map[int]int{}
	for level := 0; level <= storage.MaxLevel; level++ {
		it, err := c.LTXFiles(context.Background(), level, 0)
		if err != nil {
			t.Fatal(err)
		}
		files, err := storage.Collect(it)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) > 0 {
			n[level] = len(files)
		}
	}
	return n
}
