package engine

// One database's states (entry.state, shown by status) and what moves it
// between them:
//
//	new      nothing open, no state to resume from: not opened yet, or
//	         its file was replaced under it
//	hot      e.db: its pin held, its WAL polled
//	cold     e.cold: released; a capture.State and nothing open
//	removed  gone from its source: closed if hot, then forgotten
//	refused  its replica name is another database's: never opened; or
//	         another process writes its replica (storage.ErrConflict): closed,
//	         never synced again
//
// new or cold -> hot: a sync or snapshot job opens it (open), counted in
// Engine.hot from the moment the job is handed out. hot -> cold: a cool
// job, IdleTimeout after its last shipped change, or forced when databases
// wait for room in the hot set. Failing is not a state of its own: the
// database keeps its state and retries after a back-off (failures).

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/storage"
)

// entry is one database. Only the scheduler goroutine touches it, except
// that while busy its worker reads Database, resync and verify; the
// scheduler then writes only kick, removed and ino.
type entry struct {
	Database
	source  *Source // nil for a database named explicitly
	ino     uint64
	db      *capture.DB    // hot
	cold    *capture.State // cold: where capture resumes
	verify  bool           // cold came from the state file: confirm the replica's end before uploading
	removed bool           // gone from its source: close and forget
	waiting bool           // its file does not exist: no retry until it appears (awaitFile)
	// refused is why this database is never replicated: its replica name
	// is another database's (the first to claim a name keeps it), or
	// another process writes its replica (conflicted).
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
	txidTime time.Time // txid's LTX header timestamp; zero when unknown
	// Snapshots: when the last one was taken and whether anything was
	// synced since; spread offsets this database's schedule.
	lastSnapshot time.Time
	changedSince bool
	spread       time.Duration
	// nextDue: before it, a cold database that has not changed has no
	// timed work (snapshot, compaction, retention), so the scheduler's
	// pass over thousands of them stays cheap.
	nextDue time.Time
	fails   failures // syncs, releases and closes
	// Failures of background work (snapshots, compaction, retention) back
	// off on their own: a replica object that cannot be compacted must
	// never hold up the syncs that ship new commits.
	bgFails failures
	corrupt string // the corrupt-object error a snapshot was written around
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

// state names e's state for status.
func (e *entry) state() string {
	switch {
	case e.refused != "":
		return "refused"
	case e.removed:
		return "removed"
	case e.db != nil:
		return "hot"
	case e.cold != nil:
		return "cold"
	}
	return "new"
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

// conflicted stops e for good: another process created a file of its
// replica that e was about to write, so two processes write one replica.
// e is refused from now on: logged once, shown in status, closed without
// another upload, never retried or synced at stop; the other process's
// files are left as they are.
func (eng *Engine) conflicted(e *entry, err error) {
	e.refused = err.Error()
	e.dirty, e.kick, e.resync = false, false, ""
	e.fails, e.bgFails = failures{}, failures{}
	eng.log.Error("another process writes this database's replica; no longer replicating it: stop one of the two processes",
		"db", e.Path, "replica", e.Client.String(), "error", err)
}

// markDirty notes a change to ship; a worker's database is looked at again
// when the worker is done.
func (eng *Engine) markDirty(e *entry, now time.Time) {
	if e.busy {
		e.kick = true
		return
	}
	if !e.dirty {
		e.dirty, e.dirtyAt = true, now
	}
}

// resyncNow makes the next sync, due at once, write a full image and a
// snapshot, for the reason why.
func (e *entry) resyncNow(why string, now time.Time) {
	e.resync = why
	e.dirty, e.dirtyAt, e.lastSync = true, now, time.Time{}
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

// coldChanged reports whether cold e's files differ from its recorded
// state (a stat, no open), for the sweep and lost events; a dirty or busy
// database is skipped: it will be looked at anyway.
func (e *entry) coldChanged() bool {
	return e.cold != nil && !e.busy && !e.dirty && e.cold.Changed(e.Path)
}

// forgetRemoved drops removed databases once closed, and frees their path
// and replica name for a database that takes their place.
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

// open attaches to e's database, resuming from cold if given.
func (eng *Engine) open(ctx context.Context, e *entry, cold *capture.State) (*capture.DB, error) {
	opts := eng.opts.Capture
	opts.Path, opts.Client, opts.Resume, opts.Logger = e.Path, e.Client, cold, eng.log
	opts.Resync = e.resync
	opts.VerifyResume = cold != nil && e.verify
	return capture.Open(ctx, opts)
}

// finish takes in a worker's result, on the scheduler goroutine: only it
// touches entries.
func (eng *Engine) finish(r result) {
	e := r.e
	e.busy = false
	now := time.Now()
	if r.kind.background() {
		eng.background--
	}
	// The job may have opened, cooled or closed the database.
	e.db, e.cold = r.db, r.cold
	if r.counted && e.db == nil {
		eng.hot--
	}
	if e.kick {
		e.kick = false
		eng.markDirty(e, now)
	}
	switch {
	case errors.Is(r.err, storage.ErrConflict): // from any upload: a sync, snapshot, release or close
		eng.conflicted(e, r.err)
	case r.kind.background() && errors.Is(r.err, compact.ErrReplicaLost): // from compaction or retention
		eng.replicaLost(e, r.err, now)
	case r.err != nil && r.kind.background():
		eng.backgroundFailed(e, r, now)
	case r.err != nil:
		eng.failed(e, r, now)
	case r.kind.background():
		if n := e.bgFails.recover(); n > 0 {
			eng.log.Info("background work recovered", "db", e.Path, "after_failures", n)
		}
		eng.settleBackground(e, r, now)
	default:
		if n := e.fails.recover(); n > 0 {
			eng.log.Info("replication recovered", "db", e.Path, "after_failures", n)
		}
		eng.settle(e, r, now)
	}
	eng.updateNextDue(e)
}

// settle records a sync, release or close that succeeded.
func (eng *Engine) settle(e *entry, r result, now time.Time) {
	switch r.kind {
	case jobCool, jobClose:
		eng.released(now)
		return
	}
	if r.replaced {
		// Reopen at once, as a new state of the database.
		e.resyncNow("the database file was replaced by another file (new inode) while walsync replicated it", now)
		return
	}
	e.txid, e.txidTime = uint64(r.st.TXID), r.st.TXIDTime
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

// failed records a failed sync, release or close and schedules its retry.
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
	if eng.awaitFile(e, r.err) {
		return
	}
	if errors.Is(r.err, context.Canceled) {
		// Stopping: the final sync that follows ships what is left.
		eng.log.Debug("sync interrupted by shutdown", "db", e.Path)
		return
	}
	eng.noteFDLimit(r.err)
	backoff := e.fails.fail(r.err, eng.opts.SyncInterval, now)
	eng.log.Error("replication failed; will retry", "db", e.Path, "retry_in", backoff, "error", r.err)
}

// failures are one kind of work's consecutive failures.
type failures struct {
	n       int
	err     string    // the last one's
	retryAt time.Time // not before: the next attempt
}

// fail records err and returns the wait before the next attempt: twice
// base, doubling with each failure, at most 5 minutes.
func (f *failures) fail(err error, base time.Duration, now time.Time) time.Duration {
	f.n++
	f.err = err.Error()
	backoff := min(time.Duration(1<<min(f.n, 8))*base, 5*time.Minute)
	f.retryAt = now.Add(backoff)
	return backoff
}

// recover clears f after a success and returns how many failures it ends.
func (f *failures) recover() int {
	n := f.n
	*f = failures{}
	return n
}
