// The seal (the brief write lock) and the pin moves that let the WAL restart.

package capture

import (
	"context"
	"errors"
	"fmt"
	"time"
)

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
