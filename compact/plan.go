package compact

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
)

// Policy is a snapshot retention policy: exactly one of SnapshotRetention
// (Litestream's time-based policy, see EnforceSnapshotRetention) and GFS.
type Policy struct {
	// SnapshotRetention keeps the snapshots created (listing CreatedAt)
	// within this duration before now, and the newest one.
	SnapshotRetention time.Duration
	// GFS keeps grandfather-father-son snapshot points; see GFS.
	GFS *GFS
}

// Validate reports a policy that sets neither or both kinds, or a bad value.
func (p Policy) Validate() error {
	switch {
	case p.GFS != nil && p.SnapshotRetention != 0:
		return errors.New("retention policy: give either a snapshot retention duration or GFS counts, not both")
	case p.GFS != nil:
		return p.GFS.Validate()
	case p.SnapshotRetention < 0:
		return fmt.Errorf("retention policy: snapshot retention %v is negative", p.SnapshotRetention)
	case p.SnapshotRetention == 0:
		return errors.New("retention policy: give a snapshot retention duration or GFS counts")
	}
	return nil
}

func (p Policy) String() string {
	if p.GFS != nil {
		return "GFS " + p.GFS.String()
	}
	return "snapshot retention " + p.SnapshotRetention.String()
}

// Reasons a snapshot is kept, as KeptSnapshot.Reasons lists them.
const (
	KeptLatest  = "latest"    // the newest snapshot: always kept
	KeptHourly  = "hourly"    // GFS tiers
	KeptDaily   = "daily"     //
	KeptWeekly  = "weekly"    //
	KeptMonthly = "monthly"   //
	KeptFuture  = "future"    // GFS: dated after now (a skewed clock must not cost data)
	KeptRecent  = "retention" // time policy: created within the retention
	KeptAgeless = "age unknown"
	KeptNeeded  = "needed" // a TXID inside the protected window is reachable only from it
)

// KeptSnapshot is a level-9 snapshot the plan keeps.
type KeptSnapshot struct {
	File *storage.FileInfo
	// Time is the LTX header timestamp: the capture time of the TXID the
	// snapshot holds (zero when the plan did not read it).
	Time    time.Time
	Reasons []string
}

// Window describes what a replica can restore: restore.Window with the
// sync times of its TXIDs.
type Window struct {
	// From is the oldest TXID of the restorable window: restores continue
	// from it through incremental files (levels 0..8), and every TXID at
	// which a file ends, from From to Latest, restores (restore.Window.From).
	// So every time from FromTime on restores, to the newest sync at or
	// before it that a file ends at: every sync where L0 files remain, each
	// compaction's end before that. 0: the latest state cannot be restored
	// (the replica is empty or has a gap).
	From     ltx.TXID
	FromTime time.Time
	// EveryTXIDFrom is the oldest TXID from which every TXID (every sync)
	// up to Latest restores; From <= EveryTXIDFrom.
	EveryTXIDFrom     ltx.TXID
	EveryTXIDFromTime time.Time
	// Latest is the replica's newest TXID and LatestTime its sync time.
	Latest     ltx.TXID
	LatestTime time.Time
}

// Restorable reports whether the latest state can be restored.
func (w Window) Restorable() bool { return w.From != 0 }

// RetentionPlan is what a retention policy deletes and what remains.
// PlanRetention computes it without changing the replica; ApplyRetention
// deletes its files.
type RetentionPlan struct {
	Replica string // the client's String()
	Policy  Policy
	Now     time.Time

	// Delete lists the files to delete: snapshots first, then levels 0..8,
	// each level oldest first. Bytes is their total size.
	Delete []*storage.FileInfo
	Bytes  int64

	// Kept lists the snapshots kept, oldest first, with why.
	Kept []KeptSnapshot

	// Protected is the TXID from which every restore target (a TXID or a
	// time) keeps the outcome it had before: the oldest snapshot the time
	// policy keeps, or under GFS the start of the dense window (the oldest
	// snapshot the hourly tier keeps). 0 when there is no snapshot.
	Protected ltx.TXID
	// Floor is the TXID below which incremental files (levels 0..8) are
	// deleted: each level's files that end below it, oldest first, except
	// the newest file of a level and any file the level above does not yet
	// reach. 0: no incremental file is deleted.
	Floor ltx.TXID

	// Files and FilesBytes count the replica before; FilesAfter after.
	Files      int
	FilesBytes int64
	FilesAfter int

	// Before and After are the restorable windows before and after the
	// deletion (set by PlanRetention; EnforceRetention leaves them zero).
	Before, After Window
	// Isolated are the kept snapshots older than After.From: each restores
	// on its own, to its TXID, but nothing between them does.
	Isolated []KeptSnapshot
}

// PlanRetention computes what policy p deletes from the replica at time
// now, and the restorable window before and after, without changing
// anything. Apply it with ApplyRetention.
//
// Deleting the plan's files never breaks a retained point:
//
//   - every kept snapshot restores (a snapshot alone is a restore plan);
//   - from Protected on, every TXID at which a kept file ends and that was
//     restorable stays restorable, so every time from there on restores
//     (to the newest such TXID at or before it) and the latest state
//     stays restorable. Incremental files are deleted only below Floor <=
//     Protected, and the snapshot that ends at Protected is kept, so (see
//     "Why retention never breaks a restore" in retention.go) no plan of a
//     target at or after Protected uses them. A snapshot newer than
//     Protected that the policy does not keep can be the start of such a
//     plan: the plan recomputes reachability with restore.Chain, the rule
//     restore.Plan follows, and keeps it (with the reason KeptNeeded) when any of those TXIDs would
//     become unreachable. What such a snapshot's deletion can take is only
//     its own TXID, when no other file ends there: a time that resolved to
//     it then resolves to the newest point before it.
//
// The newest file of every level is kept (capture and Compact resume from
// them) and a level-N file is deleted only once level N+1 reaches its
// MaxTXID, so a later compaction never finds a gap.
func PlanRetention(ctx context.Context, c storage.Client, p Policy, now time.Time) (*RetentionPlan, error) {
	return planRetention(ctx, c, p, now, true)
}

// EnforceRetention plans policy p at time now and applies the plan: what
// a scheduler calls. It returns the plan (without its windows, which take
// extra reads).
func EnforceRetention(ctx context.Context, c storage.Client, p Policy, now time.Time) (*RetentionPlan, error) {
	plan, err := planRetention(ctx, c, p, now, false)
	if err != nil {
		return nil, err
	}
	if err := ApplyRetention(ctx, c, plan); err != nil {
		return plan, err
	}
	return plan, nil
}

// ApplyRetention deletes the plan's files from c, the replica it was made
// for: the snapshots first, then the incremental files. Either order keeps
// every retained point restorable; files already gone are not an error.
func ApplyRetention(ctx context.Context, c storage.Client, plan *RetentionPlan) error {
	_, err := applyPlan(ctx, c, plan)
	return err
}

// applyPlan deletes the plan's files and returns those deleted.
func applyPlan(ctx context.Context, c storage.Client, plan *RetentionPlan) ([]*storage.FileInfo, error) {
	if plan == nil || len(plan.Delete) == 0 {
		return nil, nil
	}
	if plan.Replica != c.String() {
		return nil, fmt.Errorf("apply retention: the plan is for %s, not %s", plan.Replica, c)
	}
	n := 0
	for n < len(plan.Delete) && plan.Delete[n].Level == storage.SnapshotLevel {
		n++
	}
	snaps, lower := plan.Delete[:n], plan.Delete[n:]
	if len(snaps) > 0 {
		if err := c.DeleteLTXFiles(ctx, snaps); err != nil {
			return nil, fmt.Errorf("apply retention to %s: delete %d snapshots: %w", c, len(snaps), err)
		}
	}
	if len(lower) > 0 {
		if err := c.DeleteLTXFiles(ctx, lower); err != nil {
			return snaps, fmt.Errorf("apply retention to %s: delete %d files below TXID %s: %w", c, len(lower), plan.Floor, err)
		}
	}
	return plan.Delete, nil
}

// planRetention computes the plan; describe adds the windows, the
// isolated snapshots and the kept snapshots' times.
func planRetention(ctx context.Context, c storage.Client, p Policy, now time.Time, describe bool) (*RetentionPlan, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	plan := &RetentionPlan{Replica: c.String(), Policy: p, Now: now}
	fail := func(err error) (*RetentionPlan, error) {
		return nil, fmt.Errorf("plan retention (%s) for %s: %w", p, c, err)
	}
	budget := storage.NewBudget()
	snaps, err := listLevelWithin(ctx, c, storage.SnapshotLevel, budget)
	if err != nil {
		return fail(err)
	}
	// snaps is ordered by MaxTXID (every MinTXID is 1).
	reasons := make([][]string, len(snaps)) // nil: a deletion candidate
	var times []time.Time                   // header timestamps, when read
	protected := -1                         // index of the snapshot that starts the protected window
	floor := ltx.TXID(0)
	if p.GFS != nil {
		if times, err = headerTimes(ctx, c, snaps); err != nil {
			return fail(err)
		}
		reasons, protected = p.GFS.selectSnapshots(snaps, times, now)
		if protected >= 0 {
			floor = snaps[protected].MaxTXID
		}
	} else {
		// Litestream's rule (see EnforceSnapshotRetention): the floor is the
		// newest expired snapshot before the oldest kept one.
		threshold := now.Add(-p.SnapshotRetention)
		for i, fi := range snaps {
			switch {
			case i == len(snaps)-1:
				reasons[i] = []string{KeptLatest}
			case fi.CreatedAt.IsZero():
				reasons[i] = []string{KeptAgeless}
			case !fi.CreatedAt.Before(threshold):
				reasons[i] = []string{KeptRecent}
			}
			if reasons[i] != nil && protected < 0 {
				protected = i
			}
		}
		if protected > 0 {
			floor = snaps[protected-1].MaxTXID
		}
	}
	if protected >= 0 {
		plan.Protected = snaps[protected].MaxTXID
	}
	plan.Floor = floor

	anyDeleted := slices.ContainsFunc(reasons, func(r []string) bool { return r == nil })
	if p.GFS == nil && !anyDeleted && !describe && len(snaps) > 0 {
		// As before the plan existed: nothing expired, nothing else goes,
		// and one listing was enough.
		plan.Floor = 0
		plan.Kept = keptList(snaps, reasons, times)
		return plan, nil
	}

	levels := make([][]*storage.FileInfo, storage.SnapshotLevel+1)
	levels[storage.SnapshotLevel] = snaps
	for level := 0; level < storage.SnapshotLevel; level++ {
		if levels[level], err = listLevelWithin(ctx, c, level, budget); err != nil {
			return fail(err)
		}
	}
	var all []*storage.FileInfo
	for _, files := range levels {
		all = append(all, files...)
		for _, fi := range files {
			plan.Files++
			plan.FilesBytes += fi.Size
		}
	}
	if p.GFS == nil && !anyDeleted {
		plan.Floor = 0 // nothing expired: nothing else goes
	}
	if !describe && len(all) > 0 && restore.NewChain(all).Window().Earliest == nil {
		// Retention is the one job that lists every level: the place to
		// see that what walsync wrote no longer restores (every snapshot
		// deleted after older incremental files were retired).
		return fail(fmt.Errorf("%w: the latest TXID %s cannot be restored from the files left", ErrReplicaLost, restore.NewChain(all).Latest()))
	}
	lower := lowerDeletions(levels, plan.Floor)

	// The safety check: every TXID at or after Protected that a restore
	// reaches now and at which a remaining file ends, it still reaches
	// after the deletion. By the argument in retention.go only the deletion
	// of a snapshot newer than Protected can break one; keep the one each
	// broken TXID's plan starts from.
	before := restore.NewChain(all).Reachable()
	for {
		gone := map[*storage.FileInfo]bool{}
		for i, r := range reasons {
			if r == nil {
				gone[snaps[i]] = true
			}
		}
		for _, fi := range lower {
			gone[fi] = true
		}
		remaining := slices.DeleteFunc(slices.Clone(all), func(fi *storage.FileInfo) bool { return gone[fi] })
		broken, ok := firstLost(before, remaining, plan.Protected)
		if !ok {
			break
		}
		// The restore plan of broken started from the newest snapshot at or
		// before it: keep that one, if it was to go.
		i := sort.Search(len(snaps), func(i int) bool { return snaps[i].MaxTXID > broken }) - 1
		if i < 0 || reasons[i] != nil || snaps[i].MaxTXID < plan.Protected {
			return fail(fmt.Errorf("internal error: the plan would make TXID %s unreachable", broken))
		}
		reasons[i] = []string{KeptNeeded}
	}

	for i, r := range reasons {
		if r == nil {
			plan.Delete = append(plan.Delete, snaps[i])
		}
	}
	plan.Delete = append(plan.Delete, lower...)
	for _, fi := range plan.Delete {
		plan.Bytes += fi.Size
	}
	plan.FilesAfter = plan.Files - len(plan.Delete)

	if describe && times == nil {
		if times, err = headerTimes(ctx, c, snaps); err != nil {
			return fail(err)
		}
	}
	plan.Kept = keptList(snaps, reasons, times)
	if !describe {
		return plan, nil
	}
	if plan.Before, err = describeWindow(ctx, c, all); err != nil {
		return fail(err)
	}
	deleted := map[*storage.FileInfo]bool{}
	for _, fi := range plan.Delete {
		deleted[fi] = true
	}
	remaining := slices.DeleteFunc(slices.Clone(all), func(fi *storage.FileInfo) bool { return deleted[fi] })
	if plan.After, err = describeWindow(ctx, c, remaining); err != nil {
		return fail(err)
	}
	for _, k := range plan.Kept {
		if k.File.MaxTXID < plan.After.From {
			plan.Isolated = append(plan.Isolated, k)
		}
	}
	return plan, nil
}

// lowerDeletions returns the files of levels 0..8 that end below floor,
// each level's oldest first, keeping the newest file of every level and
// every file the level above does not yet reach.
func lowerDeletions(levels [][]*storage.FileInfo, floor ltx.TXID) []*storage.FileInfo {
	if floor == 0 {
		return nil
	}
	var lower []*storage.FileInfo
	for level := 0; level < storage.SnapshotLevel; level++ {
		files := levels[level]
		var next ltx.TXID // how far level+1 reaches; 0: empty or none
		if level+1 < storage.SnapshotLevel {
			for _, fi := range levels[level+1] {
				next = max(next, fi.MaxTXID)
			}
		}
		n := 0
		for _, fi := range files {
			if fi.MaxTXID >= floor || (next != 0 && fi.MaxTXID > next) {
				break
			}
			n++
		}
		if n == len(files) {
			n-- // the newest file of a level stays
		}
		if n > 0 {
			lower = append(lower, files[:n]...)
		}
	}
	return lower
}

func keptList(snaps []*storage.FileInfo, reasons [][]string, times []time.Time) []KeptSnapshot {
	var kept []KeptSnapshot
	for i, r := range reasons {
		if r == nil {
			continue
		}
		k := KeptSnapshot{File: snaps[i], Reasons: r}
		if times != nil {
			k.Time = times[i]
		}
		kept = append(kept, k)
	}
	return kept
}

// firstLost returns the first TXID at or after from that a file of
// remaining ends at and that was reachable (in before, sorted) but is not
// with remaining alone.
func firstLost(before []ltx.TXID, remaining []*storage.FileInfo, from ltx.TXID) (ltx.TXID, bool) {
	after := restore.NewChain(remaining).Reachable()
	ends := make([]ltx.TXID, 0, len(remaining))
	for _, fi := range remaining {
		if fi.MaxTXID >= from {
			ends = append(ends, fi.MaxTXID)
		}
	}
	slices.Sort(ends)
	for _, x := range slices.Compact(ends) {
		if _, was := slices.BinarySearch(before, x); !was {
			continue
		}
		if _, is := slices.BinarySearch(after, x); !is {
			return x, true
		}
	}
	return 0, false
}

// describeWindow computes files' window and reads its times.
func describeWindow(ctx context.Context, c storage.Client, files []*storage.FileInfo) (Window, error) {
	rw := restore.NewChain(files).Window()
	w := Window{From: rw.From, EveryTXIDFrom: rw.EveryFrom, Latest: rw.Latest}
	end := map[ltx.TXID]*storage.FileInfo{}
	for _, fi := range files {
		if prev := end[fi.MaxTXID]; prev == nil || fi.Level < prev.Level {
			end[fi.MaxTXID] = fi
		}
	}
	for _, x := range []struct {
		txid ltx.TXID
		t    *time.Time
	}{{w.From, &w.FromTime}, {w.EveryTXIDFrom, &w.EveryTXIDFromTime}, {w.Latest, &w.LatestTime}} {
		fi := end[x.txid]
		if fi == nil {
			continue
		}
		hdr, err := storage.ReadHeader(ctx, c, fi)
		if err != nil {
			return w, err
		}
		*x.t = time.UnixMilli(hdr.Timestamp).UTC()
	}
	return w, nil
}

// headerConcurrency bounds the header reads in flight.
const headerConcurrency = 8

// headerTimes reads the LTX header timestamp of every file.
func headerTimes(ctx context.Context, c storage.Client, files []*storage.FileInfo) ([]time.Time, error) {
	times := make([]time.Time, len(files))
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	sem := make(chan struct{}, headerConcurrency)
	for i, fi := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			hdr, err := storage.ReadHeader(ctx, c, fi)
			if err != nil {
				errs[i] = fmt.Errorf("read the header of %s: %w", fi, err)
				return
			}
			times[i] = time.UnixMilli(hdr.Timestamp).UTC()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return times, nil
}

// ReasonString joins a kept snapshot's reasons for display.
func (k KeptSnapshot) ReasonString() string { return strings.Join(k.Reasons, ",") }
