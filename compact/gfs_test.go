package compact_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
)

// putAt stores a synthetic LTX file whose header timestamp is ts.
func putAt(t testing.TB, c storage.Client, level int, minTXID, maxTXID ltx.TXID, ts time.Time) {
	t.Helper()
	data := storagetest.LTX(t, minTXID, maxTXID, 2, 4096, ts, true)
	if _, err := c.WriteLTXFile(context.Background(), level, minTXID, maxTXID, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

func kept(plan *compact.RetentionPlan) string {
	var s []string
	for _, k := range plan.Kept {
		s = append(s, fmt.Sprintf("%d:%s", k.File.MaxTXID, k.ReasonString()))
	}
	return strings.Join(s, " ")
}

// TestGFSSelection: each tier keeps the newest snapshot of each of its
// last N non-empty UTC periods (an empty period uses no slot), by header
// timestamp, not by the listing's time; ISO weeks cross years; the newest
// and future-dated snapshots are always kept; the dense window starts at
// the oldest hourly snapshot.
func TestGFSSelection(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 18, 12, 0, 0, 0, time.UTC) // a Wednesday, ISO week 12
	at := func(s string) time.Time {
		tm, err := time.Parse(time.DateTime, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	snaps := []string{
		"2025-12-28 10:00:00", // 1: a Sunday, ISO 2025-W52
		"2025-12-31 23:00:00", // 2: a Wednesday, ISO 2026-W01
		"2026-01-31 23:59:00", // 3: ISO W05
		"2026-02-14 08:00:00", // 4: ISO W07
		"2026-03-01 12:00:00", // 5: a Sunday, ISO W09 (W10 is empty)
		"2026-03-09 00:30:00", // 6: a Monday, ISO W11
		"2026-03-15 20:00:00", // 7: a Sunday, ISO W11
		"2026-03-17 08:00:00", // 8
		"2026-03-17 23:00:00", // 9
		"2026-03-18 09:59:00", // 10
		"2026-03-18 10:30:00", // 11
		"2026-03-18 11:10:00", // 12
		"2026-03-18 11:50:00", // 13
	}
	setup := func(t *testing.T, extra ...time.Time) *file.Client {
		c := file.New(t.TempDir())
		times := append([]time.Time{}, extra...)
		for _, s := range snaps {
			times = append(times, at(s))
		}
		for i, ts := range times {
			if i >= len(extra) {
				putAt(t, c, storage.SnapshotLevel, 1, ltx.TXID(i+1-len(extra))*10, ts)
			}
		}
		putAt(t, c, 0, 130, 130, at("2026-03-18 11:50:00"))
		return c
	}
	for _, tc := range []struct {
		gfs       compact.GFS
		kept      string
		protected ltx.TXID
	}{
		{
			compact.GFS{Hourly: 3, Daily: 2, Weekly: 3, Monthly: 3},
			"30:monthly 40:monthly 50:weekly 70:weekly 90:daily 100:hourly 110:hourly 130:latest,hourly,daily,weekly,monthly",
			100,
		},
		{
			compact.GFS{Hourly: 1, Daily: 0, Weekly: 6, Monthly: 0},
			"20:weekly 30:weekly 40:weekly 50:weekly 70:weekly 130:latest,hourly,weekly",
			130,
		},
		{
			// Only the latest: the dense window starts there.
			compact.GFS{},
			"130:latest",
			130,
		},
		{
			compact.GFS{Monthly: 100},
			"20:monthly 30:monthly 40:monthly 130:latest,monthly",
			130,
		},
	} {
		t.Run(tc.gfs.String(), func(t *testing.T) {
			c := setup(t)
			before := counts(t, c)
			plan, err := compact.PlanRetention(ctx, c, compact.Policy{GFS: &tc.gfs}, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := kept(plan); got != tc.kept || plan.Protected != tc.protected {
				t.Fatalf("kept %s from %s\nwant %s from %d", got, plan.Protected, tc.kept, tc.protected)
			}
			if got := counts(t, c); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Fatal("planning changed the replica")
			}
			if err := compact.ApplyRetention(ctx, c, plan); err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, fi := range list(t, c, storage.SnapshotLevel) {
				left = append(left, fmt.Sprint(int(fi.MaxTXID)))
			}
			var want []string
			for _, k := range strings.Fields(tc.kept) {
				want = append(want, strings.Split(k, ":")[0])
			}
			if strings.Join(left, " ") != strings.Join(want, " ") {
				t.Fatalf("snapshots left %v, want %v", left, want)
			}
			// With only snapshots, the window is the latest state; every
			// other kept snapshot is an isolated point that restores.
			if plan.After.From != 130 || len(plan.Isolated) != len(plan.Kept)-1 {
				t.Fatalf("window %+v, %d isolated", plan.After, len(plan.Isolated))
			}
			for _, k := range plan.Isolated {
				if _, err := restore.Plan(ctx, c, restore.Target{TXID: k.File.MaxTXID}); err != nil {
					t.Fatalf("isolated snapshot %s: %v", k.File, err)
				}
			}
		})
	}

	// A snapshot dated after now (a skewed clock) is kept and uses no
	// slot; the header time, not the listing's, is what counts.
	t.Run("future and header time", func(t *testing.T) {
		c := setup(t)
		putAt(t, c, storage.SnapshotLevel, 1, 125, now.Add(time.Hour))
		gfs := compact.GFS{Hourly: 1}
		plan, err := compact.PlanRetention(ctx, c, compact.Policy{GFS: &gfs}, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := kept(plan); got != "125:future 130:latest,hourly" {
			t.Fatalf("kept %s", got)
		}
		// The listing's CreatedAt is now the mtime: make it say otherwise.
		c2 := setup(t)
		for _, fi := range list(t, c2, storage.SnapshotLevel) {
			if err := os.Chtimes(c2.Path(fi.Level, fi.MinTXID, fi.MaxTXID), now, now); err != nil {
				t.Fatal(err)
			}
		}
		gfs = compact.GFS{Daily: 1}
		plan, err = compact.PlanRetention(ctx, c2, compact.Policy{GFS: &gfs}, now)
		if err != nil || kept(plan) != "130:latest,daily" {
			t.Fatalf("kept %s, %v: the header times decide", kept(plan), err)
		}
	})
}

// TestGFSKeepsNeededSnapshot: a snapshot inside the dense window that no
// tier selects is deleted when the incremental files still reach every
// TXID after it, and kept ("needed") when a TXID inside the window is
// reachable only from it.
func TestGFSKeepsNeededSnapshot(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 18, 12, 0, 0, 0, time.UTC)
	ts := func(h, m int) time.Time { return time.Date(2026, 3, 18, h, m, 0, 0, time.UTC) }
	// TXID x is synced at 10:00 + 2.5x min: 20 at 10:50, 25 at 11:02:30.
	tx := func(x ltx.TXID) time.Time { return ts(10, 0).Add(time.Duration(x) * 150 * time.Second) }
	gfs := compact.GFS{Hourly: 2}
	for _, tc := range []struct {
		name     string
		l0From   ltx.TXID // L0 holds l0From..30
		kept     string
		reach    []ltx.TXID
		unreach  []ltx.TXID
		from     ltx.TXID
		isolated int
	}{
		// L0 21..30 reach 25 and on from snapshot 20: 25 may go.
		{"incremental complete", 21, "20:hourly 30:latest,hourly", []ltx.TXID{20, 21, 25, 26, 30}, []ltx.TXID{10, 19}, 20, 0},
		// Only L1 21-23 and L0 26..30: 26..30 are reachable from snapshot
		// 25 alone, so it stays. 24 is unreachable, so the window (the
		// points connected to the latest) starts at 25.
		{"snapshot needed", 26, "20:hourly 25:needed 30:latest,hourly", []ltx.TXID{20, 23, 25, 26, 30}, []ltx.TXID{10, 21, 24}, 25, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := file.New(t.TempDir())
			putAt(t, c, storage.SnapshotLevel, 1, 10, tx(10)) // hour 10, not its newest
			putAt(t, c, storage.SnapshotLevel, 1, 20, tx(20)) // hour 10's newest: the dense window's start
			putAt(t, c, storage.SnapshotLevel, 1, 25, tx(25)) // hour 11, not its newest
			putAt(t, c, storage.SnapshotLevel, 1, 30, tx(30)) // hour 11's newest, the latest
			putAt(t, c, 1, 21, 23, tx(23))
			for x := tc.l0From; x <= 30; x++ {
				putAt(t, c, 0, x, x, tx(x))
			}
			plan, err := compact.PlanRetention(ctx, c, compact.Policy{GFS: &gfs}, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := kept(plan); got != tc.kept || plan.Protected != 20 {
				t.Fatalf("kept %s from %s; want %s from 20", got, plan.Protected, tc.kept)
			}
			if err := compact.ApplyRetention(ctx, c, plan); err != nil {
				t.Fatal(err)
			}
			for _, x := range tc.reach {
				if _, err := restore.Plan(ctx, c, restore.Target{TXID: x}); err != nil {
					t.Errorf("TXID %d: %v", x, err)
				}
			}
			for _, x := range tc.unreach {
				if _, err := restore.Plan(ctx, c, restore.Target{TXID: x}); err == nil {
					t.Errorf("TXID %d is still reachable", x)
				}
			}
			if _, err := restore.Plan(ctx, c, restore.Target{}); err != nil {
				t.Errorf("latest: %v", err)
			}
			if plan.After.From != tc.from || plan.After.Latest != 30 || len(plan.Isolated) != tc.isolated {
				t.Errorf("window after %+v, isolated %d", plan.After, len(plan.Isolated))
			}
		})
	}
}

// TestGFSRepeatedEqualsOnce: GFS applied after every snapshot, as a
// scheduler would, leaves exactly the files one application at the end
// leaves: a snapshot no tier keeps never becomes kept later, the dense
// window only moves forward, and retention never takes a file a later
// compaction needs (every Compact below would fail on a gap).
func TestGFSRepeatedEqualsOnce(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 5, 30, 18, 0, 0, 0, time.UTC)
	tx := func(x ltx.TXID) time.Time { return start.Add(time.Duration(x) * 30 * time.Minute) }
	gfs := compact.GFS{Hourly: 6, Daily: 1, Weekly: 1, Monthly: 1}
	p := compact.Policy{GFS: &gfs}
	often, once := file.New(t.TempDir()), file.New(t.TempDir())
	opts := compact.Options{TempDir: t.TempDir(), Logger: quiet()}
	const last = 100 // 50 hours, across a month's end
	for x := ltx.TXID(1); x <= last; x++ {
		for _, c := range []*file.Client{often, once} {
			putAt(t, c, 0, x, x, tx(x))
			for _, l := range []struct {
				level int
				every ltx.TXID
			}{{1, 2}, {2, 8}, {3, 24}} {
				if x%l.every == 0 {
					if _, err := compact.Compact(ctx, c, l.level, opts); err != nil {
						t.Fatalf("compact L%d at %d: %v", l.level, x, err)
					}
				}
			}
			if x%2 == 0 || x%7 == 0 { // hourly, and some extra ones
				putAt(t, c, storage.SnapshotLevel, 1, x, tx(x))
			}
		}
		if x%2 == 0 {
			if _, err := compact.EnforceRetention(ctx, often, p, tx(x)); err != nil {
				t.Fatal(err)
			}
		}
	}
	plan, err := compact.EnforceRetention(ctx, once, p, tx(last))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := names(listAll(t, often)), names(listAll(t, once)); a != b {
		t.Fatalf("retention after every snapshot left\n %s\nonce at the end\n %s", a, b)
	}
	// The last 6 hours with snapshots: 100, 98 (with 99), 96, 94, 92 and
	// 90 (with 91, an extra snapshot and the newest of its hour).
	if len(plan.Delete) == 0 || plan.Protected != 91 {
		t.Fatalf("plan: deleted %d files, dense window from %s; want from 91", len(plan.Delete), plan.Protected)
	}
	for _, x := range []ltx.TXID{91, 92, 93, 99, 0} {
		if _, err := restore.Plan(ctx, once, restore.Target{TXID: x}); err != nil {
			t.Fatalf("TXID %s: %v", x, err)
		}
	}
}
