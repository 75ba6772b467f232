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
	// snapshotTXID is the TXID of the last snapshot this DB uploaded.
	snapshotTXID ltx.TXID
	// conflict, once set, is why this DB uploads nothing more: another
	// writer created a file it meant to create (storage.ErrConflict).
	conflict error

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
	TXID     ltx.TXID  // the replica's position after the sync
	TXIDTime time.Time // TXID's LTX header timestamp (list's LATEST TIME); zero when unknown
	Uploaded bool      // an LTX file was written
	Snapshot bool      // it was a full snapshot
	Reason   string    // why a snapshot was taken
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
		return nil, fmt.Errorf("database %s is not in WAL mode; walsync never changes it for you: switch it once with: sqlite3 %s 'PRAGMA journal_mode=WAL;' (and open it in WAL mode in your application)", opts.Path, opts.Path)
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
			f, err := db.encodeSnapshot(ctx, plan, 1, db.txid, db.txidTS)
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
	st.TXID, st.TXIDTime = db.txid, db.txidTime()
	if db.opts.CheckpointPages > 0 && db.framesSinceCkpt >= db.opts.CheckpointPages {
		if err := db.release(ctx); err != nil {
			db.log.Warn("could not let the WAL checkpoint; will retry", "error", err)
		}
		st.TXID, st.TXIDTime = db.txid, db.txidTime()
	}
	return st, nil
}

// txidTime is txidTS as a time, zero when unknown.
func (db *DB) txidTime() time.Time {
	if db.txidTS == 0 {
		return time.Time{}
	}
	return time.UnixMilli(db.txidTS).UTC()
}

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
	var err error
	if db.conflict == nil { // the conflict was reported by the call that met it
		err = db.uploadPending(ctx)
	}
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
