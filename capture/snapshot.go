// Full snapshots: planning a WAL end to take one at, and encoding every page.

package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/wal"
)

// resyncSnapshot captures every page as an L0 file for the next TXID (TXID
// 1 for an empty replica), which resynchronizes the replica.
func (db *DB) resyncSnapshot(ctx context.Context) (*snapPlan, error) {
	if db.txid > 0 {
		db.log.Warn("resyncing the replica with a full image (L0) and a snapshot (L9)", "reason", db.resync, "txid", db.txid+1)
	} else {
		db.log.Info("writing the first full image (L0)", "replica", db.opts.Client.String())
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
	f, err := db.encodeSnapshot(ctx, plan, txid, txid, ts)
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
	if p.end.Frame > 0 {
		if err := db.checkCommit(p.end, 0, p.pages); err != nil {
			p.close()
			return nil, err
		}
	}
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
func (db *DB) encodeSnapshot(ctx context.Context, p *snapPlan, minTX, maxTX ltx.TXID, ts int64) (*os.File, error) {
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
			if pg%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("snapshot of %s stopped at page %d of %d: %w", db.opts.Path, pg, p.commit, err)
				}
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
	fi, err := db.dbFile.Stat()
	if err != nil {
		return 0, err
	}
	n := fi.Size() / int64(hdr.pageSize)
	switch {
	case hdr.pageN == 0:
		return uint32(min(n, math.MaxUint32)), nil
	case int64(hdr.pageN) > n:
		return 0, fmt.Errorf("the header of %s says %d pages, the file holds %d: a damaged database; walsync ships nothing of it until it is fixed", db.opts.Path, hdr.pageN, n)
	}
	return hdr.pageN, nil
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
	if db.snapshotTXID == db.txid && db.pending == nil {
		// The sync resynced: its snapshot is of the current state.
		return Stats{TXID: db.txid, TXIDTime: db.txidTime(), Uploaded: true, Snapshot: true}, nil
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
	f, err := db.encodeSnapshot(ctx, plan, 1, db.txid, db.txidTS)
	if err != nil {
		return Stats{}, err
	}
	db.pending = &pendingFile{f: f, level: storage.SnapshotLevel, minTX: 1, maxTX: db.txid}
	if err := db.uploadPending(ctx); err != nil {
		return Stats{}, err
	}
	return Stats{TXID: db.txid, TXIDTime: db.txidTime(), Uploaded: true, Snapshot: true}, nil
}
