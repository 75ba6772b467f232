// Reading committed WAL frames into incremental LTX files.

package capture

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/wal"
)

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
	if err := db.checkCommit(to, from.Commit, pages); err != nil {
		return false, err
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
	spill, err := storage.SpillDir(db.opts.TempDir)
	if err != nil {
		return nil, err
	}
	enc.SetSpillDir(spill)
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

// checkCommit refuses a commit whose database size no page backs: when a
// transaction grows the database, SQLite writes every new page, so each page
// up to the commit's size is in the database file, in a frame captured
// before (known, the size at from), or in this scan (pages). A WAL that says
// otherwise (valid checksums, a size of billions of pages) is damaged or
// forged: shipped, it would restore as a file of terabytes of zeros, or
// never finish a snapshot.
func (db *DB) checkCommit(to wal.Position, known uint32, pages *wal.FrameIndex) error {
	backed := max(known, pages.Max())
	if to.Commit <= backed {
		return nil // the common case: no stat on the sync path
	}
	fi, err := db.dbFile.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", db.opts.Path, err)
	}
	backed = max(backed, uint32(min(fi.Size()/int64(to.Header.PageSize), math.MaxUint32)))
	if to.Commit > backed {
		return fmt.Errorf("the WAL of %s commits a database of %d pages at frame %d, but only %d pages exist in the database file and the WAL: the WAL is damaged or was not written by SQLite; walsync ships nothing past TXID %s until it is fixed",
			db.opts.Path, to.Commit, to.Frame, backed, db.txid)
	}
	return nil
}
