package compact

import (
	"context"
	"fmt"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
)

// Why retention never breaks a restore that should work
//
// walsync's restore plan (restore.Plan, like Litestream's CalcRestorePlan)
// starts from the furthest file beginning at TXID 1 that does not pass the
// target, then repeatedly takes, from any of levels 0..8, the file that
// continues the range (MinTXID <= cur+1 < MaxTXID+1) and reaches furthest
// without passing the target. A target T is reachable exactly when such a
// chain ends at T. Both retention functions delete only a prefix of a level
// (its oldest files), so no level ever gets a hole, and:
//
//   - EnforceL0Retention deletes L0 files that level 1 covers and that are
//     older than the retention, and only up to an L1 file boundary. The L0
//     files it keeps therefore start right after a TXID that L1 reaches, so
//     every TXID an L0 file still ends at stays reachable (through L1, then
//     L0). What is lost is per-sync granularity older than the retention:
//     there, only TXIDs at which a compacted file ends remain reachable.
//
//   - EnforceSnapshotRetention keeps snapshot S (MaxTXID s), the oldest one
//     retained, and deletes lower-level files whose MaxTXID is below a floor
//     f <= s. For a target T >= s the plan's base is S or a later file
//     starting at TXID 1 (MaxTXID >= s), and every later step takes a file
//     whose MaxTXID is above the current position, itself >= s. No file with
//     MaxTXID < f <= s can be part of that plan: the plan of every T >= s is
//     the same before and after, and the latest state stays restorable.
//     Targets below s lose their snapshot and fail, as they should.
//
//   - PlanRetention (plan.go) is that rule for both policies. Under GFS, S
//     is the oldest snapshot the hourly tier keeps (the dense window's
//     start) and f = s. Snapshots older than S that a tier keeps stay, each
//     a restore point on its own (a snapshot alone is a plan). A snapshot
//     newer than S that no tier keeps may have been the base of a later
//     TXID's plan: the plan recomputes which TXIDs are reachable (with
//     restore.Chain, restore.Plan's own rule) and keeps such a snapshot when a TXID at
//     or after s, at which a remaining file ends, would otherwise become
//     unreachable. Deleting it can then only take its own TXID, when no
//     other file ends there.
//
// Two more rules keep the replica working for the writers, not only for
// restores: the newest file of every level is kept (capture resumes from
// L0's newest file header; Compact resumes after its destination's newest
// file), and a file of level N is deleted only once level N+1 reaches its
// MaxTXID (or N+1 is empty), so Compact(N+1) never finds a gap where it
// resumes.

// EnforceL0Retention deletes the L0 files that level 1 already covers and
// that were created at or before now-retention, and returns them.
//
// It follows Litestream v0.5.18 (DB.EnforceL0RetentionByTime): files are
// considered oldest first and the scan stops at the first one that is too
// recent (or not yet in L1), so the L0 files kept are contiguous; the
// newest L0 file is never deleted; retention <= 0 disables it. It is
// stricter in two ways: the deleted prefix ends exactly where an L1 file
// ends (Litestream may stop inside an L1 file, which makes the first kept
// L0 TXIDs unreachable although their files remain), and a file whose age
// is unknown (zero CreatedAt) is kept, where Litestream deletes it.
//
// CreatedAt comes from the listing: the LTX header timestamp on the file
// backend (walsync and Litestream set the mtime to it), the object's
// LastModified on S3.
func EnforceL0Retention(ctx context.Context, c storage.Client, retention time.Duration, now time.Time) ([]*storage.FileInfo, error) {
	if retention <= 0 {
		return nil, nil
	}
	l1, err := listLevel(ctx, c, 1, 0)
	if err != nil {
		return nil, fmt.Errorf("enforce L0 retention on %s: %w", c, err)
	}
	ends := make(map[ltx.TXID]bool, len(l1))
	var maxL1 ltx.TXID
	for _, fi := range l1 {
		ends[fi.MaxTXID] = true
		maxL1 = max(maxL1, fi.MaxTXID)
	}
	if maxL1 == 0 {
		return nil, nil // nothing compacted yet
	}
	// Only a prefix of L0 is ever deleted: its oldest files are enough.
	l0, more, err := listFirst(ctx, c, 0, 0, storage.MaxListedFiles)
	if err != nil {
		return nil, fmt.Errorf("enforce L0 retention on %s: %w", c, err)
	}
	threshold := now.Add(-retention)
	n := 0
	for _, fi := range l0 {
		if fi.CreatedAt.IsZero() || fi.CreatedAt.After(threshold) || fi.MaxTXID > maxL1 {
			break
		}
		n++
	}
	for n > 0 && !ends[l0[n-1].MaxTXID] {
		n--
	}
	if n == len(l0) && !more {
		n-- // the newest L0 file stays
	}
	if n <= 0 {
		return nil, nil
	}
	deleted := l0[:n]
	if err := c.DeleteLTXFiles(ctx, deleted); err != nil {
		return nil, fmt.Errorf("enforce L0 retention on %s: delete %d files through %s: %w", c, n, deleted[n-1], err)
	}
	return deleted, nil
}

// EnforceSnapshotRetention deletes the level-9 snapshots created before
// now-retention, except the newest snapshot, then the files of levels 0..8
// that only served restores to the deleted snapshots' range. It returns the
// TXID floor used for the lower levels (0 when no snapshot was deleted, and
// then nothing else is) and every file it deleted.
//
// The floor is Litestream v0.5.18's (DB.EnforceSnapshotRetention): the
// MaxTXID of the deleted snapshot just before the oldest retained one, not
// the retained one's own MaxTXID. Lower-level files whose MaxTXID is below
// the floor are deleted. Keeping the files between the two one cycle longer
// lets a restore that was planned just before from the deleted snapshot
// finish; every file it deletes is unneeded by the rule in the package's
// retention comment: every TXID at or after the oldest retained snapshot
// keeps exactly the restore plan it had.
//
// Like Litestream, it keeps the newest file of every level. Unlike it, it
// also cleans level 0 (whose own retention normally got there first), never
// deletes a level-N file that level N+1 does not yet reach, keeps snapshots
// whose age is unknown (zero CreatedAt), and does nothing when retention is
// <= 0.
//
// It is PlanRetention with Policy{SnapshotRetention: retention}, applied
// (without the plan's window description). That plan adds one check that
// only matters when listing times are out of TXID order: an expired
// snapshot newer than the oldest kept one is kept when a TXID after that
// one is reachable only from it.
func EnforceSnapshotRetention(ctx context.Context, c storage.Client, retention time.Duration, now time.Time) (minTXID ltx.TXID, deleted []*storage.FileInfo, err error) {
	if retention <= 0 {
		return 0, nil, nil
	}
	plan, err := planRetention(ctx, c, Policy{SnapshotRetention: retention}, now, false)
	if err != nil {
		return 0, nil, fmt.Errorf("enforce snapshot retention on %s: %w", c, err)
	}
	if len(plan.Delete) == 0 {
		return 0, nil, nil
	}
	deleted, err = applyPlan(ctx, c, plan)
	if err != nil {
		if len(deleted) == 0 {
			return 0, nil, fmt.Errorf("enforce snapshot retention on %s: %w", c, err)
		}
		return plan.Floor, deleted, fmt.Errorf("enforce snapshot retention on %s: %w", c, err)
	}
	return plan.Floor, deleted, nil
}
