package compat

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/litestream"
	lsfile "github.com/benbjohnson/litestream/file"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/verify"
)

// walsync verify finds nothing wrong with replicas Litestream v0.5.18 wrote:
// L0 files, L1 compactions and a snapshot, on a directory and on S3, and a
// replica after Litestream's own L0 and snapshot retention.

func TestVerifyLitestreamReplica_File(t *testing.T) {
	dir := t.TempDir()
	replica := filepath.Join(dir, "replica")
	states := replicateWithLitestream(t, filepath.Join(dir, "app.db"), 0, lsfile.NewReplicaClient(replica))
	checkVerifies(t, file.New(replica), states[len(states)-1].txid)
}

func TestVerifyLitestreamReplica_S3(t *testing.T) {
	r := newS3Replica(t)
	states := replicateWithLitestream(t, filepath.Join(t.TempDir(), "app.db"), 65536, r.litestream())
	checkVerifies(t, r.walsync(t), states[len(states)-1].txid)
}

func checkVerifies(t *testing.T, c storage.Client, latest ltx.TXID) *verify.Report {
	t.Helper()
	// Litestream's retention is time-based: every snapshot it keeps
	// continues to the latest state, so StrictSnapshots holds.
	rep, err := verify.Replica(context.Background(), c, verify.Options{Restore: true, StrictSnapshots: true, TempDir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatalf("verify %s: %v", c, err)
	}
	if !rep.OK() {
		var s []string
		for _, p := range rep.Problems {
			s = append(s, p.String())
		}
		t.Fatalf("verify finds %d problems in Litestream's replica (levels %v):\n%s", len(rep.Problems), rep.Levels, strings.Join(s, "\n"))
	}
	if rep.LatestTXID < latest || rep.Restore == nil || rep.Restore.TXID != rep.LatestTXID || rep.WindowFrom == 0 || len(rep.Isolated) != 0 {
		t.Fatalf("verify: latest TXID %s, restore %+v, window from %s, isolated %v; Litestream synced TXID %s",
			rep.LatestTXID, rep.Restore, rep.WindowFrom, rep.Isolated, latest)
	}
	if rep.Levels[0] == 0 || rep.Levels[1] == 0 || rep.Levels[storage.SnapshotLevel] == 0 || rep.Files < 4 {
		t.Fatalf("verify saw files per level %v (%d files): want L0, L1 and L9", rep.Levels, rep.Files)
	}
	return rep
}

// TestVerifyLitestreamReplicaAfterRetention_File: Litestream compacts L1
// and L2 and deletes L0 files as soon as L1 holds them (L0Retention of 1 ns),
// snapshots three times, then expires the two oldest snapshots and, as its
// Store does, the L1 and L2 files below the floor. Every level then starts above TXID 1;
// Litestream's own ValidateLevel and restore accept the replica, and so must
// walsync verify.
func TestVerifyLitestreamReplicaAfterRetention_File(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	replica := filepath.Join(dir, "replica")
	client := lsfile.NewReplicaClient(replica)
	path := filepath.Join(dir, "app.db")
	app := openApp(t, driverModernc, path)
	for _, q := range splitSQL(schema) {
		mustExec(t, app, q)
	}
	lsdb := litestream.NewDB(path)
	lsdb.Logger = quietLogger()
	lsdb.MonitorInterval = 0
	lsdb.CheckpointInterval = 0
	lsdb.ShutdownSyncTimeout = 0
	lsdb.L0Retention = time.Nanosecond
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
	sync := func() ltx.TXID {
		t.Helper()
		if err := lsdb.SyncAndWait(ctx); err != nil {
			t.Fatalf("litestream sync: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // distinct timestamps
		return lsdb.Replica.Pos().TXID
	}
	compactTo := func(level int) {
		t.Helper()
		if _, err := lsdb.Compact(ctx, level); err != nil {
			t.Fatalf("litestream compact to L%d: %v", level, err)
		}
	}
	sync()
	var snaps []*ltx.FileInfo
	var latest ltx.TXID
	w := newWorkload(7)
	for r := 0; r < 12; r++ {
		w.round(t, app, r)
		if r == 4 {
			mustExec(t, app, "VACUUM")
		}
		latest = sync()
		if r%2 == 1 {
			compactTo(1) // and, with it, L0 retention
		}
		if r%4 == 3 {
			compactTo(2)
		}
		if r%4 == 2 {
			info, err := lsdb.Snapshot(ctx)
			if err != nil {
				t.Fatalf("litestream snapshot: %v", err)
			}
			snaps = append(snaps, info)
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Expire the first two snapshots, then clean L1 and L2 below the
	// floor as Litestream's Store.EnforceSnapshotRetention does.
	floor, err := lsdb.EnforceSnapshotRetention(ctx, snaps[2].CreatedAt)
	if err != nil {
		t.Fatalf("litestream snapshot retention: %v", err)
	}
	if len(snaps) != 3 || floor != snaps[1].MaxTXID {
		t.Fatalf("snapshot retention floor %s, want the newest expired snapshot's TXID %s", floor, snaps[1].MaxTXID)
	}
	for _, level := range []int{1, 2} {
		if err := lsdb.EnforceRetentionByTXID(ctx, level, floor); err != nil {
			t.Fatalf("litestream L%d retention: %v", level, err)
		}
	}
	closed = true
	if err := lsdb.Close(ctx); err != nil {
		t.Fatalf("litestream close: %v", err)
	}

	// The replica is shaped by retention, and Litestream finds it sound.
	c := file.New(replica)
	r := litestream.NewReplicaWithClient(nil, client)
	for level := 0; level <= 2; level++ {
		files := mustList(t, c, level)
		if len(files) == 0 || files[0].MinTXID == 1 {
			t.Fatalf("L%d holds %v: want it to start above TXID 1 after retention", level, files)
		}
		verrs, err := r.ValidateLevel(ctx, level)
		if err != nil || len(verrs) != 0 {
			t.Fatalf("Litestream's ValidateLevel(%d): %v %+v", level, err, verrs)
		}
	}
	if n := len(mustList(t, c, storage.SnapshotLevel)); n != 1 {
		t.Fatalf("%d snapshots left, want 1", n)
	}
	if _, err := litestreamRestore(t, client, 0, time.Time{}); err != nil {
		t.Fatalf("Litestream restores its replica after retention: %v", err)
	}
	checkVerifies(t, c, latest)
}

func mustList(t *testing.T, c storage.Client, level int) []*storage.FileInfo {
	t.Helper()
	it, err := c.LTXFiles(context.Background(), level, 0)
	if err != nil {
		t.Fatal(err)
	}
	files, err := storage.Collect(it)
	if err != nil {
		t.Fatal(fmt.Errorf("list L%d: %w", level, err))
	}
	return files
}
