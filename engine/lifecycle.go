package engine

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

func (eng *Engine) markDirty(e *entry, now time.Time) {
	if e.busy {
		e.kick = true
		return
	}
	if !e.dirty {
		e.dirty, e.dirtyAt = true, now
	}
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
