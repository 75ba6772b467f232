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
	Capture          capture.Options
	Logger           *slog.Logger
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
	return &Engine{opts: opts, log: opts.Logger}, nil
}

type job struct {
	e        *entry
	snapshot bool
}

type result struct {
	e   *entry
	st  capture.Stats
	err error
}

// Run opens every database, replicates until ctx ends, then finishes
// in-flight uploads and a last sync within ShutdownTimeout.
func (eng *Engine) Run(ctx context.Context) error {
	entries := make([]*entry, len(eng.opts.Databases))
	for i, d := range eng.opts.Databases {
		entries[i] = &entry{Database: d, dirty: true}
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
	if j.snapshot {
		st, err := e.db.Snapshot(ctx)
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
	if r.st.Snapshot && r.st.Reason == "" {
		e.lastSnapshot, e.changedSince = now, false
		eng.log.Info("snapshot written", "db", e.Path, "txid", r.st.TXID)
		return
	}
	e.dirty = false
	if r.st.Uploaded {
		e.changedSince = true
		if e.lastSnapshot.IsZero() {
			e.lastSnapshot = now
		}
		eng.log.Debug("synced", "db", e.Path, "txid", r.st.TXID, "snapshot", r.st.Snapshot)
	}
}
