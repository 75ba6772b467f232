package engine

import (
	"context"
	"fmt"
	"time"

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
	for i, l := range eng.opts.Levels {
		if t := e.compacted[i].Add(l.Interval); e.newFiles[i] >= minInputs(i) && t.Before(next) {
			next = t
		}
	}
	e.nextDue = maxTime(next, e.bgRetryAt)
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
	for i, l := range eng.opts.Levels {
		if e.newFiles[i] >= minInputs(i) && !now.Before(e.compacted[i].Add(l.Interval)) {
			return i + 1
		}
	}
	return 0
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
		TempDir: eng.opts.Capture.TempDir, Logger: eng.log, LastOutput: j.last,
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
	e.resync = "the replica lost files walsync wrote: " + err.Error()
	clear(e.lastOut)
	for i := range e.newFiles {
		e.newFiles[i] = 0
	}
	e.lastSync = time.Time{}
	e.dirty, e.dirtyAt = true, now
}
