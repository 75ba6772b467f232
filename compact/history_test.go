package compact_test

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
)

// history is a replica built by capture over simulated days, and what the
// database held at every TXID.
type history struct {
	dir    string // the replica's root (file backend)
	states []string
	times  []time.Time // sync time of each TXID
	snaps  []ltx.TXID  // snapshot TXIDs, oldest first
	end    time.Time   // the clock when the history ends
}

// simulate replicates a real database for days of simulated time: a sync
// every step, a level-9 snapshot at the first sync of every hour (and a
// second one at :31 every fifth hour, when the start and step give such a
// sync), and compactions at their intervals (scaled to the sync rate: L1
// every 30 min, L2 every 2 hours, L3 every 6 hours) with L0 retention of an
// hour after each L1 compaction, as the engine schedules them. No snapshot
// retention.
func simulate(t *testing.T, start time.Time, days int, step time.Duration) *history {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	app, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	app.SetMaxOpenConns(1)
	mustExec(t, app, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
	h := &history{dir: filepath.Join(dir, "replica"), states: []string{""}, times: []time.Time{{}}}
	client := file.New(h.dir)
	now := start
	cdb, err := capture.Open(ctx, capture.Options{
		Path: path, Client: client, TempDir: t.TempDir(), Logger: quiet(), Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cdb.Close(ctx) }()
	levels := []compact.Level{{Level: 1, Interval: 30 * time.Minute}, {Level: 2, Interval: 2 * time.Hour}, {Level: 3, Interval: 6 * time.Hour}}
	compacted := make([]time.Time, len(levels))
	for i := range compacted {
		compacted[i] = levels[i].PrevCompactionAt(start)
	}
	lastSnapHour := start.Truncate(time.Hour)
	opts := compact.Options{TempDir: t.TempDir(), Logger: quiet()}
	for i := 1; ; i++ {
		now = start.Add(time.Duration(i-1) * step)
		if now.After(start.Add(time.Duration(days) * 24 * time.Hour)) {
			now = start.Add(time.Duration(i-2) * step)
			break
		}
		mustExec(t, app, "INSERT INTO t (v, b) VALUES (?, randomblob(?))", fmt.Sprintf("s%d", i), 100+(i*37)%900)
		mustExec(t, app, "UPDATE t SET v = v || '+' WHERE id % 11 = ?", i%11)
		if i%50 == 0 {
			mustExec(t, app, "DELETE FROM t WHERE id % 5 = ?", i%5)
		}
		st, err := cdb.Sync(ctx)
		if err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		if st.TXID != ltx.TXID(i) {
			t.Fatalf("sync %d: TXID %s", i, st.TXID)
		}
		h.states = append(h.states, state(t, app))
		h.times = append(h.times, now)
		// Every hour's first sync, and a second one at :31 every fifth
		// hour (one that the hourly tier does not keep).
		if hour := now.Truncate(time.Hour); hour.After(lastSnapHour) || (now.Hour()%5 == 0 && now.Minute() == 31) {
			st, err := cdb.Snapshot(ctx)
			if err != nil || st.TXID != ltx.TXID(i) {
				t.Fatalf("snapshot at %d: %+v %v", i, st, err)
			}
			h.snaps = append(h.snaps, st.TXID)
			lastSnapHour = hour
		}
		for k, l := range levels {
			if at := l.PrevCompactionAt(now); at.After(compacted[k]) {
				if _, err := compact.Compact(ctx, client, l.Level, opts); err != nil {
					t.Fatalf("compact L%d at %v: %v", l.Level, now, err)
				}
				compacted[k] = at
				if l.Level == 1 {
					if _, err := compact.EnforceL0Retention(ctx, client, time.Hour, now); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	h.end = now
	return h
}

// copyReplica copies a file-backend replica, keeping modification times
// (the listing's CreatedAt).
func copyReplica(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "replica")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chtimes(out, info.ModTime(), info.ModTime())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func listAll(t testing.TB, c storage.Client) []*storage.FileInfo {
	t.Helper()
	var all []*storage.FileInfo
	for level := 0; level <= storage.MaxLevel; level++ {
		all = append(all, list(t, c, level)...)
	}
	return all
}

// checkRetained restores c after a plan was applied: every kept snapshot,
// the window's edges, samples of TXIDs and times inside the window (each
// must give exactly the rows the database held then), and samples outside
// it (TXIDs must fail; a time restores the newest kept point before it).
func checkRetained(t *testing.T, c storage.Client, plan *compact.RetentionPlan, h *history, rng *rand.Rand) {
	t.Helper()
	restored := 0
	wantTXID := func(target restore.Target, txid ltx.TXID, what string) {
		t.Helper()
		got, err := restoreState(t, c, target)
		restored++
		if err != nil {
			t.Fatalf("restore %s (%s): %v", target, what, err)
		}
		if got != h.states[txid] {
			t.Fatalf("restore %s (%s): rows differ from the database's at TXID %d", target, what, txid)
		}
	}
	wantFail := func(txid ltx.TXID, what string) {
		t.Helper()
		_, err := restoreState(t, c, restore.Target{TXID: txid})
		restored++
		if err == nil {
			t.Fatalf("restore to TXID %d (%s) succeeded", txid, what)
		}
		if !strings.Contains(err.Error(), txid.String()) {
			t.Fatalf("restore to TXID %d (%s): the error does not name the target: %v", txid, what, err)
		}
	}
	w := plan.After
	latest := ltx.TXID(len(h.states) - 1)
	if w.Latest != latest || !w.LatestTime.Equal(h.times[latest]) {
		t.Fatalf("window ends at %s %v, want %d %v", w.Latest, w.LatestTime, latest, h.times[latest])
	}
	if !w.FromTime.Equal(h.times[w.From]) || !w.EveryTXIDFromTime.Equal(h.times[w.EveryTXIDFrom]) {
		t.Fatalf("window times %v, %v; want %v, %v", w.FromTime, w.EveryTXIDFromTime, h.times[w.From], h.times[w.EveryTXIDFrom])
	}

	// Every kept snapshot, alone; the latest is among them.
	if last := plan.Kept[len(plan.Kept)-1]; last.File.MaxTXID != h.snaps[len(h.snaps)-1] || !slices.Contains(last.Reasons, compact.KeptLatest) {
		t.Fatalf("the latest snapshot is not kept: %+v", last)
	}
	for _, k := range plan.Kept {
		if !k.Time.Equal(h.times[k.File.MaxTXID]) {
			t.Fatalf("kept snapshot %s: time %v, want its TXID's sync time %v", k.File, k.Time, h.times[k.File.MaxTXID])
		}
		wantTXID(restore.Target{TXID: k.File.MaxTXID}, k.File.MaxTXID, "kept snapshot "+k.ReasonString())
	}

	// The edges, and the latest state.
	wantTXID(restore.Target{}, latest, "latest")
	wantTXID(restore.Target{TXID: w.From}, w.From, "window start")
	wantTXID(restore.Target{Time: w.FromTime}, w.From, "window start time")
	wantTXID(restore.Target{TXID: w.EveryTXIDFrom}, w.EveryTXIDFrom, "per-sync window start")
	wantTXID(restore.Target{Time: w.LatestTime.Add(time.Hour)}, latest, "after the latest sync")

	// Inside the window: a file ends at every TXID at or after
	// EveryTXIDFrom, and at each compaction boundary before it.
	files := listAll(t, c)
	ends := map[ltx.TXID]bool{}
	for _, fi := range files {
		ends[fi.MaxTXID] = true
	}
	var inside []ltx.TXID
	for x := w.From; x <= latest; x++ {
		if ends[x] {
			inside = append(inside, x)
		} else if x >= w.EveryTXIDFrom {
			t.Fatalf("no file ends at TXID %d, inside the per-sync window from %d", x, w.EveryTXIDFrom)
		}
	}
	for range 12 {
		x := inside[rng.IntN(len(inside))]
		wantTXID(restore.Target{TXID: x}, x, "inside the window")
	}
	for range 4 {
		x := w.EveryTXIDFrom + ltx.TXID(rng.IntN(int(latest-w.EveryTXIDFrom)+1))
		wantTXID(restore.Target{TXID: x}, x, "inside the per-sync window")
	}
	// Times: the newest sync at or before the time that a file ends at.
	span := h.times[latest].Sub(w.FromTime)
	for range 12 {
		at := w.FromTime.Add(time.Duration(rng.Int64N(int64(span))))
		i, _ := slices.BinarySearchFunc(inside, at, func(x ltx.TXID, at time.Time) int { return h.times[x].Compare(at) })
		if i == len(inside) || h.times[inside[i]].After(at) {
			i--
		}
		wantTXID(restore.Target{Time: at}, inside[i], "a time inside the window")
	}

	// Outside the window: TXIDs no kept snapshot ends at are unreachable;
	// a time restores to the newest kept snapshot at or before it.
	if w.From <= 1 {
		return
	}
	kept := map[ltx.TXID]bool{}
	for _, k := range plan.Kept {
		kept[k.File.MaxTXID] = true
	}
	for range 6 {
		x := 1 + ltx.TXID(rng.IntN(int(w.From-1)))
		if kept[x] {
			continue
		}
		wantFail(x, "before the window")
	}
	for _, k := range plan.Isolated {
		at := h.times[k.File.MaxTXID].Add(time.Minute)
		if ends[k.File.MaxTXID+1] && !h.times[k.File.MaxTXID+1].After(at) {
			continue
		}
		wantTXID(restore.Target{Time: at}, k.File.MaxTXID, "a time just after an isolated snapshot")
		break
	}
	if _, err := restoreState(t, c, restore.Target{Time: h.times[1].Add(-time.Hour)}); err == nil {
		t.Fatal("restore to a time before the first sync succeeded")
	}
	t.Logf("%d restores checked", restored)
}

// TestRetentionOfSimulatedHistory builds three simulated days of a real
// replica, then applies GFS and the time-based policy to copies of it and
// checks what each keeps, that every retained point restores exactly, and
// that points outside the retained window fail.
func TestRetentionOfSimulatedHistory(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 3, 15, 21, 1, 0, 0, time.UTC) // a Sunday evening
	began := time.Now()
	h := simulate(t, start, 3, 10*time.Minute)
	t.Logf("simulated %d syncs, %d snapshots in %v", len(h.states)-1, len(h.snaps), time.Since(began).Round(time.Millisecond))
	now := h.end.Add(2 * time.Minute)
	rng := rand.New(rand.NewPCG(1, 2))

	for _, gfs := range []compact.GFS{compact.DefaultGFS, {Hourly: 6, Daily: 2, Weekly: 12, Monthly: 12}} {
		testGFSHistory(t, h, gfs, now, rng)
	}
	t.Run("SnapshotRetention", func(t *testing.T) {
		c := file.New(copyReplica(t, h.dir))
		ref := file.New(copyReplica(t, h.dir))
		before := counts(t, c)
		p := compact.Policy{SnapshotRetention: 24 * time.Hour}
		plan, err := compact.PlanRetention(ctx, c, p, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := counts(t, c); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Fatalf("planning changed the replica: %v, was %v", got, before)
		}
		// Snapshots created within 24 h of now.
		var want []ltx.TXID
		for _, x := range h.snaps {
			if !h.times[x].Before(now.Add(-24 * time.Hour)) {
				want = append(want, x)
			}
		}
		var got []ltx.TXID
		for _, k := range plan.Kept {
			got = append(got, k.File.MaxTXID)
		}
		if !slices.Equal(got, want) || plan.Protected != want[0] || plan.After.From != want[0] {
			t.Fatalf("kept %v from %s, window from %s; want %v", got, plan.Protected, plan.After.From, want)
		}
		if len(plan.Isolated) != 0 {
			t.Fatalf("isolated snapshots under the time policy: %v", plan.Isolated)
		}
		// The same files as EnforceSnapshotRetention deletes.
		floor, del, err := compact.EnforceSnapshotRetention(ctx, ref, 24*time.Hour, now)
		if err != nil || floor != plan.Floor || names(del) != names(plan.Delete) {
			t.Fatalf("EnforceSnapshotRetention: floor %s, deleted\n %s\nthe plan: floor %s\n %s", floor, names(del), plan.Floor, names(plan.Delete))
		}
		if err := compact.ApplyRetention(ctx, c, plan); err != nil {
			t.Fatal(err)
		}
		after := counts(t, c)
		if total(after) != plan.FilesAfter || total(after) >= total(before) {
			t.Fatalf("files per level %v after, %v before", after, before)
		}
		t.Logf("snapshot retention: %v -> %v files, %d bytes freed, window %d-%d", before, after, plan.Bytes, plan.After.From, plan.After.Latest)
		checkRetained(t, c, plan, h, rng)
	})
}

// testGFSHistory applies gfs to a copy of h's replica (see
// TestRetentionOfSimulatedHistory). h has one snapshot an hour.
func testGFSHistory(t *testing.T, h *history, gfs compact.GFS, now time.Time, rng *rand.Rand) {
	t.Run("GFS "+gfs.String(), func(t *testing.T) {
		ctx := context.Background()
		latest := ltx.TXID(len(h.states) - 1)
		c := file.New(copyReplica(t, h.dir))
		before := counts(t, c)
		plan, err := compact.PlanRetention(ctx, c, compact.Policy{GFS: &gfs}, now)
		if err != nil {
			t.Fatal(err)
		}
		// The dry run changed nothing.
		if got := counts(t, c); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Fatalf("planning changed the replica: %v, was %v", got, before)
		}

		// The expected selection, for one snapshot an hour: the newest of
		// each of the last N hours, UTC days, ISO weeks and months.
		want := map[ltx.TXID][]string{}
		dense := h.snaps[len(h.snaps)-1]
		add := func(x ltx.TXID, why string) {
			want[x] = append(want[x], why)
			if why == compact.KeptHourly {
				dense = min(dense, x)
			}
		}
		newestOf := func(n int, key func(time.Time) string, why string) {
			seen := map[string]bool{}
			for i := len(h.snaps) - 1; i >= 0 && len(seen) < n; i-- {
				if k := key(h.times[h.snaps[i]]); !seen[k] {
					seen[k] = true
					add(h.snaps[i], why)
				}
			}
		}
		add(h.snaps[len(h.snaps)-1], compact.KeptLatest)
		newestOf(gfs.Hourly, func(t time.Time) string { return t.Format(time.DateTime)[:13] }, compact.KeptHourly)
		newestOf(gfs.Daily, func(t time.Time) string { return t.Format(time.DateOnly) }, compact.KeptDaily)
		newestOf(gfs.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprint(y, w) }, compact.KeptWeekly)
		newestOf(gfs.Monthly, func(t time.Time) string { return t.Format("2006-01") }, compact.KeptMonthly)
		got := map[ltx.TXID][]string{}
		for _, k := range plan.Kept {
			got[k.File.MaxTXID] = k.Reasons
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("kept snapshots\n %v\nwant\n %v", got, want)
		}
		if plan.Protected != dense || plan.Floor != dense {
			t.Fatalf("dense window from %s (floor %s), want the oldest hourly snapshot %d", plan.Protected, plan.Floor, dense)
		}
		// Before: the first L1 compaction covers TXIDs 1-4 (21:01..21:31)
		// and L0 retention removed L0 1..4, so the window starts at 4.
		if plan.Before.From != 4 || plan.Before.Latest != latest {
			t.Fatalf("window before: %+v", plan.Before)
		}
		if plan.After.From != plan.Protected || plan.After.EveryTXIDFrom <= plan.After.From || plan.After.Latest != latest {
			t.Fatalf("window after: %+v; want it to start at the dense window, %s", plan.After, plan.Protected)
		}
		isolated := 0
		for x := range want {
			if x < dense {
				isolated++
			}
		}
		if len(plan.Isolated) != isolated {
			t.Fatalf("%d isolated snapshots, want %d", len(plan.Isolated), isolated)
		}
		var bytes int64
		for _, fi := range plan.Delete {
			bytes += fi.Size
			if fi.Level < storage.SnapshotLevel && fi.MaxTXID >= plan.Floor {
				t.Fatalf("plan deletes %s, inside the dense window", fi)
			}
		}
		if bytes != plan.Bytes || plan.FilesAfter != plan.Files-len(plan.Delete) || plan.Files != total(before) {
			t.Fatalf("plan totals: %d bytes (sum %d), files %d -> %d", plan.Bytes, bytes, plan.Files, plan.FilesAfter)
		}

		if err := compact.ApplyRetention(ctx, c, plan); err != nil {
			t.Fatal(err)
		}
		after := counts(t, c)
		if total(after) != plan.FilesAfter || after[storage.SnapshotLevel] != len(plan.Kept) || total(after) >= total(before)/2 {
			t.Fatalf("files per level %v after, %v before; plan: %d kept", after, before, plan.FilesAfter)
		}
		// A snapshot inside the dense window that the hourly tier drops
		// (a second one in its hour) takes its TXID along when no other
		// file ends there; the time then restores the point before it.
		ends := map[ltx.TXID]bool{}
		for _, fi := range listAll(t, c) {
			ends[fi.MaxTXID] = true
		}
		dropped := 0
		for _, fi := range plan.Delete {
			if fi.Level != storage.SnapshotLevel || fi.MaxTXID < dense {
				continue
			}
			dropped++
			if ends[fi.MaxTXID] {
				continue
			}
			if _, err := restore.Plan(ctx, c, restore.Target{TXID: fi.MaxTXID}); err == nil {
				t.Fatalf("TXID %d of the dropped snapshot %s is still reachable", fi.MaxTXID, fi)
			}
			prev := fi.MaxTXID - 1
			for !ends[prev] {
				prev--
			}
			if got, err := restoreState(t, c, restore.Target{Time: h.times[fi.MaxTXID]}); err != nil || got != h.states[prev] {
				t.Fatalf("restore to the time of the dropped snapshot %s: %v; want the state of TXID %d", fi, err, prev)
			}
		}
		if dropped == 0 {
			t.Fatal("the hourly tier dropped no snapshot inside the dense window")
		}
		t.Logf("GFS: %v -> %v files, %d bytes freed, window %d-%d, per sync from %d, %d isolated snapshots",
			before, after, plan.Bytes, plan.After.From, plan.After.Latest, plan.After.EveryTXIDFrom, len(plan.Isolated))
		checkRetained(t, c, plan, h, rng)

		// Idempotent, and an idle replica keeps what it has however much
		// time passes: only newer snapshots expire older ones.
		for _, later := range []time.Time{now, now.Add(400 * 24 * time.Hour)} {
			again, err := compact.PlanRetention(ctx, c, compact.Policy{GFS: &gfs}, later)
			if err != nil || len(again.Delete) != 0 {
				t.Fatalf("GFS again at %v: deletes %s, %v", later, names(again.Delete), err)
			}
		}
	})
}
