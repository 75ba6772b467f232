// Package engine runs replication for many databases in one process: one
// scheduler goroutine and a bounded pool of workers, no per-database
// goroutine or timer.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/storage"
)

// Defaults for Options fields left zero.
const (
	DefaultSyncInterval     = time.Second
	DefaultSnapshotInterval = 24 * time.Hour
	DefaultPollInterval     = 100 * time.Millisecond // how often WAL files are stat'ed for changes
	DefaultWorkers          = 4
	DefaultShutdownTimeout  = 30 * time.Second
)

// Database is one database to replicate.
type Database struct {
	Path   string
	Client storage.Client // its replica, at its own sub-path
}

// Options configure an Engine.
type Options struct {
	Databases        []Database
	SyncInterval     time.Duration // at most one upload per database per interval
	SnapshotInterval time.Duration // level-9 snapshot of databases that changed; negative: never
	PollInterval     time.Duration
	Workers          int
	ShutdownTimeout  time.Duration // bound on the final sync when stopping
	// Levels are the compaction levels; nil means compact.DefaultLevels,
	// an empty non-nil slice turns compaction off.
	Levels            []compact.Level
	L0Retention       time.Duration // see compact.DefaultL0Retention; negative: keep L0
	SnapshotRetention time.Duration // see compact.DefaultSnapshotRetention; negative: keep all
	// GFS, when set, replaces SnapshotRetention with grandfather-father-son
	// retention of snapshots (take them hourly for the hourly tier to mean it).
	GFS *compact.GFS
	// RetentionInterval also applies retention on this schedule to
	// databases that changed; zero: only after each snapshot.
	RetentionInterval time.Duration
	Capture           capture.Options
	Logger            *slog.Logger
}

type entry struct {
	Database
	db           *capture.DB
	walSize      int64
	walMod       time.Time
	dirty        bool // WAL changed since the last sync
	busy         bool // a worker has it
	lastSync     time.Time
	lastSnapshot time.Time
	changedSince bool // synced changes since the last snapshot
	failures     int
	retryAt      time.Time
	// Per compaction level (index into Options.Levels): when it last ran,
	// and whether its source level has new files since.
	compacted []time.Time
	newFiles  []bool
	lastOut   []*storage.FileInfo // each level's last compaction output: listings start there
	// Retention on its own schedule: when it last ran, and whether new
	// files arrived since.
	retained        time.Time
	changedRetained bool
}

// Engine replicates its databases until its context ends.
type Engine struct {
	opts Options
	log  *slog.Logger
}

// New checks opts and returns an engine.
func New(opts Options) (*Engine, error) {
	if len(opts.Databases) == 0 {
		return nil, errors.New("no databases to replicate")
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.SnapshotInterval == 0 {
		opts.SnapshotInterval = DefaultSnapshotInterval
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Levels == nil {
		opts.Levels = compact.DefaultLevels
	}
	if opts.L0Retention == 0 {
		opts.L0Retention = compact.DefaultL0Retention
	}
	if opts.SnapshotRetention == 0 {
		opts.SnapshotRetention = compact.DefaultSnapshotRetention
	}
	return &Engine{opts: opts, log: opts.Logger}, nil
}

type job struct {
	e         *entry
	snapshot  bool
	retention bool
	level     int               // > 0: compact into Options.Levels[level-1]
	last      *storage.FileInfo // that level's last output, if known
}

type result struct {
	e         *entry
	retention bool
	st        capture.Stats
	level     int               // a compaction job's level index + 1
	compacted *storage.FileInfo // its output, nil if nothing was new
	err       error
}

// Run opens every database, replicates until ctx ends, then finishes
// in-flight uploads and a last sync within ShutdownTimeout.
func (eng *Engine) Run(ctx context.Context) error {
	entries := make([]*entry, len(eng.opts.Databases))
	start := time.Now()
	for i, d := range eng.opts.Databases {
		entries[i] = &entry{Database: d, dirty: true,
			compacted: make([]time.Time, len(eng.opts.Levels)), newFiles: make([]bool, len(eng.opts.Levels)),
			lastOut: make([]*storage.FileInfo, len(eng.opts.Levels))}
		entries[i].retained = start
		// A level first compacts one interval after start.
		for l := range entries[i].compacted {
			entries[i].compacted[l] = start
		}
	}
	// Work runs on a context that outlives ctx a little, so uploads in
	// flight at shutdown finish.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	jobs := make(chan job)
	results := make(chan result, eng.opts.Workers)
	var wg sync.WaitGroup
	for i := 0; i < eng.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				results <- eng.work(workCtx, j)
			}
		}()
	}

	// One timer for all databases: it fires at the next poll or at the
	// moment the earliest waiting database may sync again.
	timer := time.NewTimer(0)
	defer timer.Stop()
	inFlight := 0
	var queue []job
	var nextPoll time.Time
	for ctx.Err() == nil {
		now := time.Now()
		// WAL files are stat'ed once per poll interval, however often the
		// loop wakes to dispatch a sync that has come due.
		polling := !now.Before(nextPoll)
		if polling {
			nextPoll = now.Add(eng.opts.PollInterval)
		}
		wake := nextPoll
		for _, e := range entries {
			if e.busy || now.Before(e.retryAt) {
				continue
			}
			if polling {
				eng.poll(e)
			}
			due := e.lastSync.Add(eng.opts.SyncInterval)
			switch {
			case e.dirty && !now.Before(due):
				e.busy = true
				e.lastSync = now // the interval runs from the start of a sync
				queue = append(queue, job{e: e})
			case e.db != nil && eng.opts.SnapshotInterval > 0 && e.changedSince && now.Sub(e.lastSnapshot) >= eng.opts.SnapshotInterval:
				e.busy = true
				queue = append(queue, job{e: e, snapshot: true})
			case e.db != nil && eng.opts.RetentionInterval > 0 && e.changedRetained && !now.Before(e.retained.Add(eng.opts.RetentionInterval)):
				e.busy = true
				queue = append(queue, job{e: e, retention: true})
			case e.db != nil && eng.compactionDue(e, now) > 0:
				e.busy = true
				l := eng.compactionDue(e, now)
				queue = append(queue, job{e: e, level: l, last: e.lastOut[l-1]})
			case e.dirty && due.Before(wake):
				wake = due
			}
		}
		// Hand queued jobs to free workers, taking in results meanwhile.
		for len(queue) > 0 {
			var sendCh chan job
			if inFlight < eng.opts.Workers {
				sendCh = jobs
			}
			select {
			case sendCh <- queue[0]:
				queue = queue[1:]
				inFlight++
			case r := <-results:
				inFlight--
				eng.finish(r)
			case <-ctx.Done():
				goto shutdown
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(wake))
		select {
		case <-ctx.Done():
		case r := <-results:
			inFlight--
			eng.finish(r)
		case <-timer.C:
		}
	}
shutdown:
	for _, j := range queue {
		j.e.busy = false
	}
	// Let in-flight work finish, then a last sync of everything dirty.
	deadline := time.AfterFunc(eng.opts.ShutdownTimeout, cancelWork)
	defer deadline.Stop()
	for inFlight > 0 {
		r := <-results
		inFlight--
		eng.finish(r)
	}
	close(jobs)
	wg.Wait()
	var errs []error
	for _, e := range entries {
		if e.db == nil {
			continue
		}
		eng.poll(e)
		if e.dirty {
			if _, err := e.db.Sync(workCtx); err != nil {
				errs = append(errs, fmt.Errorf("final sync of %s: %w", e.Path, err))
			}
		}
		if err := e.db.Close(workCtx); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", e.Path, err))
		}
	}
	return errors.Join(errs...)
}

// poll marks e dirty when its WAL's size or modification time changed.
func (eng *Engine) poll(e *entry) {
	fi, err := os.Stat(e.Path + "-wal")
	if err != nil {
		if e.db == nil {
			e.dirty = true
		}
		return
	}
	if fi.Size() != e.walSize || !fi.ModTime().Equal(e.walMod) {
		e.walSize, e.walMod = fi.Size(), fi.ModTime()
		e.dirty = true
	}
}

func (eng *Engine) work(ctx context.Context, j job) result {
	e := j.e
	if e.db == nil {
		opts := eng.opts.Capture
		opts.Path, opts.Client = e.Path, e.Client
		opts.Logger = eng.log
		db, err := capture.Open(ctx, opts)
		if err != nil {
			return result{e: e, err: err}
		}
		e.db = db
	}
	if j.level > 0 {
		return eng.compact(ctx, j)
	}
	if j.retention {
		return result{e: e, retention: true, err: eng.applyRetention(ctx, e)}
	}
	if j.snapshot {
		st, err := e.db.Snapshot(ctx)
		if err == nil {
			err = eng.applyRetention(ctx, e)
		}
		return result{e: e, st: st, err: err}
	}
	st, err := e.db.Sync(ctx)
	if errors.Is(err, capture.ErrReplaced) {
		eng.log.Warn("database file was replaced; replicating the new file as a new database state", "db", e.Path)
		e.db.Close(ctx)
		e.db = nil
	}
	return result{e: e, st: st, err: err}
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

// compactionDue returns the 1-based index of a level whose interval has
// passed and whose source level has new files, or 0.
func (eng *Engine) compactionDue(e *entry, now time.Time) int {
	for i, l := range eng.opts.Levels {
		if e.newFiles[i] && !now.Before(e.compacted[i].Add(l.Interval)) {
			return i + 1
		}
	}
	return 0
}

// compact merges the source level into Levels[j.level-1]; after level 1 it
// applies L0 retention.
func (eng *Engine) compact(ctx context.Context, j job) result {
	l := eng.opts.Levels[j.level-1]
	fi, err := compact.Compact(ctx, j.e.Client, l.Level, compact.Options{
		TempDir: eng.opts.Capture.TempDir, Logger: eng.log, LastOutput: j.last,
	})
	if err != nil {
		return result{e: j.e, level: j.level, err: fmt.Errorf("compact into L%d: %w", l.Level, err)}
	}
	if l.Level == 1 && eng.opts.L0Retention > 0 {
		if _, err := compact.EnforceL0Retention(ctx, j.e.Client, eng.opts.L0Retention, time.Now()); err != nil {
			return result{e: j.e, level: j.level, err: fmt.Errorf("L0 retention: %w", err)}
		}
	}
	return result{e: j.e, level: j.level, compacted: fi}
}

// finish runs on the scheduler goroutine: only it touches entries.
func (eng *Engine) finish(r result) {
	e := r.e
	e.busy = false
	now := time.Now()
	if r.err != nil {
		e.failures++
		backoff := min(time.Duration(1<<min(e.failures, 8))*eng.opts.SyncInterval, 5*time.Minute)
		e.retryAt = now.Add(backoff)
		eng.log.Error("replication failed; will retry", "db", e.Path, "retry_in", backoff, "error", r.err)
		return
	}
	if e.failures > 0 {
		eng.log.Info("replication recovered", "db", e.Path, "after_failures", e.failures)
	}
	e.failures = 0
	if r.retention {
		e.retained, e.changedRetained = now, false
		return
	}
	if r.level > 0 {
		i := r.level - 1
		e.compacted[i], e.newFiles[i] = now, false
		if r.compacted != nil {
			e.lastOut[i] = r.compacted
			eng.log.Debug("compacted", "db", e.Path, "file", r.compacted.String())
			if i+1 < len(e.newFiles) {
				e.newFiles[i+1] = true
			}
		}
		return
	}
	if r.st.Snapshot && r.st.Reason == "" {
		e.lastSnapshot, e.changedSince = now, false
		eng.log.Info("snapshot written", "db", e.Path, "txid", r.st.TXID)
		return
	}
	e.dirty = false
	if r.st.Uploaded {
		e.changedSince, e.changedRetained = true, true
		if len(e.newFiles) > 0 {
			e.newFiles[0] = true
		}
		if e.lastSnapshot.IsZero() {
			e.lastSnapshot = now
		}
		eng.log.Debug("synced", "db", e.Path, "txid", r.st.TXID, "snapshot", r.st.Snapshot)
	}
}
