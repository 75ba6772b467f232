package engine

// Background work: level-9 snapshots, compaction and retention. When each
// comes due, what a result changes, and the back-off of failures, which is
// apart from the syncs' (entry.bgFails): background work may wait, new
// commits may not.

import (
	"context"
	"fmt"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/storage"
)

// snapshotDue: a database that changed since its last snapshot, one
// interval after it, less its spread (up to a tenth of the interval, from
// its path), so that many databases do not snapshot at once.
func (eng *Engine) snapshotDue(e *entry, now time.Time) bool {
	t, ok := eng.snapshotTime(e)
	return ok && !now.Before(t)
}

func (eng *Engine) snapshotTime(e *entry) (time.Time, bool) {
	iv := eng.opts.SnapshotInterval
	if iv <= 0 || !e.changedSince || e.lastSnapshot.IsZero() {
		return time.Time{}, false
	}
	return e.lastSnapshot.Add(iv - e.spread), true
}

// retentionDue: retention on its own schedule, for a database that
// changed since it last ran.
func (eng *Engine) retentionDue(e *entry, now time.Time) bool {
	t, ok := eng.retentionTime(e)
	return ok && !now.Before(t)
}

func (eng *Engine) retentionTime(e *entry) (time.Time, bool) {
	if eng.opts.RetentionInterval <= 0 || !e.changedRetained {
		return time.Time{}, false
	}
	return e.retained.Add(eng.opts.RetentionInterval), true
}

// backgroundDue reports whether a snapshot, retention or a compaction is
// due for e.
func (eng *Engine) backgroundDue(e *entry, now time.Time) bool {
	return eng.snapshotDue(e, now) || eng.retentionDue(e, now) || eng.compactionDue(e, now) > 0
}

// updateNextDue sets when e's earliest timed job can come due.
func (eng *Engine) updateNextDue(e *entry) {
	next := time.Now().Add(365 * 24 * time.Hour)
	if t, ok := eng.snapshotTime(e); ok && t.Before(next) {
		next = t
	}
	if t, ok := eng.retentionTime(e); ok && t.Before(next) {
		next = t
	}
	for i := range eng.opts.Levels {
		if t, ok := eng.levelTime(e, i); ok && t.Before(next) {
			next = t
		}
	}
	e.nextDue = maxTime(next, e.bgFails.retryAt)
}

// minInputs is how many new source files make level index i worth
// compacting. Level 1 always runs (L0 retention waits for it); above it a
// lone file would only be copied up a level — the restore reads it where it
// is — so it waits for a second one. A database that changed once and went
// idle thus causes no request one hour later.
func minInputs(i int) int {
	if i == 0 {
		return 1
	}
	return 2
}

// compactionDue returns the 1-based index of a level whose interval has
// passed and whose source level has new files, or 0.
func (eng *Engine) compactionDue(e *entry, now time.Time) int {
	for i := range eng.opts.Levels {
		if t, ok := eng.levelTime(e, i); ok && !now.Before(t) {
			return i + 1
		}
	}
	return 0
}

// levelTime returns when level index i can next compact e's replica: its
// interval after it last ran, once its source level has enough new files.
func (eng *Engine) levelTime(e *entry, i int) (time.Time, bool) {
	if e.newFiles[i] < minInputs(i) {
		return time.Time{}, false
	}
	return e.compacted[i].Add(eng.opts.Levels[i].Interval), true
}

// applyRetention enforces the retention policy, if any, on e's replica.
func (eng *Engine) applyRetention(ctx context.Context, e *entry) error {
	policy, ok := eng.retention()
	if !ok {
		return nil
	}
	plan, err := compact.EnforceRetention(ctx, e.Client, policy, time.Now())
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if len(plan.Delete) > 0 {
		eng.log.Info("retention removed old files", "db", e.Path, "files", len(plan.Delete), "bytes", plan.Bytes)
	}
	return nil
}

// retention returns the retention policy, if any.
func (eng *Engine) retention() (compact.Policy, bool) {
	switch {
	case eng.opts.GFS != nil:
		return compact.Policy{GFS: eng.opts.GFS}, true
	case eng.opts.SnapshotRetention > 0:
		return compact.Policy{SnapshotRetention: eng.opts.SnapshotRetention}, true
	}
	return compact.Policy{}, false
}

// compact merges the source level into Levels[j.level-1]; after level 1 it
// applies L0 retention.
func (eng *Engine) compact(ctx context.Context, j job) (*storage.FileInfo, error) {
	l := eng.opts.Levels[j.level-1]
	fi, err := compact.Compact(ctx, j.e.Client, l.Level, compact.Options{
		TempDir: eng.opts.Capture.TempDir, Logger: eng.log, LastOutput: j.last, Position: ltx.TXID(j.e.txid),
	})
	if err != nil {
		return nil, fmt.Errorf("compact into L%d: %w", l.Level, err)
	}
	if l.Level == 1 && eng.opts.L0Retention > 0 {
		if _, err := compact.EnforceL0Retention(ctx, j.e.Client, eng.opts.L0Retention, time.Now()); err != nil {
			return nil, fmt.Errorf("L0 retention: %w", err)
		}
	}
	return fi, nil
}

// replicaLost handles a replica found to have lost files walsync wrote
// (every object deleted, a lifecycle rule): the latest state is not
// restorable until a snapshot is written, so the next sync, due now,
// writes one. Compaction starts over from what the replica now holds.
func (eng *Engine) replicaLost(e *entry, err error, now time.Time) {
	eng.log.Error("the replica lost files walsync wrote (deleted by hand or by a lifecycle rule?); writing a full snapshot now",
		"db", e.Path, "replica", e.Client.String(), "error", err)
	clear(e.lastOut)
	clear(e.newFiles)
	e.resyncNow("the replica lost files walsync wrote: "+err.Error(), now)
}

// settleBackground records a snapshot, compaction or retention that
// succeeded.
func (eng *Engine) settleBackground(e *entry, r result, now time.Time) {
	switch r.kind {
	case jobRetention:
		e.retained, e.changedRetained = now, false
	case jobCompact:
		i := r.level - 1
		e.compacted[i], e.newFiles[i] = now, 0
		if r.compacted != nil {
			e.lastOut[i] = r.compacted
			eng.log.Debug("compacted", "db", e.Path, "file", r.compacted.String())
			if i+1 < len(e.newFiles) {
				e.newFiles[i+1]++
			}
		}
	case jobSnapshot:
		e.lastSnapshot, e.changedSince = now, false
		e.txid, e.txidTime = uint64(r.st.TXID), r.st.TXIDTime
		eng.log.Info("snapshot written", "db", e.Path, "txid", r.st.TXID)
	}
}

// backgroundFailed records failed background work and schedules its
// retry; syncs go on meanwhile.
func (eng *Engine) backgroundFailed(e *entry, r result, now time.Time) {
	eng.noteFDLimit(r.err)
	backoff := e.bgFails.fail(r.err, eng.opts.SyncInterval, now)
	eng.log.Error("background work failed; syncs go on, will retry", "db", e.Path, "retry_in", backoff, "error", r.err)
	if r.kind == jobCompact && storage.IsCorrupt(r.err) && e.corrupt != e.bgFails.err {
		// Restores of the latest state may need the bad object: write a
		// snapshot of the current state, once per object, so they start
		// after it.
		e.corrupt = e.bgFails.err
		e.resyncNow("a replica object cannot be read back ("+e.corrupt+"); a snapshot keeps the latest state restorable without it", now)
	}
}
