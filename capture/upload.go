// Uploading captured files, and noticing when the replica or the database file moved.

package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
)

// uploadPending uploads the captured file, if any.
func (db *DB) uploadPending(ctx context.Context) error {
	if db.conflict != nil {
		return db.conflict
	}
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
	if _, err := db.opts.Client.WriteLTXFile(ctx, p.level, p.minTX, p.maxTX, p.f); errors.Is(err, storage.ErrConflict) {
		// Another process created this TXID: it writes this replica too.
		// Stop for good; its files stay as they are.
		p.f.Close()
		db.pending = nil
		db.conflict = fmt.Errorf("database %s is no longer replicated to %s: another walsync (or Litestream) process writes this replica; stop one of them; the files it wrote are kept: %w",
			db.opts.Path, db.opts.Client, err)
		return db.conflict
	} else if err != nil {
		// Whatever failed (the bucket deleted, another writer, an outage),
		// look before writing again.
		db.recheck = true
		return fmt.Errorf("upload L%d %s of %s: %w", p.level, ltx.FormatFilename(p.minTX, p.maxTX), db.opts.Path, err)
	}
	p.f.Close()
	db.pending = nil
	if p.level == storage.SnapshotLevel {
		db.snapshotTXID = p.maxTX
	}
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
	db.txid, db.txidTS, db.snapshotTXID = txid, 0, 0
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
		best, err := storage.Newest(it)
		if err != nil {
			return 0, nil, err
		}
		if best == nil {
			continue
		}
		hdr, err := storage.ReadHeader(ctx, c, best)
		if err != nil {
			return 0, nil, err
		}
		return best.MaxTXID, &hdr, nil
	}
	return 0, nil, nil
}
