// Package engine runs replication for many databases in one process: one
// scheduler goroutine, one timer and a bounded pool of workers, with no
// goroutine, timer, fd or connection per database.
//
// A database is hot while it changes: walsync holds its SQLite pin and
// polls its WAL. After IdleTimeout without change it is cooled: everything
// is shipped, the WAL is checkpointed and every fd and connection is
// released, leaving a few hundred bytes of state. A file-system event (one
// inotify watch per directory) or a slow stat sweep wakes it again, with no
// storage request. At most HotSet databases are hot at once.
package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/discover"
	"github.com/walsync/walsync/fswatch"
	"github.com/walsync/walsync/storage"
)

// Defaults for Options fields left zero.
const (
	DefaultSyncInterval     = time.Second
	DefaultSnapshotInterval = 24 * time.Hour
	DefaultPollInterval     = 100 * time.Millisecond // how often hot WAL files are stat'ed
	DefaultSweepInterval    = 30 * time.Second       // how often cold databases are stat'ed, in case an event was lost
	DefaultWorkers          = 4
	DefaultShutdownTimeout  = 30 * time.Second
	DefaultHotSet           = 256
	DefaultIdleTimeout      = 30 * time.Second
)

// Database is one database to replicate.
type Database struct {
	Path   string
	Client storage.Client // its replica, at its own sub-path
}

// Source is a directory whose databases are found and replicated, each at
// Client.Sub(its path relative to the directory).
type Source struct {
	discover.Source
	Client storage.Client
}

// Options configure an Engine.
type Options struct {
	Databases        []Database
	Sources          []Source      // directories to discover databases in (and watch for new ones)
	SyncInterval     time.Duration // at most one upload per database per interval
	SnapshotInterval time.Duration // level-9 snapshot of databases that changed; negative: never
	PollInterval     time.Duration
	SweepInterval    time.Duration // stat sweep of cold databases and rescans of sources
	Workers          int
	HotSet           int           // databases held open at once
	IdleTimeout      time.Duration // a database unchanged this long is cooled; negative: never
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
	// NoFileEvents turns inotify off: changes are found by stat sweeps only.
	NoFileEvents bool
	// StateFile, when set, is written at a clean stop and read (then
	// deleted) at start, so a restart need not read every replica.
	StateFile string
	Capture   capture.Options
	Logger    *slog.Logger
}

type entry struct {
	Database
	source  *Source // nil for a database named explicitly
	ino     uint64
	db      *capture.DB    // hot
	cold    *capture.State // cold: where capture resumes
	verify  bool           // cold came from the state file: confirm the replica's end before uploading
	removed bool           // gone from its source: close and forget
	// refused is why this database is never replicated: its replica name
	// is another database's (the first to claim a name keeps it).
	refused string
	// resync, when set, is why the next sync must write a full image and
	// a snapshot (the replica lost files); cleared once one is written.
	resync   string
	walSize  int64
	walMod   time.Time
	dirty    bool      // changed since the last sync (or never synced)
	kick     bool      // an event arrived while a worker had it
	dirtyAt  time.Time // when it became dirty: lag
	busy     bool      // a worker has it
	lastSync time.Time
	synced   time.Time // last successful sync
	active   time.Time // last time a sync shipped something
	coolAt   time.Time // not before: a cooling attempt
	txid     uint64
	// Snapshots: when the last one was taken and whether anything was
	// synced since; spread offsets this database's schedule.
	lastSnapshot time.Time
	changedSince bool
	spread       time.Duration
	// nextDue: before it, a cold database that has not changed has no
	// timed work (snapshot, compaction, retention), so the scheduler's
	// pass over thousands of them stays cheap.
	nextDue  time.Time
	failures int
	retryAt  time.Time
	lastErr  string
	// Failures of background work (snapshots, compaction, retention) back
	// off on their own: a replica object that cannot be compacted must
	// never hold up the syncs that ship new commits.
	bgFailures int
	bgRetryAt  time.Time
	bgErr      string
	corrupt    string // the corrupt-object error a snapshot was written around
	// Per compaction level (index into Options.Levels): when it last ran,
	// and whether its source level has new files since.
	compacted []time.Time
	newFiles  []int               // files added to the level's source since it last ran
	lastOut   []*storage.FileInfo // each level's last compaction output: listings start there
	// Retention on its own schedule: when it last ran, and whether new
	// files arrived since.
	retained        time.Time
	changedRetained bool
}

// Engine replicates its databases until its context ends.
type Engine struct {
	opts     Options
	log      *slog.Logger
	statusCh chan chan Status
	started  time.Time

	// Scheduler state: touched only by the scheduler goroutine.
	entries    []*entry
	byPath     map[string]*entry
	byReplica  map[string]*entry // storage.ReplicaKey of each replica -> the database that owns it
	hot        int               // databases with an open capture.DB, or being opened
	hotCap     int               // HotSet, lowered when the fd limit is hit
	watcher    *fswatch.Watcher
	watchErr   error // why some directories are swept instead of watched
	events     chan fswatch.Event
	overflow   atomic.Bool
	sweepPos   int
	rescanAt   time.Time
	background int // snapshot, compaction and retention jobs in flight
	planPos    int // where the next scheduling pass starts
	fullWarned time.Time
	cooled     int       // databases released since the last trim of the C heap
	trimmed    time.Time // when the C heap was last trimmed
}

// New checks opts and returns an engine.
func New(opts Options) (*Engine, error) {
	if len(opts.Databases) == 0 && len(opts.Sources) == 0 {
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
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.HotSet <= 0 {
		opts.HotSet = DefaultHotSet
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
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
	for i, s := range opts.Sources {
		n, err := s.Source.Normalize()
		if err != nil {
			return nil, err
		}
		opts.Sources[i].Source = n
	}
	return &Engine{opts: opts, log: opts.Logger, statusCh: make(chan chan Status),
		byPath: map[string]*entry{}, byReplica: map[string]*entry{}, hotCap: opts.HotSet}, nil
}

// minPlanGap is the least time between two scheduling passes.
const minPlanGap = 5 * time.Millisecond

type jobKind uint8

const (
	jobSync jobKind = iota
	jobSnapshot
	jobRetention
	jobCompact
	jobCool
	jobClose
)

type job struct {
	e       *entry
	kind    jobKind
	db      *capture.DB       // the database before the job; the result's after it
	cold    *capture.State    // likewise
	counted bool              // in Engine.hot: open, or being opened
	force   bool              // jobCool: even if the state will not prove much
	level   int               // jobCompact: into Options.Levels[level-1]
	resync  string            // jobSync: why a full image is due, if it is
	last    *storage.FileInfo // that level's last output, if known
}

type result struct {
	job
	st        capture.Stats
	compacted *storage.FileInfo // a compaction's output, nil if nothing was new
	replaced  bool              // the database file was replaced: reopen with a resync
	err       error
}

// Run finds and opens the databases, replicates until ctx ends, then
// finishes in-flight uploads and a last sync within ShutdownTimeout.
func (eng *Engine) Run(ctx context.Context) error {
	eng.started = time.Now()
	// Work runs on a context that outlives ctx a little, so uploads in
	// flight at shutdown finish.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	eng.events = make(chan fswatch.Event, 4096)
	if !eng.opts.NoFileEvents {
		w, err := fswatch.New()
		if err != nil {
			eng.log.Warn("no file events; changes are found by stat sweeps only", "every", eng.opts.SweepInterval, "error", err)
		} else {
			eng.watcher = w
			watchCtx, stop := context.WithCancel(ctx)
			defer stop()
			go func() {
				err := w.Run(watchCtx, func(ev fswatch.Event) {
					select {
					case eng.events <- ev:
					default:
						eng.overflow.Store(true)
					}
				})
				if err != nil {
					eng.log.Error("file events stopped; changes are found by stat sweeps only", "error", err)
				}
			}()
		}
	}
	for _, d := range eng.opts.Databases {
		eng.add(d, nil)
	}
	eng.rescan()
	if eng.opts.StateFile != "" {
		eng.loadState()
	}

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

	timer := time.NewTimer(0)
	defer timer.Stop()
	inFlight := 0
	var nextPoll, wake, lastPlan time.Time
	replan, polling := true, false
	for ctx.Err() == nil {
		if eng.drainEvents() {
			replan = true
		}
		now := time.Now()
		if !now.Before(nextPoll) {
			nextPoll = now.Add(eng.opts.PollInterval)
			eng.sweep(now)
			polling, replan = true, true
		}
		// A pass over every database costs; results and events arriving
		// together share one.
		if replan && now.Sub(lastPlan) < minPlanGap {
			wake = lastPlan.Add(minPlanGap)
		} else if replan {
			lastPlan = now
			var queue []job
			queue, wake = eng.plan(now, polling, eng.opts.Workers-inFlight)
			for _, j := range queue {
				jobs <- j // a worker is free: inFlight < Workers
				inFlight++
			}
			replan, polling = false, false
		}
		next := nextPoll
		if wake.Before(next) {
			next = wake
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
		case r := <-results:
			inFlight--
			eng.finish(r)
			replan = true
		case ev := <-eng.events:
			replan = eng.handleEvent(ev) || replan
		case ch := <-eng.statusCh:
			ch <- eng.status(time.Now())
		case <-timer.C:
			replan = true
		}
	}

	// Let in-flight work finish, then a last sync of everything open.
	deadline := time.AfterFunc(eng.opts.ShutdownTimeout, cancelWork)
	defer deadline.Stop()
	for inFlight > 0 {
		r := <-results
		inFlight--
		eng.finish(r)
	}
	close(jobs)
	wg.Wait()
	return eng.finalSync(workCtx)
}

// finalSync ships what is left when stopping: every open database, and
// every released one that changed (looked at once more, in case an event
// is still in flight), with Workers at a time, then closes them.
func (eng *Engine) finalSync(ctx context.Context) error {
	eng.drainEvents()
	now := time.Now()
	var todo []*entry
	for _, e := range eng.entries {
		if e.removed {
			if e.db != nil {
				todo = append(todo, e)
			}
			continue
		}
		if e.refused != "" {
			continue // never a byte to another database's replica
		}
		if e.db != nil {
			eng.poll(e, now)
		} else if e.cold != nil && !e.dirty && e.cold.Changed(e.Path) {
			e.dirty = true
		}
		if e.db != nil || e.dirty && e.cold != nil {
			todo = append(todo, e)
		}
	}
	var mu sync.Mutex
	var errs []error
	next := make(chan *entry)
	var wg sync.WaitGroup
	for i := 0; i < eng.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range next {
				if err := eng.syncAndClose(ctx, e); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, e := range todo {
		next <- e
	}
	close(next)
	wg.Wait()
	if eng.opts.StateFile != "" {
		if err := eng.saveState(); err != nil {
			eng.log.Warn("could not save state; the next start reads every replica", "error", err)
		}
	}
	return errors.Join(errs...)
}

func (eng *Engine) syncAndClose(ctx context.Context, e *entry) error {
	db := e.db
	if db == nil {
		var err error
		if db, err = eng.open(ctx, e, e.cold); err != nil {
			return fmt.Errorf("final sync of %s: %w", e.Path, err)
		}
	}
	var errs []error
	if (e.dirty || e.db == nil) && !e.removed {
		if _, err := db.Sync(ctx); err != nil {
			errs = append(errs, fmt.Errorf("final sync of %s: %w", e.Path, err))
		}
	}
	// With a state file, release it the way idle databases are released,
	// so the next start can resume from the state.
	e.db, e.cold = nil, nil
	if eng.opts.StateFile != "" && len(errs) == 0 && !e.removed {
		if st, err := db.Cool(ctx, true); err == nil {
			e.cold, e.dirty = st, false
			return nil
		}
	}
	if err := db.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close %s: %w", e.Path, err))
	}
	if len(errs) > 0 {
		e.failures++
	}
	return errors.Join(errs...)
}

// add starts replicating a database (explicit, or found in src).
func (eng *Engine) add(d Database, src *Source) *entry {
	abs, err := filepath.Abs(d.Path)
	if err == nil {
		d.Path = abs
	}
	// SQLite follows a symlink and keeps the WAL beside the real file:
	// watch and read there.
	if real, err := filepath.EvalSymlinks(d.Path); err == nil && real != d.Path {
		eng.log.Info("database path is a symlink; replicating the file it points to", "db", d.Path, "file", real)
		d.Path = real
	}
	if e, ok := eng.byPath[d.Path]; ok {
		return e
	}
	now := time.Now()
	n := len(eng.opts.Levels)
	e := &entry{Database: d, source: src, dirty: true, dirtyAt: now, retained: now,
		compacted: make([]time.Time, n), newFiles: make([]int, n), lastOut: make([]*storage.FileInfo, n)}
	// A level first compacts one interval after start.
	for l := range e.compacted {
		e.compacted[l] = now
	}
	if iv := eng.opts.SnapshotInterval; iv > 0 {
		h := fnv.New32a()
		h.Write([]byte(d.Path))
		e.spread = time.Duration(uint64(h.Sum32()) * uint64(iv/10) >> 32)
	}
	if fi, err := os.Stat(d.Path); err == nil {
		e.ino = fi.Sys().(*syscall.Stat_t).Ino
	}
	eng.updateNextDue(e)
	eng.entries = append(eng.entries, e)
	eng.byPath[d.Path] = e
	eng.claim(e)
	eng.watchDir(filepath.Dir(d.Path))
	return e
}

// claim gives e its replica, unless another database already has it: the
// one rule for names shared by two databases, whichever way each entered
// (explicit path, config, a directory scanned at start or a file found
// later). The first keeps the replica; the second is refused for good, so
// that it never writes a byte there, and the refusal shows in status.
func (eng *Engine) claim(e *entry) {
	key := storage.ClientKey(e.Client)
	owner, ok := eng.byReplica[key]
	if !ok {
		eng.byReplica[key] = e
		return
	}
	e.refused = fmt.Sprintf("not replicated: %s already replicates to %s, the replica this database maps to (names that differ only in case or Unicode normalisation are the same); rename one of them or give them different replica URLs, then restart walsync",
		owner.Path, owner.Client.String())
	e.dirty = false
	eng.log.Error("two databases map to one replica name; refusing the second", "db", e.Path, "other_db", owner.Path, "replica", e.Client.String())
}

// watchDir adds an inotify watch; at the kernel's limit, sweeps cover it.
func (eng *Engine) watchDir(dir string) {
	if eng.watcher == nil {
		return
	}
	if err := eng.watcher.Add(dir); err != nil {
		if eng.watchErr == nil {
			eng.log.Warn("cannot watch every directory; the rest are found by stat sweeps (slower to notice changes)",
				"every", eng.opts.SweepInterval, "watched", eng.watcher.Len(), "error", err)
		}
		eng.watchErr = err
	}
}

// rescan looks for databases in every source: at start, after lost events,
// and on a slow schedule in case the file system gives no events.
func (eng *Engine) rescan() {
	every := 10 * eng.opts.SweepInterval
	if eng.watcher == nil || eng.watchErr != nil {
		every = eng.opts.SweepInterval
	}
	eng.rescanAt = time.Now().Add(every)
	for i := range eng.opts.Sources {
		eng.scanSource(&eng.opts.Sources[i], eng.opts.Sources[i].Dir)
	}
}

func (eng *Engine) scanSource(src *Source, dir string) {
	sub := src.Source
	sub.Dir = dir
	known := func(p string) bool { _, ok := eng.byPath[p]; return ok }
	dbs, dirs, skipped, err := sub.Scan(known)
	if err != nil {
		eng.log.Error("cannot scan directory for databases; will retry", "dir", dir, "error", err)
		return
	}
	for _, err := range skipped {
		eng.log.Warn("skipped unreadable path", "error", err)
	}
	for _, d := range dirs {
		eng.watchDir(d)
	}
	for _, p := range dbs {
		if _, ok := eng.byPath[p]; ok {
			continue
		}
		eng.discovered(src, p)
	}
}

func (eng *Engine) discovered(src *Source, p string) {
	name, ok := src.Match(p)
	if !ok {
		return
	}
	if e := eng.add(Database{Path: p, Client: src.Client.Sub(name)}, src); e.refused == "" {
		eng.log.Info("replicating", "db", p, "replica", e.Client.String())
	}
}

// drainEvents takes in what the watcher has queued, without blocking, and
// reports whether any of it changed what there is to do.
func (eng *Engine) drainEvents() bool {
	changed := false
	if eng.overflow.Swap(false) {
		changed = eng.handleEvent(fswatch.Event{Op: fswatch.Overflow})
	}
	for {
		select {
		case ev := <-eng.events:
			if eng.handleEvent(ev) {
				changed = true
			}
		default:
			return changed
		}
	}
}

// handleEvent reports whether the event changed what there is to do.
// Writes to hot databases are left to polling: they come with every
// transaction, and the sync interval bounds the lag anyway.
func (eng *Engine) handleEvent(ev fswatch.Event) bool {
	now := time.Now()
	switch ev.Op {
	case fswatch.Overflow:
		eng.log.Warn("file events were lost; checking every database")
		for _, e := range eng.entries {
			if e.cold != nil && !e.busy && e.cold.Changed(e.Path) {
				eng.markDirty(e, now)
			}
		}
		eng.rescan()
		return true
	case fswatch.DirGone:
		return false
	}
	p := filepath.Join(ev.Dir, ev.Name)
	dbPath := strings.TrimSuffix(p, "-wal")
	if e, ok := eng.byPath[dbPath]; ok {
		switch {
		case p == dbPath && (ev.Op == fswatch.Create || ev.Op == fswatch.Remove):
			eng.fileMoved(e, now)
			return true
		case e.db != nil && !e.busy:
			return false // polled
		case ev.Op == fswatch.Touch && (e.busy || e.cold == nil || !e.cold.Changed(e.Path)):
			// SQLite closing a WAL it opened read-write, walsync's own
			// connections included: no data was written.
			return false
		}
		eng.markDirty(e, now)
		return true
	}
	if p != dbPath || ev.Op == fswatch.Remove {
		return false
	}
	for i := range eng.opts.Sources {
		src := &eng.opts.Sources[i]
		if !src.WatchesDir(ev.Dir) {
			continue
		}
		if ev.IsDir {
			if ev.Op == fswatch.Create && src.Recursive {
				n := len(eng.entries)
				eng.scanSource(src, p)
				return len(eng.entries) != n
			}
			continue
		}
		// The path is no database of ours, so opening it cannot drop locks.
		if _, ok := src.Match(p); ok && discover.IsSQLite(p) {
			eng.discovered(src, p)
			return true
		}
	}
	return false
}

// fileMoved handles a database path created, deleted or renamed over.
func (eng *Engine) fileMoved(e *entry, now time.Time) {
	fi, err := os.Stat(e.Path)
	if err != nil {
		if e.source != nil {
			eng.log.Info("database removed or renamed; releasing it (its replica stays)", "db", e.Path)
			e.removed = true
			return
		}
		eng.log.Warn("database file is gone; will keep trying", "db", e.Path)
		eng.markDirty(e, now)
		return
	}
	if e.removed {
		e.removed = false // back before it was forgotten
		eng.log.Info("database is back", "db", e.Path)
	}
	if ino := fi.Sys().(*syscall.Stat_t).Ino; ino != e.ino {
		if e.ino != 0 {
			eng.log.Warn("database file was replaced by another file (new inode); replicating it as a new state of the same database with a full snapshot", "db", e.Path)
		}
		e.ino = ino
	}
	eng.markDirty(e, now)
}

func (eng *Engine) markDirty(e *entry, now time.Time) {
	if e.busy {
		e.kick = true
		return
	}
	if !e.dirty {
		e.dirty, e.dirtyAt = true, now
	}
}

// sweep stats a share of the cold databases each poll, so that every one is
// looked at once per SweepInterval, and rescans sources when due.
func (eng *Engine) sweep(now time.Time) {
	if n := len(eng.entries); n > 0 {
		per := int(int64(n)*int64(eng.opts.PollInterval)/int64(eng.opts.SweepInterval)) + 1
		for i := 0; i < per && i < n; i++ {
			eng.sweepPos = (eng.sweepPos + 1) % n
			e := eng.entries[eng.sweepPos]
			if e.cold != nil && !e.busy && !e.dirty && e.cold.Changed(e.Path) {
				eng.markDirty(e, now)
			}
		}
	}
	if len(eng.opts.Sources) > 0 && now.After(eng.rescanAt) {
		eng.rescan()
	}
}

// plan decides the jobs to run now, at most free of them, and when the
// scheduler must look again.
func (eng *Engine) plan(now time.Time, polling bool, free int) ([]job, time.Time) {
	wake := now.Add(eng.opts.SweepInterval)
	waitingOpen, opening := 0, 0
	removed := false
	// Syncs (and cooling, which frees resources) come first; snapshots,
	// compaction and retention use at most half the workers, so a wave of
	// them never holds up a database's next sync.
	var syncs, background []job
	bgFree := min(free, max(1, eng.opts.Workers/2)-eng.background)
	canOpen := func() bool { return eng.hot+opening < eng.hotCap }
	// cool releases e once it has been idle long enough, or has the
	// scheduler look again when it will have been.
	cool := func(e *entry) {
		t, ok := eng.coolTime(e)
		switch {
		case !ok:
		case now.Before(t):
			if t.Before(wake) {
				wake = t
			}
		case len(syncs) < free:
			syncs = append(syncs, job{e: e, kind: jobCool})
		}
	}
	// Start where the last pass stopped handing out syncs, so that every
	// database gets its turn when there is more to do than workers.
	n := len(eng.entries)
	start := 0
	if n > 0 {
		start = eng.planPos % n
	}
	next := start
	for k := 0; k < n; k++ {
		i := (start + k) % n
		e := eng.entries[i]
		if e.busy {
			continue
		}
		if e.removed {
			if e.db != nil && len(syncs) < free {
				syncs = append(syncs, job{e: e, kind: jobClose})
			}
			removed = removed || e.db == nil
			continue
		}
		if e.refused != "" {
			continue
		}
		if now.Before(e.retryAt) {
			if e.retryAt.Before(wake) {
				wake = e.retryAt
			}
			continue
		}
		if e.db == nil && !e.dirty && now.Before(e.nextDue) {
			if e.nextDue.Before(wake) {
				wake = e.nextDue
			}
			continue
		}
		if polling && e.db != nil {
			eng.poll(e, now)
		}
		due := e.lastSync.Add(eng.opts.SyncInterval)
		switch {
		case e.dirty && !now.Before(due):
			// When no worker is free, a result wakes the scheduler.
			switch {
			case len(syncs) >= free:
			case e.db == nil && !canOpen():
				waitingOpen++
			default:
				if e.db == nil {
					opening++
				}
				e.lastSync = now // the interval runs from the start of a sync
				syncs = append(syncs, job{e: e, kind: jobSync})
				next = i + 1
			}
		case e.dirty:
			if due.Before(wake) {
				wake = due
			}
		case now.Before(e.bgRetryAt) && eng.backgroundDue(e, now):
			if e.bgRetryAt.Before(wake) {
				wake = e.bgRetryAt
			}
			// Background work waiting out its back-off must not keep an
			// idle database open: it runs as well on a cold one.
			cool(e)
		case eng.snapshotDue(e, now):
			if len(background) < bgFree && (e.db != nil || canOpen()) {
				if e.db == nil {
					opening++
				}
				background = append(background, job{e: e, kind: jobSnapshot})
			}
		case eng.retentionDue(e, now):
			if len(background) < bgFree {
				background = append(background, job{e: e, kind: jobRetention})
			}
		case eng.compactionDue(e, now) > 0:
			if len(background) < bgFree {
				l := eng.compactionDue(e, now)
				background = append(background, job{e: e, kind: jobCompact, level: l, last: e.lastOut[l-1]})
			}
		default:
			cool(e)
		}
	}
	eng.planPos = next
	queue := make([]job, 0, min(free, len(syncs)+len(background)))
	for _, j := range syncs {
		queue = append(queue, eng.take(j))
	}
	for _, j := range background {
		if len(queue) >= free {
			break
		}
		eng.background++
		queue = append(queue, eng.take(j))
	}
	// Make room for databases waiting to open: cool the least recently
	// active hot databases, whatever their state proves.
	if waitingOpen > 0 {
		cands := eng.coolCandidates(waitingOpen, free-len(queue))
		for _, e := range cands {
			queue = append(queue, eng.take(job{e: e, kind: jobCool, force: true}))
		}
		if len(cands) == 0 && now.Sub(eng.fullWarned) > time.Minute {
			eng.fullWarned = now
			eng.log.Warn("hot set full: databases with changes wait for one to go idle (longer lag)",
				"hot_set", eng.hotCap, "waiting", waitingOpen)
		}
		wake = now.Add(eng.opts.PollInterval)
	}
	if removed {
		eng.forgetRemoved()
	}
	return queue, wake
}

// coolTime returns when hot e may be released, if ever: IdleTimeout after
// its last shipped change, and not before a refused attempt's retry.
func (eng *Engine) coolTime(e *entry) (time.Time, bool) {
	if e.db == nil || eng.opts.IdleTimeout <= 0 {
		return time.Time{}, false
	}
	return maxTime(e.active.Add(eng.opts.IdleTimeout), e.coolAt), true
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// take marks the job's database busy and fills in its handles.
func (eng *Engine) take(j job) job {
	e := j.e
	e.busy = true
	j.db, j.cold, j.resync = e.db, e.cold, e.resync
	j.counted = e.db != nil
	if e.db == nil && (j.kind == jobSync || j.kind == jobSnapshot) {
		eng.hot++ // opening
		j.counted = true
	}
	return j
}

// coolCandidates returns up to n idle hot databases, least recently active
// first.
func (eng *Engine) coolCandidates(n, free int) []*entry {
	n = min(n, free)
	var out []*entry
	for len(out) < n {
		var best *entry
		for _, e := range eng.entries {
			if e.db == nil || e.busy || e.dirty || e.removed || (best != nil && !e.active.Before(best.active)) {
				continue
			}
			best = e
		}
		if best == nil {
			break
		}
		best.busy = true // taken by the caller
		out = append(out, best)
	}
	for _, e := range out {
		e.busy = false
	}
	return out
}

func (eng *Engine) forgetRemoved() {
	kept := eng.entries[:0]
	for _, e := range eng.entries {
		if e.removed && !e.busy && e.db == nil {
			if eng.byPath[e.Path] == e {
				delete(eng.byPath, e.Path)
			}
			if key := storage.ClientKey(e.Client); eng.byReplica[key] == e {
				delete(eng.byReplica, key)
			}
			continue
		}
		kept = append(kept, e)
	}
	clear(eng.entries[len(kept):])
	eng.entries = kept
}

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

// poll marks e dirty when its WAL's size or modification time changed.
func (eng *Engine) poll(e *entry, now time.Time) {
	fi, err := os.Stat(e.Path + "-wal")
	if err != nil {
		return
	}
	if fi.Size() != e.walSize || !fi.ModTime().Equal(e.walMod) {
		e.walSize, e.walMod = fi.Size(), fi.ModTime()
		eng.markDirty(e, now)
	}
}

func (eng *Engine) work(ctx context.Context, j job) (r result) {
	r.job = j
	e := j.e
	switch j.kind {
	case jobCompact:
		r.compacted, r.err = eng.compact(ctx, j)
		return r
	case jobRetention:
		r.err = eng.applyRetention(ctx, e)
		return r
	case jobClose:
		r.err = j.db.Close(ctx)
		r.db = nil
		return r
	case jobCool:
		st, err := j.db.Cool(ctx, j.force)
		if err == nil {
			r.db, r.cold = nil, st
		}
		r.err = err
		return r
	}
	if r.db == nil {
		db, err := eng.open(ctx, e, j.cold)
		if err != nil {
			r.err = err
			return r
		}
		r.db, r.cold = db, nil
	}
	if j.kind == jobSnapshot {
		r.st, r.err = r.db.Snapshot(ctx)
		if r.err == nil {
			r.err = eng.applyRetention(ctx, e)
		}
		return r
	}
	if j.resync != "" {
		r.db.Resync(j.resync)
	}
	r.st, r.err = r.db.Sync(ctx)
	if errors.Is(r.err, capture.ErrReplaced) {
		eng.log.Warn("database file was replaced; replicating the new file as a new database state", "db", e.Path)
		r.db.Close(ctx)
		r.db = nil
		r.replaced, r.err = true, nil
	}
	return r
}

// open attaches to e's database, resuming from cold if given.
func (eng *Engine) open(ctx context.Context, e *entry, cold *capture.State) (*capture.DB, error) {
	opts := eng.opts.Capture
	opts.Path, opts.Client, opts.Resume, opts.Logger = e.Path, e.Client, cold, eng.log
	opts.Resync = e.resync
	opts.VerifyResume = cold != nil && e.verify
	return capture.Open(ctx, opts)
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

// finish runs on the scheduler goroutine: only it touches entries.
func (eng *Engine) finish(r result) {
	eng.settle(r)
	eng.updateNextDue(r.e)
}

func (eng *Engine) settle(r result) {
	e := r.e
	e.busy = false
	now := time.Now()
	switch r.kind {
	case jobSnapshot, jobCompact, jobRetention:
		eng.background--
	}
	// The job may have opened, cooled or closed the database.
	e.db, e.cold = r.db, r.cold
	if r.counted && e.db == nil {
		eng.hot--
	}
	if e.kick {
		e.kick = false
		if !e.dirty {
			e.dirty, e.dirtyAt = true, now
		}
	}
	if r.kind == jobCompact && errors.Is(r.err, compact.ErrReplicaLost) {
		eng.replicaLost(e, r.err, now)
		return
	}
	if r.err != nil {
		eng.failed(e, r, now)
		return
	}
	if r.kind.background() {
		if e.bgFailures > 0 {
			eng.log.Info("background work recovered", "db", e.Path, "after_failures", e.bgFailures)
		}
		e.bgFailures, e.bgErr, e.bgRetryAt = 0, "", time.Time{}
	} else {
		if e.failures > 0 {
			eng.log.Info("replication recovered", "db", e.Path, "after_failures", e.failures)
		}
		e.failures, e.lastErr = 0, ""
	}
	switch r.kind {
	case jobCool, jobClose:
		// Released connections' memory stays in the C heap unless trimmed;
		// after a wave of releases, hand it back (at most every 10 s).
		if eng.cooled++; eng.cooled >= 16 && now.Sub(eng.trimmed) > 10*time.Second || eng.hot == 0 && eng.cooled > 0 {
			capture.TrimCHeap()
			eng.cooled, eng.trimmed = 0, now
		}
		return
	case jobRetention:
		e.retained, e.changedRetained = now, false
		return
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
		return
	case jobSnapshot:
		e.lastSnapshot, e.changedSince = now, false
		e.txid = uint64(r.st.TXID)
		eng.log.Info("snapshot written", "db", e.Path, "txid", r.st.TXID)
		return
	}
	if r.replaced {
		// Reopen at once, as a new state of the database.
		e.resync = "the database file was replaced by another file (new inode) while walsync replicated it"
		e.dirty, e.dirtyAt, e.lastSync = true, now, time.Time{}
		return
	}
	e.txid = uint64(r.st.TXID)
	e.synced = now
	e.verify = false
	if r.st.Snapshot {
		e.resync = ""
	}
	if e.db == nil {
		e.dirty, e.dirtyAt = true, now
		return
	}
	e.dirty = false
	if r.st.Uploaded {
		// A first or resync snapshot is walsync's doing, not the
		// application's: it does not keep the database hot.
		if !r.st.Snapshot {
			e.active = now
		}
		e.changedSince, e.changedRetained = true, true
		if len(e.newFiles) > 0 {
			e.newFiles[0]++
		}
		if e.lastSnapshot.IsZero() {
			e.lastSnapshot = now
		}
		eng.log.Debug("synced", "db", e.Path, "txid", r.st.TXID, "snapshot", r.st.Snapshot)
	}
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

// failed records a failed job and schedules its retry.
func (eng *Engine) failed(e *entry, r result, now time.Time) {
	if r.kind == jobCool && (errors.Is(r.err, capture.ErrNotIdle) || errors.Is(r.err, capture.ErrNotSettled)) {
		// Not an error: sync first if something new was committed; try
		// again once file times can prove something.
		e.coolAt = now.Add(3 * time.Second)
		eng.log.Debug("not released yet", "db", e.Path, "reason", r.err)
		if errors.Is(r.err, capture.ErrNotIdle) {
			eng.markDirty(e, now)
		}
		return
	}
	if isFDLimit(r.err) && eng.hotCap > 1 {
		eng.hotCap = max(1, eng.hot-1)
		eng.log.Warn("out of file descriptors: fewer databases will be held open at once (longer lag)", "hot_set", eng.hotCap, "error", r.err)
	}
	if r.kind.background() {
		e.bgFailures++
		e.bgErr = r.err.Error()
		backoff := min(time.Duration(1<<min(e.bgFailures, 8))*eng.opts.SyncInterval, 5*time.Minute)
		e.bgRetryAt = now.Add(backoff)
		eng.log.Error("background work failed; syncs go on, will retry", "db", e.Path, "retry_in", backoff, "error", r.err)
		if r.kind == jobCompact && storage.IsCorrupt(r.err) && e.corrupt != e.bgErr {
			// Restores of the latest state may need the bad object:
			// write a snapshot of the current state, once per object, so
			// they start after it.
			e.corrupt = e.bgErr
			e.resync = "a replica object cannot be read back (" + e.bgErr + "); a snapshot keeps the latest state restorable without it"
			e.dirty, e.dirtyAt, e.lastSync = true, now, time.Time{}
		}
		return
	}
	e.failures++
	e.lastErr = r.err.Error()
	backoff := min(time.Duration(1<<min(e.failures, 8))*eng.opts.SyncInterval, 5*time.Minute)
	e.retryAt = now.Add(backoff)
	eng.log.Error("replication failed; will retry", "db", e.Path, "retry_in", backoff, "error", r.err)
}

// background reports whether a job is background work: snapshots,
// compaction and retention, whose failures do not delay syncs.
func (k jobKind) background() bool {
	return k == jobSnapshot || k == jobCompact || k == jobRetention
}

// isFDLimit reports whether err came from running out of file
// descriptors. SQLite reports that as "unable to open database file", as it
// does a missing directory, so the process's fd count decides.
func isFDLimit(err error) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return true
	}
	if err == nil || !strings.Contains(err.Error(), "unable to open database file") {
		return false
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return false
	}
	fds, err := os.ReadDir("/proc/self/fd")
	return err == nil && uint64(len(fds)) >= lim.Cur*9/10
}
