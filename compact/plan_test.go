package compact_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
)

func TestPolicyValidate(t *testing.T) {
	g := compact.DefaultGFS
	for _, tc := range []struct {
		p    compact.Policy
		want string // "" valid
	}{
		{compact.Policy{GFS: &g}, ""},
		{compact.Policy{SnapshotRetention: time.Hour}, ""},
		{compact.Policy{GFS: &compact.GFS{}}, ""},
		{compact.Policy{}, "give a snapshot retention duration or GFS counts"},
		{compact.Policy{GFS: &g, SnapshotRetention: time.Hour}, "not both"},
		{compact.Policy{SnapshotRetention: -time.Hour}, "negative"},
		{compact.Policy{GFS: &compact.GFS{Hourly: 1, Weekly: -2}}, "weekly count -2 is negative"},
	} {
		err := tc.p.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
		if err != nil {
			if _, perr := compact.PlanRetention(context.Background(), file.New(t.TempDir()), tc.p, time.Now()); perr == nil {
				t.Errorf("PlanRetention accepted %+v", tc.p)
			}
		}
	}
	if compact.DefaultGFS != (compact.GFS{Hourly: 24, Daily: 7, Weekly: 12, Monthly: 12}) {
		t.Fatalf("DefaultGFS %v", compact.DefaultGFS)
	}
}

// TestPlanRetentionEdges: an empty replica, one without snapshots, and a
// plan applied to another replica.
func TestPlanRetentionEdges(t *testing.T) {
	ctx := context.Background()
	g := compact.DefaultGFS
	now := syncAt(100)

	plan, err := compact.PlanRetention(ctx, file.New(t.TempDir()), compact.Policy{GFS: &g}, now)
	if err != nil || plan.Files != 0 || len(plan.Delete) != 0 || plan.After.Restorable() {
		t.Fatalf("empty replica: %+v, %v", plan, err)
	}

	// Without snapshots nothing goes, whatever its age.
	c := file.New(t.TempDir())
	for i := 1; i <= 9; i++ {
		put(t, c, 0, ltx.TXID(i), ltx.TXID(i), 2)
	}
	put(t, c, 1, 1, 9, 2)
	for _, p := range []compact.Policy{{GFS: &g}, {SnapshotRetention: time.Second}} {
		plan, err := compact.PlanRetention(ctx, c, p, now)
		if err != nil || len(plan.Delete) != 0 || plan.Protected != 0 || plan.After.From != 1 || plan.After.EveryTXIDFrom != 1 || plan.After.Latest != 9 {
			t.Fatalf("%s without snapshots: deletes %s, window %+v, %v", p, names(plan.Delete), plan.After, err)
		}
		if !plan.After.FromTime.Equal(syncAt(1)) || !plan.After.LatestTime.Equal(syncAt(9)) {
			t.Fatalf("window times %v, %v", plan.After.FromTime, plan.After.LatestTime)
		}
	}

	// A plan only applies to its own replica.
	put(t, c, storage.SnapshotLevel, 1, 5, 2)
	put(t, c, storage.SnapshotLevel, 1, 9, 2)
	plan, err = compact.PlanRetention(ctx, c, compact.Policy{SnapshotRetention: time.Second}, now)
	if err != nil || names(plan.Delete) != "L9:1-5 L0:1-1 L0:2-2 L0:3-3 L0:4-4" {
		t.Fatalf("plan deletes %s, %v", names(plan.Delete), err)
	}
	if err := compact.ApplyRetention(ctx, file.New(t.TempDir()), plan); err == nil || !strings.Contains(err.Error(), "the plan is for") {
		t.Fatalf("applied to another replica: %v", err)
	}
	if err := compact.ApplyRetention(ctx, c, plan); err != nil {
		t.Fatal(err)
	}
	if got := total(counts(t, c)); got != plan.FilesAfter {
		t.Fatalf("%d files left, the plan said %d", got, plan.FilesAfter)
	}
}

// TestWindowSnapshotAhead: a snapshot newer than every incremental file (a
// snapshot taken before the sync that ships it) does not cut the window:
// every TXID 1..10 still restores through L0, as verify and list say too.
// The window used to start at that snapshot, and call the older one
// isolated.
func TestWindowSnapshotAhead(t *testing.T) {
	c := file.New(t.TempDir())
	for i := 1; i <= 10; i++ {
		put(t, c, 0, ltx.TXID(i), ltx.TXID(i), 2)
	}
	put(t, c, storage.SnapshotLevel, 1, 3, 2)
	put(t, c, storage.SnapshotLevel, 1, 12, 2)
	plan, err := compact.PlanRetention(context.Background(), c, compact.Policy{SnapshotRetention: 1000 * time.Hour}, syncAt(12))
	if err != nil {
		t.Fatal(err)
	}
	if w := plan.After; len(plan.Delete) != 0 || w.From != 1 || w.EveryTXIDFrom != 12 || w.Latest != 12 || len(plan.Isolated) != 0 || !w.FromTime.Equal(syncAt(1)) {
		t.Fatalf("deletes %s, window %+v, %d isolated; want nothing deleted, from 1, every TXID from 12, none isolated", names(plan.Delete), w, len(plan.Isolated))
	}
}

// TestRetentionSeesLostSnapshots: retention retired the incremental files
// below a snapshot, then every snapshot was deleted by hand: the files
// left do not restore the latest TXID. The scheduler's retention says so
// with ErrReplicaLost (the engine then writes a snapshot) instead of
// reporting success while walsync goes on adding files nothing restores.
func TestRetentionSeesLostSnapshots(t *testing.T) {
	ctx := context.Background()
	c := file.New(t.TempDir())
	for i := 5; i <= 9; i++ {
		put(t, c, 0, ltx.TXID(i), ltx.TXID(i), 2)
	}
	put(t, c, 1, 5, 9, 2)
	put(t, c, storage.SnapshotLevel, 1, 4, 2)
	p := compact.Policy{SnapshotRetention: 1000 * time.Hour}
	if _, err := compact.EnforceRetention(ctx, c, p, syncAt(10)); err != nil {
		t.Fatalf("with its snapshot: %v", err)
	}
	if err := c.DeleteLTXFiles(ctx, []*storage.FileInfo{{Level: storage.SnapshotLevel, MinTXID: 1, MaxTXID: 4}}); err != nil {
		t.Fatal(err)
	}
	if _, err := compact.EnforceRetention(ctx, c, p, syncAt(10)); !errors.Is(err, compact.ErrReplicaLost) {
		t.Fatalf("every snapshot deleted: %v, want ErrReplicaLost", err)
	}
}
