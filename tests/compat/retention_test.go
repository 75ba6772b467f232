package compat

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	lsfile "github.com/benbjohnson/litestream/file"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/storage/file"
)

// Litestream restores a walsync replica after walsync's snapshot retention,
// time-based and grandfather-father-son: the latest state, a TXID and a
// time inside the retained window.
func TestLitestreamRestoresRetainedWalsyncReplica_File(t *testing.T) {
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
	w := newWorkload(11)
	const syncs = 12
	states := map[ltx.TXID]syncedState{}
	for i := 1; i <= syncs; i++ {
		if i > 1 {
			w.round(t, app, i)
		}
		now = walsyncClockStart.Add(time.Duration(i) * time.Hour)
		st, err := cdb.Sync(ctx)
		if err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		states[st.TXID] = syncedState{txid: st.TXID, at: now, state: readState(t, app)}
		if i%4 == 0 {
			if _, err := cdb.Snapshot(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if i%3 == 0 {
			if _, err := compact.Compact(ctx, client, 1, opts); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cdb.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// A copy of the replica for each policy.
	gfsDir := filepath.Join(dir, "replica-gfs")
	if out, err := exec.Command("cp", "-a", replica, gfsDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	for name, tc := range map[string]struct {
		dir    string
		policy compact.Policy
	}{
		"time": {replica, compact.Policy{SnapshotRetention: 6 * time.Hour}},
		"gfs":  {gfsDir, compact.Policy{GFS: &compact.GFS{Hourly: 2}}},
	} {
		t.Run(name, func(t *testing.T) {
			c := file.New(tc.dir)
			plan, err := compact.EnforceRetention(ctx, c, tc.policy, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Delete) == 0 {
				t.Fatal("retention deleted nothing; the test proves nothing")
			}
			ls := lsfile.NewReplicaClient(tc.dir)
			out, err := litestreamRestore(t, ls, 0, time.Time{})
			if err != nil {
				t.Fatalf("litestream restore (latest) after %s retention: %v", name, err)
			}
			checkRestored(t, driverMattn, out, states[syncs].state, "latest after "+name+" retention")
			s := states[10]
			out, err = litestreamRestore(t, ls, s.txid, time.Time{})
			if err != nil {
				t.Fatalf("litestream restore to TXID 10 after %s retention: %v", name, err)
			}
			checkRestored(t, driverMattn, out, s.state, "TXID 10 after "+name+" retention")
			out, err = litestreamRestore(t, ls, 0, s.at.Add(30*time.Minute))
			if err != nil {
				t.Fatalf("litestream restore to the time of TXID 10 after %s retention: %v", name, err)
			}
			checkRestored(t, driverMattn, out, s.state, "time of TXID 10 after "+name+" retention")
		})
	}
}
