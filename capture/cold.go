package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/fsx"
	"github.com/walsync/walsync/wal"
)

// State is what walsync keeps of a database it has let go cold (Cool):
// enough to resume capture without asking the replica, and to tell on
// waking whether anything could have been missed meanwhile. It holds no fd,
// connection or lock.
type State struct {
	TXID   ltx.TXID     // the replica's last TXID
	TXIDTS int64        // its header timestamp (ms)
	Pos    wal.Position // the captured WAL end
	// The database file as it was once the WAL was checkpointed. DBMod is 0
	// when it could not be trusted (written too recently: file times are
	// coarse), which makes any WAL generation change on waking a resync.
	Ino    uint64
	DBSize int64
	DBMod  int64 // modification time, ns
	DBCtim int64 // status change time, ns (utimes cannot set it)
	// The -wal file as it was (WALSize -1: none), for cheap change sweeps.
	WALSize int64
	WALMod  int64
}

// ErrNotIdle means Cool found new commits (now captured but not shipped)
// or a resync due: sync, then try again. The database stays open.
var ErrNotIdle = errors.New("database is not idle")

// ErrNotSettled means Cool could not prove enough yet: the checkpoint could
// not backfill every frame (a reader holds them), or the database file was
// written too recently for its times to tell later writes apart. The
// database stays open; try again in a few seconds, or force.
var ErrNotSettled = errors.New("database is not settled")

// coolFreshness is how old the database file's times must be before they
// prove that nothing wrote it since: file times are kept at the kernel's
// coarse clock (a jiffy), and some filesystems keep whole seconds.
const coolFreshness = 2 * time.Second

// Cool lets the database go cold: it captures to the WAL's end (nothing
// may be pending), ends the pin, checkpoints the WAL (unless forced),
// records the files' state, confirms that nothing was committed meanwhile,
// and then closes every connection and fd. On success the DB is closed and
// the returned State resumes it (Options.Resume).
//
// It takes no write lock: an application writing without a busy timeout
// never meets walsync's seal because a database went cold. Instead of
// holding writers off, it looks again after recording the state: a commit
// or a WAL restart in between makes it give up (ErrNotIdle).
//
// Unless force is set, it refuses (ErrNotSettled) while the checkpoint cannot
// backfill everything or the database file was written too recently for
// its times to prove anything later: such a state would make the next wake
// a resync.
func (db *DB) Cool(ctx context.Context, force bool) (*State, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.pin == nil {
		return nil, errors.New("database is closed")
	}
	if db.conflict != nil {
		return nil, db.conflict
	}
	if db.pending != nil || db.resync != "" {
		return nil, fmt.Errorf("%w: a sync is due", ErrNotIdle)
	}
	if err := db.checkReplaced(); err != nil {
		return nil, err
	}
	if err := db.openWAL(); err != nil {
		return nil, err
	}
	defer db.closeWAL()
	st, err := db.cool(force)
	if st == nil {
		// Still hot: the pin must hold again, and whatever was committed
		// since it ended must be accounted for, as when waking.
		if !db.pin.inTxn() {
			s := &State{TXID: db.txid, TXIDTS: db.txidTS, Pos: db.pos, Ino: db.ino}
			if rerr := db.resume(ctx, func() error { db.attachResume(s); return nil }); rerr != nil {
				db.resync = "walsync's read transaction could not be restarted: " + rerr.Error()
				err = errors.Join(err, rerr)
			}
		}
		return nil, err
	}
	db.closeLocked()
	db.log.Debug("cooled", "txid", st.TXID, "wal_frame", st.Pos.Frame, "db_time_trusted", st.DBMod != 0)
	return st, nil
}

func (db *DB) cool(force bool) (*State, error) {
	if _, err := db.captureFrames(); err != nil {
		return nil, err
	}
	if db.pending != nil || db.resync != "" {
		return nil, fmt.Errorf("%w: new transactions were committed", ErrNotIdle)
	}
	// A database file written just now cannot prove anything yet: say so
	// while the pin still holds, which costs nothing to keep.
	if !force {
		if fi, err := os.Stat(db.opts.Path); err == nil {
			if mod, ctim := fileTimes(fi); fresh(time.Now().UnixNano(), mod) || fresh(time.Now().UnixNano(), ctim) {
				return nil, fmt.Errorf("%w: the database file was written just now", ErrNotSettled)
			}
		}
	}
	if err := db.pin.end(); err != nil {
		return nil, err
	}
	// A checkpoint now lets the application's next write restart the WAL
	// from the captured state, the case that wakes without a resync. A
	// forced release skips it: writing the database file would make its
	// times too fresh to prove anything, and without walsync's pin SQLite's
	// own auto-checkpoint keeps the WAL bounded. An empty WAL has nothing
	// to backfill.
	if !force && db.pos.Header.PageSize != 0 {
		r, err := db.pin.queryInts("PRAGMA wal_checkpoint(PASSIVE)")
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
		// PASSIVE never restarts the WAL: db.pos still holds.
		if len(r) != 3 || r[1] != r[2] {
			return nil, fmt.Errorf("%w: the checkpoint could not backfill every frame (a reader holds them)", ErrNotSettled)
		}
	}
	st := &State{TXID: db.txid, TXIDTS: db.txidTS, Pos: db.pos, Ino: db.ino, WALSize: -1}
	fi, err := os.Stat(db.opts.Path)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", db.opts.Path, err)
	}
	mod, ctim := fileTimes(fi)
	now := time.Now().UnixNano()
	if fresh(now, mod) || fresh(now, ctim) {
		if !force {
			return nil, fmt.Errorf("%w: the database file was written just now", ErrNotSettled)
		}
	} else {
		st.DBMod, st.DBCtim = mod, ctim
	}
	st.DBSize = fi.Size()
	if wfi, err := os.Stat(db.opts.Path + "-wal"); err == nil {
		st.WALSize, st.WALMod = wfi.Size(), wfi.ModTime().UnixNano()
	}
	// Nothing may have been committed since the capture: a commit the
	// checkpoint backfilled before the times were taken would otherwise
	// look, on waking, like part of the captured state. Frames stay in
	// the WAL until a restart, and a restart changes the header, so one
	// look after the stat settles it.
	if err := db.unchangedSinceCapture(); err != nil {
		return nil, err
	}
	return st, nil
}

// unchangedSinceCapture fails with ErrNotIdle unless the WAL holds no
// commit after the captured position, in the captured generation.
func (db *DB) unchangedSinceCapture() error {
	h, err := db.readWALHeader()
	if err != nil {
		return err
	}
	old := db.pos.Header
	switch {
	case h == nil && old.PageSize == 0:
		return nil
	case h == nil || old.PageSize == 0 || !h.SameGeneration(old):
		return fmt.Errorf("%w: the WAL moved to a new generation while the database was being released", ErrNotIdle)
	}
	q, err := wal.Scan(db.walFile, db.pos, nil)
	if err != nil {
		return err
	}
	if q.Frame != db.pos.Frame {
		return fmt.Errorf("%w: new transactions were committed while the database was being released", ErrNotIdle)
	}
	// A restart writes the header before its first frame: the same header
	// after the scan means the scan did not stop at an overwritten frame.
	after, err := db.readWALHeader()
	if err != nil {
		return err
	}
	if !sameGeneration(h, after) {
		return fmt.Errorf("%w: the WAL moved to a new generation while the database was being released", ErrNotIdle)
	}
	return nil
}

func fresh(now, t int64) bool {
	d := time.Duration(now - t)
	return d < coolFreshness && d > -coolFreshness
}

// fileTimes returns a file's modification and status change times in ns;
// the change time catches a write that reset the mtime (utimes cannot set it).
func fileTimes(fi os.FileInfo) (mod, ctim int64) {
	return fi.ModTime().UnixNano(), fsx.ChangeTime(fi).UnixNano()
}

// Changed reports whether the database or its WAL differ from when s was
// recorded: a cheap stat, for sweeps that look for missed file events.
func (s *State) Changed(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return true
	}
	if fi.Sys().(*syscall.Stat_t).Ino != s.Ino || fi.Size() != s.DBSize {
		return true
	}
	if mod, ctim := fileTimes(fi); s.DBMod != 0 && (mod != s.DBMod || ctim != s.DBCtim) {
		return true
	}
	wfi, err := os.Stat(path + "-wal")
	if err != nil {
		return s.WALSize != -1
	}
	return wfi.Size() != s.WALSize || wfi.ModTime().UnixNano() != s.WALMod
}

// resume takes the pin after a spell without it (opening, a cold
// database waking, or Cool giving up after ending the pin) and decides
// where capture continues with decide (attach or attachResume). It first
// tries without the seal (wake), so that it takes no write lock, and falls
// back to deciding under the seal in the rare case that the WAL restarted
// while it looked.
func (db *DB) resume(ctx context.Context, decide func() error) error {
	ok, err := db.wake(decide)
	if err != nil || ok {
		return err
	}
	db.log.Debug("the WAL restarted while attaching; deciding under the seal")
	return db.sealed(ctx, func() error {
		// The seal connection opened the WAL, so it exists now.
		if err := db.openWAL(); err != nil {
			return err
		}
		return decide()
	})
}

// wake starts the pin without the seal, decides where capture resumes
// and captures everything the WAL holds. It reports false, with the pin
// ended and nothing changed, when the WAL's generation moved while it
// looked.
//
// Why no seal is needed (docs/design/capture.md has the whole argument):
// once the pin holds a read mark on slot 1 or above, no restart can
// happen. On slot 0 (the WAL was fully backfilled when the pin began)
// backfilling is blocked, so at most one restart can happen, only before
// any new frame is appended, and it discards only frames already in the
// database file. So if the WAL's header is the same before and after
// capturing to its end, every frame that existed when the pin began was
// captured or is still there; and a restart before the first look is a
// restart while walsync held nothing, which decide judges as before.
func (db *DB) wake(decide func() error) (bool, error) {
	if err := db.pin.beginRead(); err != nil {
		return false, fmt.Errorf("start read transaction on %s: %w", db.opts.Path, err)
	}
	if err := db.openWAL(); err != nil {
		return false, err
	}
	before, err := db.readWALHeader()
	if err != nil {
		return false, err
	}
	txid, txidTS, framesSinceCkpt := db.txid, db.txidTS, db.framesSinceCkpt
	if err := decide(); err != nil {
		return false, err
	}
	if db.resync != "" {
		return true, nil // the next Sync takes a snapshot
	}
	if _, err := db.captureFrames(); err != nil {
		return false, err
	}
	after, err := db.readWALHeader()
	if err != nil {
		return false, err
	}
	if db.resync == "" && sameGeneration(before, after) {
		return true, nil
	}
	if db.pending != nil {
		db.pending.f.Close()
		db.pending = nil
	}
	db.txid, db.txidTS, db.framesSinceCkpt = txid, txidTS, framesSinceCkpt
	db.pos, db.havePos, db.resync = wal.Position{}, false, ""
	return false, db.pin.end()
}

// attachResume decides where capture resumes after a spell without the
// pin, with the pin now held. Nothing was pinned meanwhile, so frames may
// have been discarded by a WAL restart; but a restart needs every frame
// backfilled into the database file, so if the file was not written since
// Cool, nothing that was not already captured can have been lost, whatever
// the WAL now holds.
func (db *DB) attachResume(s *State) {
	defer func() {
		if db.resync != "" {
			db.log.Info("a snapshot is needed", "reason", db.resync)
		}
	}()
	if db.ino != s.Ino {
		db.resync = "the database file was replaced while walsync held it cold"
		return
	}
	h, err := db.readWALHeader()
	if err != nil {
		db.resync = "the WAL could not be read on waking: " + err.Error()
		return
	}
	old := s.Pos.Header
	if h != nil && old.PageSize != 0 && h.SameGeneration(old) {
		// The same generation: every frame we captured is still there.
		p, err := db.scanTo(*h, s.Pos.Offset())
		if err != nil || p != s.Pos {
			db.resync = fmt.Sprintf("the WAL no longer matches what was captured before the database went cold (TXID %s)", s.TXID)
			return
		}
		db.pos, db.havePos = p, true
		return
	}
	fi, err := os.Stat(db.opts.Path)
	if err != nil {
		db.resync = "the database file could not be examined on waking: " + err.Error()
		return
	}
	mod, ctim := fileTimes(fi)
	if s.DBMod == 0 || fi.Size() != s.DBSize || mod != s.DBMod || ctim != s.DBCtim {
		db.resync = "the database file was written while walsync held it cold and the WAL moved to a new generation: changes may have been checkpointed out of the WAL before walsync saw them (a burst of writes, or a last connection closing)"
		return
	}
	// Unwritten database file: the WAL is empty, or a generation that began
	// from exactly the captured state. captureFrames starts it at frame 1.
	db.pos, db.havePos = s.Pos, true
	if h == nil {
		return
	}
	if old.PageSize != 0 && h.PageSize != old.PageSize {
		db.resync = fmt.Sprintf("the WAL page size changed from %d to %d while the database was cold", old.PageSize, h.PageSize)
		return
	}
	db.pos = wal.Position{Header: *h, Checksum1: h.Checksum1, Checksum2: h.Checksum2}
}
