package compat

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/benbjohnson/litestream"
	lsfile "github.com/benbjohnson/litestream/file"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/storage/file"
)

// Litestream restores a walsync replica that walsync compacted (L1, L2) and
// whose L0 retention walsync enforced: the latest state, TXIDs that only
// compacted files still reach, one in the retained L0 range, and a point
// in time between two syncs (which relies on compacted files carrying their
// newest input's timestamp).
func TestLitestreamRestoresCompactedWalsyncReplica_File(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	replica := filepath.Join(dir, "replica")
	client := file.New(replica)

	app := openApp(t, driverMattn, path)
	for _, q := range splitSQL(schema) {
		mustExec(t, app, q)
	}
	now := walsyncClockStart
	cdb, err := capture.Open(ctx, capture.Options{
		Path: path, Client: client, TempDir: t.TempDir(), CheckpointPages: 60,
		Logger: quietLogger(), Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cdb.Close(ctx)

	opts := compact.Options{TempDir: t.TempDir(), Logger: quietLogger()}
	w := newWorkload(7)
	const syncs = 12
	states := map[ltx.TXID]syncedState{}
	for i := 1; i <= syncs; i++ {
		if i > 1 {
			w.round(t, app, i)
		}
		if i == 5 {
			mustExec(t, app, "DELETE FROM t WHERE id % 2 = 0")
			mustExec(t, app, "VACUUM")
		}
		now = walsyncClockStart.Add(time.Duration(i) * time.Minute)
		st, err := cdb.Sync(ctx)
		if err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		if st.TXID != ltx.TXID(i) {
			t.Fatalf("sync %d reached TXID %s", i, st.TXID)
		}
		states[st.TXID] = syncedState{txid: st.TXID, at: now, state: readState(t, app)}
		if i%3 == 0 {
			if info, err := compact.Compact(ctx, client, 1, opts); err != nil || info == nil || info.MaxTXID != st.TXID {
				t.Fatalf("compact L1 at TXID %s: %v, %v", st.TXID, info, err)
			}
		}
		if i%6 == 0 {
			if info, err := compact.Compact(ctx, client, 2, opts); err != nil || info == nil || info.MaxTXID != st.TXID {
				t.Fatalf("compact L2 at TXID %s: %v, %v", st.TXID, info, err)
			}
		}
	}
	if err := cdb.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Five minutes of L0: syncs 1..7 are older, cut back to L1's boundary
	// at 6. TXIDs 1..6 are now reachable only through compacted files.
	deleted, err := compact.EnforceL0Retention(ctx, client, 5*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 6 || deleted[5].MaxTXID != 6 {
		t.Fatalf("L0 retention deleted %v, want L0 1..6", deleted)
	}
	if got, want := fmt.Sprint(replicaLevels(t, client)), fmt.Sprint(map[int]int{0: 6, 1: 4, 2: 2}); got != want {
		t.Fatalf("files per level %s, want %s", got, want)
	}

	ls := lsfile.NewReplicaClient(replica)
	final := states[syncs]
	out, err := litestreamRestore(t, ls, 0, time.Time{})
	if err != nil {
		t.Fatalf("litestream restore (latest): %v", err)
	}
	checkRestored(t, driverMattn, out, final.state, "litestream restore of the latest compacted state")

	for _, txid := range []ltx.TXID{3, 6, 9, 10} {
		s := states[txid]
		if diffState(s.state, final.state) == "" {
			t.Fatalf("state at TXID %s equals the final state", txid)
		}
		plan, err := litestream.CalcRestorePlan(ctx, ls, txid, time.Time{}, quietLogger())
		if err != nil {
			t.Fatalf("litestream plan to TXID %s: %v", txid, err)
		}
		if txid <= 6 && plan[len(plan)-1].Level == 0 {
			t.Fatalf("litestream's plan to TXID %s ends with an L0 file, which retention deleted", txid)
		}
		out, err := litestreamRestore(t, ls, txid, time.Time{})
		if err != nil {
			t.Fatalf("litestream restore to TXID %s: %v", txid, err)
		}
		checkRestored(t, driverMattn, out, s.state, "litestream restore to TXID "+txid.String())
	}

	// Half a minute after sync 9, whose L0 file is kept, and after sync 6,
	// which only L1 4-6 and L2 1-6 end at: their timestamp is sync 6's.
	for _, txid := range []ltx.TXID{9, 6} {
		s := states[txid]
		out, err := litestreamRestore(t, ls, 0, s.at.Add(30*time.Second))
		if err != nil {
			t.Fatalf("litestream restore to %s (TXID %s): %v", s.at.Add(30*time.Second), txid, err)
		}
		checkRestored(t, driverMattn, out, s.state, "litestream restore to the time of TXID "+txid.String())
	}
}
