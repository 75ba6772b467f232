// Package capture turns a SQLite database's committed WAL content into LTX
// files in a replica, without ever writing into the database.
//
// The lock protocol (docs/design/capture.md has the argument in full):
//
//   - A "pin" connection holds a read transaction while the database is
//     open. While it holds a read mark on slot 1+, no WAL restart can happen;
//     on slot 0 (it began when the WAL was fully checkpointed) at most one
//     restart can happen, and only before any new frame is appended.
//   - Frames are read straight from the -wal file, validated by salts and the
//     cumulative checksum, and cut at the last valid commit frame.
//   - The pin is (re)started either while a second "seal" connection holds
//     the write lock (BEGIN IMMEDIATE) with every committed frame captured,
//     or without the seal, followed by a capture to the WAL's end and a
//     second look at the WAL header that proves no restart happened
//     meanwhile (opening, waking, releasing: they never block a writer). So
//     whenever a restart happens, every frame it discards has already been
//     captured, and exactly one generation step is proof of it.
//   - To let the WAL restart, walsync periodically moves the pin to the
//     WAL's end, checkpoints, then seals briefly to capture what came
//     meanwhile, checkpoint that, re-pin and unseal.
//
// Anything outside this (the database replaced, the WAL jumping more than one
// generation, a capture that could not be uploaded before a restart) makes
// the next sync a full snapshot, logged with its reason.
package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/wal"
)

// Defaults for Options fields left zero.
const (
	DefaultBusyTimeout     = 5 * time.Second
	DefaultCheckpointPages = 1000 // WAL frames captured before walsync lets the WAL restart
	// DefaultIndexSpill is the number of LTX page-index entries kept in
	// memory before the encoder spills them to disk.
	DefaultIndexSpill = 16384
)

// Options configure one replicated database.
type Options struct {
	Path   string         // the database file
	Client storage.Client // the replica of this database (already at its sub-path)

	TempDir         string        // spool files; empty: os.TempDir()
	BusyTimeout     time.Duration // how long to wait for SQLite locks
	CheckpointPages int64         // see DefaultCheckpointPages; negative: never checkpoint
	Logger          *slog.Logger
	Now             func() time.Time // clock for LTX timestamps; tests set it

	// Resume, when set, is the state Cool returned: Open resumes from it
	// without reading the replica, and resyncs if anything could have been
	// missed while the database was cold.
	Resume *State
	// VerifyResume checks the replica's end before the first upload after
	// resuming (a state read from disk may be stale; one kept in memory
	// cannot be).
	VerifyResume bool
	// Resync, when set, is why the caller knows the replica cannot be
	// continued (the database file was replaced while walsync watched it):
	// the first sync writes a full image and a snapshot, logged with it.
	Resync string
	// OnSeal, when set, is told how long each seal held the database's
	// write lock: the time an application's writer may have waited.
	OnSeal func(held time.Duration)
}

// DB replicates one database. Its methods are safe for concurrent use but
// run one at a time.
type DB struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	dbFile   *os.File // held while the connections are open: closing an fd would drop SQLite's POSIX locks
	walFile  *os.File // open only during a call (SQLite takes no POSIX locks on the WAL)
	pin      *conn
	sealConn *conn // open only while sealed
	sealedAt time.Time
	ino      uint64

	// Captured state: pos is the WAL position the last captured LTX file
	// (TXID txid) ends at; havePos is false until a snapshot is taken.
	pos     wal.Position
	havePos bool
	txid    ltx.TXID
	txidTS  int64        // header timestamp (ms) of TXID txid: when that state was captured
	pending *pendingFile // captured but not yet uploaded
	resync  string       // non-empty: the next sync is a snapshot, for this reason
	recheck bool         // confirm the replica's end before the next upload

	framesSinceCkpt int64
}

type pendingFile struct {
	f      *os.File
	level  int
	minTX  ltx.TXID
	maxTX  ltx.TXID
	frames int64
}

// Stats describe what a Sync did.
type Stats struct {
	TXID     ltx.TXID // the replica's position after the sync
	Uploaded bool     // an LTX file was written
	Snapshot bool     // it was a full snapshot
	Reason   string   // why a snapshot was taken
}

// Open attaches to a database: it checks the file, opens the SQLite
// connections, finds the replica's position and takes the pin. It uploads
// nothing; the first Sync does.
func Open(ctx context.Context, opts Options) (_ *DB, err error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = DefaultBusyTimeout
	}
	if opts.CheckpointPages == 0 {
		opts.CheckpointPages = DefaultCheckpointPages
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TempDir == "" {
		// Named, so that the encoder spills its page index there: memory
		// stays bounded whatever the database's size.
		opts.TempDir = os.TempDir()
	}
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, err
	}
	// SQLite follows a symlink and keeps the WAL beside the real file.
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	opts.Path = abs
	db := &DB{opts: opts, log: opts.Logger.With("db", opts.Path)}
	defer func() {
		if err != nil {
			db.closeLocked()
		}
	}()

	// The fd is opened before SQLite's and closed after them.
	db.dbFile, err = os.Open(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", opts.Path, err)
	}
	fi, err := db.dbFile.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", opts.Path)
	}
	db.ino = fi.Sys().(*syscall.Stat_t).Ino
	hdr, err := readDBHeader(db.dbFile)
	if errors.Is(err, errNotSQLite) {
		return nil, fmt.Errorf("%s is not a SQLite database (or is empty)", opts.Path)
	} else if err != nil {
		return nil, fmt.Errorf("read header of %s: %w", opts.Path, err)
	}
	if !hdr.wal {
		return nil, fmt.Errorf("database %s is not in WAL mode; walsync never changes it for you: switch it once with\n    sqlite3 %s 'PRAGMA journal_mode=WAL;'\n(and open it in WAL mode in your application)", opts.Path, opts.Path)
	}

	if db.pin, err = openConn(opts.Path, opts.BusyTimeout); err != nil {
		return nil, err
	}

	var last *ltx.Header
	if s := opts.Resume; s != nil {
		db.txid, db.txidTS = s.TXID, s.TXIDTS
		db.recheck = opts.VerifyResume
	} else {
		txid, hdr, err := latestFile(ctx, opts.Client)
		if err != nil {
			return nil, fmt.Errorf("read replica position of %s from %s: %w", opts.Path, opts.Client, err)
		}
		db.txid, last = txid, hdr
		if last != nil {
			db.txidTS = last.Timestamp
		}
	}

	defer db.closeWAL()
	decide := func() error { return db.attach(ctx, last) }
	switch {
	case opts.Resync != "" && db.txid > 0:
		decide = func() error {
			db.resync = opts.Resync
			db.log.Info("a snapshot is needed", "reason", db.resync)
			return nil
		}
	case opts.Resume != nil:
		s := opts.Resume
		decide = func() error { db.attachResume(s); return nil }
	}
	if err := db.resume(ctx, decide); err != nil {
		return nil, err
	}
	return db, nil
}

// openWAL opens walsync's own fd on the -wal file for the length of one
// call: SQLite takes no POSIX locks on the WAL, so closing it is harmless,
// and an idle hot database holds one fd fewer.
func (db *DB) openWAL() error {
	if db.walFile != nil {
		return nil
	}
	f, err := os.Open(db.opts.Path + "-wal")
	if err != nil {
		return fmt.Errorf("open WAL of %s: %w", db.opts.Path, err)
	}
	db.walFile = f
	return nil
}

func (db *DB) closeWAL() {
	if db.walFile != nil {
		db.walFile.Close()
		db.walFile = nil
	}
}

// attach decides, with the pin held, where capture resumes after walsync
// held nothing (a start), from the replica's last file.
func (db *DB) attach(ctx context.Context, last *ltx.Header) error {
	if db.txid == 0 {
		db.resync = "the replica is empty"
		return nil
	}
	h, err := db.readWALHeader()
	if err != nil {
		return err
	}
	switch {
	case last == nil || last.WALSalt1 == 0 && last.WALSalt2 == 0:
		db.resync = fmt.Sprintf("the replica's last file (TXID %s) does not record a WAL position to resume from", db.txid)
	case h == nil:
		db.resync = fmt.Sprintf("the replica ends at TXID %s in WAL generation %08x, and the WAL is now empty: its changes may have been checkpointed while walsync was not running", db.txid, last.WALSalt1)
	case h.Salt1 != last.WALSalt1 || h.Salt2 != last.WALSalt2:
		db.resync = fmt.Sprintf("the replica ends at TXID %s in WAL generation %08x, the WAL is now at generation %08x: changes may have been checkpointed while walsync was not running", db.txid, last.WALSalt1, h.Salt1)
	default:
		// Same generation: replay the chain to the replica's end offset.
		end := last.WALOffset + last.WALSize
		p, err := db.scanTo(*h, end)
		if err != nil {
			db.resync = fmt.Sprintf("the WAL no longer matches the replica at offset %d (TXID %s): %v", end, db.txid, err)
		} else {
			db.pos, db.havePos = p, true
			db.log.Info("resuming replication", "txid", db.txid, "wal_frame", p.Frame)
		}
	}
	if db.resync != "" {
		db.log.Info("a snapshot is needed", "reason", db.resync)
	}
	return nil
}

// scanTo returns the position at file offset end of h's generation, which
// must be a commit boundary.
func (db *DB) scanTo(h wal.Header, end int64) (wal.Position, error) {
	p := wal.Start(h)
	if end == p.Offset() {
		return p, nil
	}
	if (end-wal.HeaderSize)%h.FrameSize() != 0 {
		return p, fmt.Errorf("offset %d is not on a frame boundary", end)
	}
	target := (end - wal.HeaderSize) / h.FrameSize()
	// Scan no further than end: the last commit there must end exactly at it.
	lim := &limitedReaderAt{r: db.walFile, n: end}
	q, err := wal.Scan(lim, p, nil)
	if err != nil {
		return p, err
	}
	if q.Frame != target {
		return p, fmt.Errorf("the WAL's last commit before offset %d is frame %d, not %d", end, q.Frame, target)
	}
	return q, nil
}

type limitedReaderAt struct {
	r io.ReaderAt
	n int64
}

func (l *limitedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= l.n {
		return 0, io.EOF
	}
	if rest := l.n - off; int64(len(p)) > rest {
		n, err := l.r.ReadAt(p[:rest], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return l.r.ReadAt(p, off)
}

// newIndex returns a frame index that spills to the temp directory.
func (db *DB) newIndex() *wal.FrameIndex {
	return wal.NewFrameIndex(func() (*os.File, error) { return storage.CreateUnlinkedTemp(db.opts.TempDir) })
}

// walLen is the WAL file's length, -1 when it cannot be read.
func (db *DB) walLen() int64 {
	fi, err := db.walFile.Stat()
	if err != nil {
		return -1
	}
	return fi.Size()
}

// readWALHeader returns nil when the WAL has no valid header (empty).
func (db *DB) readWALHeader() (*wal.Header, error) {
	b := make([]byte, wal.HeaderSize)
	if _, err := db.walFile.ReadAt(b, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("read WAL header: %w", err)
	}
	h, err := wal.ParseHeader(b)
	if err != nil {
		// A header being rewritten, or garbage: nothing valid to read.
		return nil, nil
	}
	return &h, nil
}

// seal opens the seal connection and takes the write lock. The connection
// lives only as long as the seal: an idle hot database holds one SQLite
// connection, not two.
func (db *DB) seal(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if db.sealConn == nil {
		c, err := openConn(db.opts.Path, db.opts.BusyTimeout)
		if err != nil {
			return err
		}
		db.sealConn = c
	}
	if err := db.sealConn.exec("BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("take the write lock of %s (BEGIN IMMEDIATE): %w", db.opts.Path, err)
	}
	db.sealedAt = time.Now()
	return nil
}

// unseal releases the write lock and closes the seal connection. SQLite
// keeps the connection's database fd open while the pin holds locks on the
// file, so its locks survive.
func (db *DB) unseal() {
	if db.sealConn == nil {
		return
	}
	if err := db.sealConn.end(); err != nil {
		db.log.Warn("release the write lock", "error", err)
	}
	if db.opts.OnSeal != nil && !db.sealedAt.IsZero() {
		db.opts.OnSeal(time.Since(db.sealedAt))
	}
	db.sealedAt = time.Time{}
	if err := db.sealConn.close(); err != nil {
		db.log.Warn("close the seal connection", "error", err)
	}
	db.sealConn = nil
}

// sealed runs fn while the seal connection holds the write lock, then
// re-pins: the pin's read transaction always starts with everything up to
// the WAL's end captured.
func (db *DB) sealed(ctx context.Context, fn func() error) error {
	if err := db.seal(ctx); err != nil {
		return err
	}
	defer db.unseal()
	ferr := fn()
	// Re-pin when fn succeeded (everything is captured), or when fn ended
	// the pin, which it does only after capturing everything.
	if ferr != nil && db.pin.inTxn() {
		return ferr
	}
	if err := db.pin.end(); err != nil {
		db.resync = "walsync's read transaction could not be restarted: " + err.Error()
		return errors.Join(ferr, fmt.Errorf("end read transaction: %w", err))
	}
	if err := db.pin.beginRead(); err != nil {
		// Unpinned, a restart could discard frames unseen: only a snapshot
		// can re-establish the invariant.
		db.resync = "walsync's read transaction could not be restarted: " + err.Error()
		return errors.Join(ferr, fmt.Errorf("start read transaction on %s: %w", db.opts.Path, err))
	}
	return ferr
}

// Sync captures every transaction committed since the last sync and uploads
// it as one LTX file, or a full snapshot when one is needed.
func (db *DB) Sync(ctx context.Context) (Stats, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.pin == nil {
		return Stats{}, errors.New("database is closed")
	}
	if err := db.checkReplaced(); err != nil {
		return Stats{}, err
	}
	if err := db.openWAL(); err != nil {
		return Stats{}, err
	}
	defer db.closeWAL()
	// A file captured earlier (by Open, or a sync whose upload failed)
	// goes first: TXIDs reach the replica in order.
	earlier := db.pending != nil
	if err := db.uploadPending(ctx); err != nil {
		return Stats{}, err
	}
	var st Stats
	if db.resync == "" {
		if _, err := db.captureFrames(); err != nil {
			return st, err
		}
	}
	if db.resync != "" {
		st.Snapshot, st.Reason = true, db.resync
		plan, err := db.resyncSnapshot(ctx)
		if err != nil {
			return st, err
		}
		defer plan.close()
		if err := db.uploadPending(ctx); err != nil {
			return st, err
		}
		// The full image continues the replica's TXIDs; a snapshot of the
		// same state lets a restore (walsync's or Litestream's) start
		// there, which it must when the page size changed or older files
		// were lost. The pin still holds the plan's end.
		if db.txid > 1 {
			f, err := db.encodeSnapshot(plan, 1, db.txid, db.txidTS)
			if err != nil {
				return st, err
			}
			db.pending = &pendingFile{f: f, level: storage.SnapshotLevel, minTX: 1, maxTX: db.txid}
		}
	}
	st.Uploaded = earlier || st.Snapshot || db.pending != nil
	if err := db.uploadPending(ctx); err != nil {
		return st, err
	}
	st.TXID = db.txid
	if db.opts.CheckpointPages > 0 && db.framesSinceCkpt >= db.opts.CheckpointPages {
		if err := db.release(ctx); err != nil {
			db.log.Warn("could not let the WAL checkpoint; will retry", "error", err)
		}
		st.TXID = db.txid
	}
	return st, nil
}

// resyncSnapshot captures every page as an L0 file for the next TXID (TXID
// 1 for an empty replica), which resynchronizes the replica.
func (db *DB) resyncSnapshot(ctx context.Context) (*snapPlan, error) {
	if db.txid > 0 {
		db.log.Warn("resyncing the replica with a full snapshot", "reason", db.resync, "txid", db.txid+1)
	} else {
		db.log.Info("writing the first snapshot", "replica", db.opts.Client.String())
	}
	plan, ok, err := db.planUnsealed()
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := db.sealed(ctx, func() (err error) {
			plan, err = db.planSnapshot()
			return err
		}); err != nil {
			plan.close()
			return nil, err
		}
	}
	txid := db.txid + 1
	ts := db.opts.Now().UnixMilli()
	f, err := db.encodeSnapshot(plan, txid, txid, ts)
	if err != nil {
		plan.close()
		return nil, err
	}
	db.txid, db.txidTS = txid, ts
	db.pos, db.havePos = plan.end, true
	db.resync = ""
	db.framesSinceCkpt = plan.end.Frame
	db.pending = &pendingFile{f: f, level: 0, minTX: txid, maxTX: txid}
	return plan, nil
}

// Resync makes the next Sync write a full image and a snapshot, for
// reason (logged): the engine calls it when the replica lost files.
func (db *DB) Resync(reason string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.resync == "" {
		db.resync = reason
	}
}

// release lets the WAL restart: seal, capture to the end, end the pin, run
// a PASSIVE checkpoint, re-pin (inside sealed) and unseal. Any captured file
// is uploaded afterwards; until then it lives in a local temp file.
//
// The bulk of the checkpoint runs before the seal (advancePin), so the
// write lock is held only for what the application committed meanwhile.
func (db *DB) release(ctx context.Context) error {
	if db.pending != nil {
		return nil
	}
	if err := db.advancePin(); err != nil {
		db.log.Debug("checkpoint before the seal skipped", "error", err)
	}
	err := db.sealed(ctx, func() error {
		if _, err := db.captureFrames(); err != nil {
			return err
		}
		if db.resync != "" {
			return nil // the next Sync resyncs; the WAL stays pinned until then
		}
		if err := db.pin.end(); err != nil {
			return err
		}
		r, err := db.pin.queryInts("PRAGMA wal_checkpoint(PASSIVE)")
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		if len(r) == 3 {
			db.log.Debug("checkpointed", "busy", r[0], "wal_frames", r[1], "backfilled", r[2])
		}
		return nil
	})
	if err != nil {
		return err
	}
	db.framesSinceCkpt = 0
	return db.uploadPending(ctx)
}

// advancePin moves the pin to the WAL's current end without letting go of
// it, then backfills everything before that end with a PASSIVE checkpoint,
// all without the write lock. A new connection begins its read while the
// old pin still holds, so there is no moment without a pin; on slot 1+ the
// new one forbids any restart, and it can only be on slot 0 if the WAL was
// fully backfilled, which the old pin's mark allowed only if nothing came
// after it. The old connection becomes the seal's. The frames between the
// captured position and the new mark are captured under the seal that
// follows, which restarts the pin with everything captured.
func (db *DB) advancePin() error {
	if db.sealConn != nil {
		return errors.New("sealed")
	}
	nc, err := openConn(db.opts.Path, db.opts.BusyTimeout)
	if err != nil {
		return err
	}
	if err := nc.beginRead(); err != nil {
		nc.close()
		return err
	}
	old := db.pin
	db.pin = nc
	if err := old.end(); err != nil {
		old.close() // closing ends its transaction; nc holds the pin
		return err
	}
	db.sealConn = old
	r, err := old.queryInts("PRAGMA wal_checkpoint(PASSIVE)")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if len(r) == 3 {
		db.log.Debug("checkpointed before the seal", "busy", r[0], "wal_frames", r[1], "backfilled", r[2])
	}
	return nil
}

// captureFrames reads committed frames after the captured position into a
// pending LTX file. It reports false with db.resync set when a snapshot is
// needed instead.
func (db *DB) captureFrames() (bool, error) {
	if db.pending != nil {
		return false, nil // one file in flight at a time
	}
	h, err := db.readWALHeader()
	if err != nil {
		return false, err
	}
	if h == nil {
		// An application's TRUNCATE checkpoint empties the WAL only when
		// every frame was backfilled, which the pin allows only for frames
		// already captured: the database file holds the captured state.
		if db.havePos && db.pos.Header.PageSize != 0 && db.walLen() == 0 {
			db.pos = wal.Position{}
		}
		return false, nil
	}
	from := db.pos
	if !db.havePos {
		db.resync = "no captured position"
		return false, nil
	}
	if !from.Header.SameGeneration(*h) {
		old := from.Header
		switch {
		case old.PageSize == 0:
			// Captured while the WAL was empty; the pin started with it so.
			from = wal.Start(*h)
		case h.Salt1 != old.Salt1 && h.PageSize == old.PageSize:
			// The WAL restarted (salt-1 grows by one per restart; TRUNCATE
			// checkpoints of an empty WAL add more). The pin has been held
			// since everything was captured: on slot 0 it blocks backfilling,
			// so only generations whose frames were all captured, or empty
			// ones, can have been discarded. The header's checkpoint sequence
			// is per connection in SQLite, so it proves nothing here.
			db.log.Debug("WAL restarted", "from_salt1", old.Salt1, "to_salt1", h.Salt1, "generations", h.Salt1-old.Salt1)
			from = wal.Start(*h)
		default:
			db.resync = fmt.Sprintf("the WAL header changed from generation %08x-%08x to %08x-%08x in a way a restart does not explain: frames may have been missed", old.Salt1, old.Salt2, h.Salt1, h.Salt2)
			return false, nil
		}
	}
	pages := db.newIndex()
	defer pages.Close()
	to, err := wal.Scan(db.walFile, from, pages)
	if errors.Is(err, wal.ErrOverwritten) {
		db.resync = "WAL frames were overwritten before they were captured"
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if to.Frame == from.Frame {
		if from != db.pos {
			db.pos = from // a restart with nothing new yet
		}
		return false, nil
	}
	ts := db.opts.Now().UnixMilli()
	f, err := db.encodeIncremental(from, to, pages, ts)
	if err != nil {
		if errors.Is(err, wal.ErrOverwritten) {
			db.resync = "WAL frames were overwritten before they were captured"
			return false, nil
		}
		return false, err
	}
	db.txid++
	db.txidTS = ts
	db.pending = &pendingFile{f: f, level: 0, minTX: db.txid, maxTX: db.txid, frames: to.Frame - from.Frame}
	db.pos = to
	db.framesSinceCkpt += to.Frame - from.Frame
	return true, nil
}

// writeLTX encodes an LTX file into an unlinked temp file: hdr, then the
// pages that pages emits in ascending order.
func (db *DB) writeLTX(hdr ltx.Header, pages func(emit func(pgno uint32, data []byte) error) error) (_ *os.File, err error) {
	f, err := storage.CreateUnlinkedTemp(db.opts.TempDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	enc, err := ltx.NewEncoder(f)
	if err != nil {
		return nil, err
	}
	enc.SetSpillDir(db.opts.TempDir)
	enc.SetSpillThreshold(DefaultIndexSpill)
	defer enc.Cleanup()
	if err := enc.EncodeHeader(hdr); err != nil {
		return nil, err
	}
	if err := pages(func(pgno uint32, data []byte) error {
		return enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data)
	}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return f, nil
}

func (db *DB) encodeIncremental(from, to wal.Position, pages *wal.FrameIndex, ts int64) (*os.File, error) {
	h := to.Header
	hdr := ltx.Header{
		Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: h.PageSize, Commit: to.Commit,
		MinTXID: db.txid + 1, MaxTXID: db.txid + 1, Timestamp: ts,
		WALOffset: from.Offset(), WALSize: to.Offset() - from.Offset(), WALSalt1: h.Salt1, WALSalt2: h.Salt2,
	}
	return db.writeLTX(hdr, func(emit func(uint32, []byte) error) error {
		data := make([]byte, h.PageSize)
		// Pages past the commit's size were truncated away.
		return pages.Range(to.Commit, func(pg uint32, n int64) error {
			if err := wal.ReadFramePage(db.walFile, h, n, pg, data); err != nil {
				return err
			}
			return emit(pg, data)
		})
	})
}

// planUnsealed plans a snapshot without taking the write lock, which is
// sound while the pin holds (see wake): pages are read from the WAL's
// frames up to the plan's end, and from the database file, which only a
// backfill of frames at or before the pin's mark can write. It reports
// false when the pin is not held or the WAL's generation moved while it
// looked: plan under the seal then.
func (db *DB) planUnsealed() (*snapPlan, bool, error) {
	if !db.pin.inTxn() {
		return nil, false, nil
	}
	before, err := db.readWALHeader()
	if err != nil {
		return nil, false, err
	}
	p, err := db.planSnapshot()
	if err != nil {
		return nil, false, err
	}
	after, err := db.readWALHeader()
	if err != nil || !sameGeneration(before, after) {
		p.close()
		return nil, false, err
	}
	return p, true, nil
}

// sameGeneration reports whether two reads of the WAL header (nil: empty)
// saw one generation.
func sameGeneration(a, b *wal.Header) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.SameGeneration(*b)
}

// snapPlan fixes the WAL end a snapshot is taken at.
type snapPlan struct {
	h        *wal.Header // nil: the WAL is empty
	end      wal.Position
	pages    *wal.FrameIndex // page -> last frame at or before end
	commit   uint32
	pageSize uint32
}

func (p *snapPlan) close() {
	if p != nil {
		p.pages.Close()
	}
}

func (db *DB) planSnapshot() (*snapPlan, error) {
	// The page size is read now, under the seal: the one read at Open may
	// be stale (an application can VACUUM to another page size in
	// rollback mode between walsync reading the header and its
	// connections taking their first lock).
	dh, err := readDBHeader(db.dbFile)
	if err != nil {
		return nil, fmt.Errorf("read header of %s: %w", db.opts.Path, err)
	}
	if !dh.wal {
		return nil, fmt.Errorf("database %s left WAL mode; walsync waits until it is back in WAL mode", db.opts.Path)
	}
	h, err := db.readWALHeader()
	if err != nil {
		return nil, err
	}
	p := &snapPlan{h: h, pages: db.newIndex(), pageSize: dh.pageSize}
	if h != nil {
		if h.PageSize != dh.pageSize {
			p.close()
			return nil, fmt.Errorf("the WAL of %s has %d-byte pages, the database %d: a WAL left from before a page-size change", db.opts.Path, h.PageSize, dh.pageSize)
		}
		if p.end, err = wal.Scan(db.walFile, wal.Start(*h), p.pages); err != nil {
			p.close()
			return nil, err
		}
	}
	p.commit = p.end.Commit
	if p.end.Frame == 0 {
		if p.commit, err = db.dbFilePages(dh); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

// encodeSnapshot writes every page as of the plan's WAL end. It runs after
// the seal is lifted: the pin, started at that end, keeps those frames (or,
// after a restart, the database file) unchanged.
func (db *DB) encodeSnapshot(p *snapPlan, minTX, maxTX ltx.TXID, ts int64) (*os.File, error) {
	hdr := ltx.Header{
		Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: p.pageSize, Commit: p.commit,
		MinTXID: minTX, MaxTXID: maxTX, Timestamp: ts,
	}
	if p.h != nil {
		hdr.WALOffset, hdr.WALSalt1, hdr.WALSalt2 = p.end.Offset(), p.h.Salt1, p.h.Salt2
	}
	return db.writeLTX(hdr, func(emit func(uint32, []byte) error) error {
		data := make([]byte, p.pageSize)
		lock := ltx.LockPgno(p.pageSize)
		for pg := uint32(1); pg <= p.commit; pg++ {
			if pg == lock {
				continue
			}
			if err := db.readPage(p.h, p.pages, pg, data); err != nil {
				return err
			}
			if err := emit(pg, data); err != nil {
				return err
			}
		}
		return nil
	})
}

// readPage reads page pg as of the captured WAL end: from its last frame,
// or from the database file when no frame holds it. If the frame was
// overwritten, the WAL restarted, which needs every frame backfilled, so
// the database file holds the page.
func (db *DB) readPage(h *wal.Header, pages *wal.FrameIndex, pg uint32, data []byte) error {
	n, ok, err := pages.Get(pg)
	if err != nil {
		return err
	}
	if ok {
		err := wal.ReadFramePage(db.walFile, *h, n, pg, data)
		if !errors.Is(err, wal.ErrOverwritten) {
			return err
		}
	}
	off := int64(pg-1) * int64(len(data))
	if _, err := db.dbFile.ReadAt(data, off); err != nil {
		if errors.Is(err, io.EOF) {
			clear(data) // never written: SQLite reads it as zeros
			return nil
		}
		return fmt.Errorf("read page %d of %s: %w", pg, db.opts.Path, err)
	}
	return nil
}

func (db *DB) dbFilePages(hdr dbHeader) (uint32, error) {
	if hdr.pageN > 0 {
		return hdr.pageN, nil
	}
	fi, err := db.dbFile.Stat()
	if err != nil {
		return 0, err
	}
	return uint32(fi.Size() / int64(hdr.pageSize)), nil
}

// Snapshot writes a level-9 snapshot (TXIDs 1..current) after capturing
// everything committed so far.
func (db *DB) Snapshot(ctx context.Context) (Stats, error) {
	if _, err := db.Sync(ctx); err != nil {
		return Stats{}, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.pin == nil {
		return Stats{}, errors.New("database is closed")
	}
	if err := db.openWAL(); err != nil {
		return Stats{}, err
	}
	defer db.closeWAL()
	captureAndPlan := func() (plan *snapPlan, err error) {
		if _, err := db.captureFrames(); err != nil {
			return nil, err
		}
		if db.resync != "" {
			return nil, fmt.Errorf("cannot snapshot: %s; the next sync resyncs", db.resync)
		}
		return db.planSnapshot()
	}
	// Without the seal first (see planUnsealed): the plan must end where
	// capture did, which a commit in between spoils; a few tries, then the
	// seal, which holds commits off while it captures and plans.
	var plan *snapPlan
	for range 3 {
		if err := db.uploadPending(ctx); err != nil {
			return Stats{}, err
		}
		if !db.pin.inTxn() {
			break
		}
		before, err := db.readWALHeader()
		if err != nil {
			return Stats{}, err
		}
		p, err := captureAndPlan()
		if err != nil {
			return Stats{}, err
		}
		after, err := db.readWALHeader()
		if err != nil {
			p.close()
			return Stats{}, err
		}
		if sameGeneration(before, after) && p.end == db.pos {
			plan = p
			break
		}
		p.close()
	}
	defer func() { plan.close() }()
	if plan == nil {
		if err := db.uploadPending(ctx); err != nil {
			return Stats{}, err
		}
		if err := db.sealed(ctx, func() (err error) {
			plan, err = captureAndPlan()
			return err
		}); err != nil {
			return Stats{}, err
		}
	}
	if err := db.uploadPending(ctx); err != nil {
		return Stats{}, err
	}
	if plan.end != db.pos {
		return Stats{}, errors.New("internal error: snapshot position differs from the captured position")
	}
	// The snapshot is the state of TXID txid: it carries that sync's time,
	// so that time-based restores stay exact.
	f, err := db.encodeSnapshot(plan, 1, db.txid, db.txidTS)
	if err != nil {
		return Stats{}, err
	}
	db.pending = &pendingFile{f: f, level: storage.SnapshotLevel, minTX: 1, maxTX: db.txid}
	if err := db.uploadPending(ctx); err != nil {
		return Stats{}, err
	}
	return Stats{TXID: db.txid, Uploaded: true, Snapshot: true}, nil
}

// uploadPending uploads the captured file, if any.
func (db *DB) uploadPending(ctx context.Context) error {
	p := db.pending
	if p == nil {
		return nil
	}
	if db.recheck {
		if moved, err := db.replicaMoved(ctx, p); err != nil || moved {
			return err
		}
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := db.opts.Client.WriteLTXFile(ctx, p.level, p.minTX, p.maxTX, p.f); err != nil {
		// Whatever failed (the bucket deleted, another writer, an outage),
		// look before writing again.
		db.recheck = true
		return fmt.Errorf("upload L%d %s of %s: %w", p.level, ltx.FormatFilename(p.minTX, p.maxTX), db.opts.Path, err)
	}
	p.f.Close()
	db.pending = nil
	return nil
}

// replicaMoved checks, after a failed upload or when resuming from a saved
// state, that the replica still ends where p continues it. If not (the
// bucket was deleted and re-created, another process wrote it, the state
// was stale), p is dropped and the next sync resyncs from the replica's
// real end: a full snapshot, TXID 1 for an empty replica.
func (db *DB) replicaMoved(ctx context.Context, p *pendingFile) (bool, error) {
	txid, hdr, err := latestFile(ctx, db.opts.Client)
	if err != nil {
		return false, fmt.Errorf("read replica position of %s from %s: %w", db.opts.Path, db.opts.Client, err)
	}
	db.recheck = false
	want := p.minTX - 1
	if p.level == storage.SnapshotLevel {
		want = p.maxTX
	}
	if txid == want {
		return false, nil
	}
	db.log.Warn("the replica is not where walsync left it (deleted, re-created or written by another process); resyncing from its end",
		"expected_txid", want, "replica_txid", txid, "replica", db.opts.Client.String())
	p.f.Close()
	db.pending = nil
	db.txid, db.txidTS = txid, 0
	if hdr != nil {
		db.txidTS = hdr.Timestamp
	}
	db.resync = fmt.Sprintf("the replica ends at TXID %s, not at TXID %s where walsync left it", txid, want)
	if p.level == storage.SnapshotLevel {
		return true, errors.New(db.resync + "; the snapshot waits for the resync")
	}
	return true, nil
}

// checkReplaced fails when the path now names another file.
func (db *DB) checkReplaced() error {
	fi, err := os.Stat(db.opts.Path)
	if err != nil {
		return fmt.Errorf("database %s: %w", db.opts.Path, err)
	}
	if fi.Sys().(*syscall.Stat_t).Ino != db.ino {
		return ErrReplaced
	}
	return nil
}

// ErrReplaced means the database path names a different file than the one
// opened: close the DB and open it again (a new database).
var ErrReplaced = errors.New("database file was replaced")

// TXID returns the last captured TXID.
func (db *DB) TXID() ltx.TXID {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.txid
}

// Close uploads what is pending (within ctx) and releases every lock, fd
// and connection.
func (db *DB) Close(ctx context.Context) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	err := db.uploadPending(ctx)
	db.closeLocked()
	return err
}

func (db *DB) closeLocked() {
	if db.pending != nil {
		db.pending.f.Close()
		db.pending = nil
	}
	if db.pin != nil {
		_ = db.pin.end()
		_ = db.pin.close()
		db.pin = nil
	}
	if db.sealConn != nil {
		_ = db.sealConn.end()
		_ = db.sealConn.close()
		db.sealConn = nil
	}
	// Only now, with SQLite's connections closed, may our fds go.
	db.closeWAL()
	if db.dbFile != nil {
		db.dbFile.Close()
		db.dbFile = nil
	}
}

// latestFile returns the replica's highest TXID and that file's header.
// Compaction only ever moves older TXIDs up a level, so the first non-empty
// level in the order 0, 1, …, 9 holds the newest file: one listing when L0
// has files.
func latestFile(ctx context.Context, c storage.Client) (ltx.TXID, *ltx.Header, error) {
	if ec, ok := c.(storage.EmptyChecker); ok {
		if has, err := ec.HasFiles(ctx); err != nil {
			return 0, nil, err
		} else if !has {
			return 0, nil, nil
		}
	}
	for level := 0; level <= storage.MaxLevel; level++ {
		it, err := c.LTXFiles(ctx, level, 0)
		if err != nil {
			return 0, nil, err
		}
		files, err := storage.Collect(it)
		if err != nil {
			return 0, nil, err
		}
		if len(files) == 0 {
			continue
		}
		best := files[0]
		for _, fi := range files[1:] {
			if fi.MaxTXID > best.MaxTXID {
				best = fi
			}
		}
		hdr, err := storage.ReadHeader(ctx, c, best)
		if err != nil {
			return 0, nil, err
		}
		return best.MaxTXID, &hdr, nil
	}
	return 0, nil, nil
}
