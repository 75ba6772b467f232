package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/superfly/ltx"
)

// ErrConflict is returned (wrapped in a *ConflictError) when a write found
// its object already created by another writer with other bytes: two
// processes write one replica. WriteLTXFile never replaces an object.
var ErrConflict = errors.New("another writer created this object")

// Existing is what a backend knows of an object that was already there
// when it tried to create it. Zero fields are unknown.
type Existing struct {
	Size      int64 // -1: unknown
	SHA256    string
	CreatedAt time.Time
}

// ConflictError is a write refused because another writer created the
// object first. It wraps ErrConflict.
type ConflictError struct {
	Object string // the replica object, e.g. "s3://bucket/db/0000/….ltx"
	Other  Existing
}

func (e *ConflictError) Error() string {
	var other []string
	if e.Other.Size >= 0 {
		other = append(other, fmt.Sprintf("size %d", e.Other.Size))
	}
	if e.Other.SHA256 != "" {
		other = append(other, "sha256 "+e.Other.SHA256)
	} else {
		other = append(other, "no walsync checksum")
	}
	if !e.Other.CreatedAt.IsZero() {
		other = append(other, "created "+e.Other.CreatedAt.UTC().Format(time.RFC3339Nano))
	}
	return fmt.Sprintf("%s: %s already exists with other bytes (%s); it was not replaced", ErrConflict, e.Object, strings.Join(other, ", "))
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// ResolveExisting is the one rule for a create refused because object
// (level, minTXID, maxTXID) already exists, used by every backend. sum is
// the SHA-256 of the bytes being written, other what the backend knows of
// the object in place.
//
//   - Same SHA-256: our own earlier write landed (a retry after an
//     ambiguous failure); the write succeeded.
//   - Level 0: another writer wrote this TXID; a *ConflictError.
//   - Levels 1-9 (compactions and snapshots, which one writer may
//     legitimately produce again for the same TXIDs with other bytes): the
//     object is kept if c reads it back verified, and its FileInfo
//     returned. Two writers forking a replica always collide at level 0,
//     where both must write the next TXID.
func ResolveExisting(ctx context.Context, c Client, log *slog.Logger, object string, level int, minTXID, maxTXID ltx.TXID, sum string, other Existing) (*FileInfo, error) {
	fi := &FileInfo{Level: level, MinTXID: minTXID, MaxTXID: maxTXID}
	if other.SHA256 != "" && strings.EqualFold(other.SHA256, sum) {
		fi.Size, fi.CreatedAt, fi.SHA256 = other.Size, other.CreatedAt, strings.ToLower(sum)
		return fi, nil
	}
	if level == 0 {
		return nil, &ConflictError{Object: object, Other: other}
	}
	rc, err := c.OpenLTXFile(ctx, level, minTXID, maxTXID)
	if err != nil {
		return nil, fmt.Errorf("%s already exists and was kept (never replaced), but it cannot be read back: %w", object, err)
	}
	defer rc.Close()
	sp, err := inspect(rc, minTXID, maxTXID)
	if err != nil {
		return nil, fmt.Errorf("%s already exists and was kept (never replaced), but it cannot be read back: %w", object, err)
	}
	fi.Size, fi.CreatedAt, fi.SHA256 = sp.Size, sp.Timestamp(), sp.SHA256
	if log != nil {
		log.Debug("an LTX file for these TXIDs already exists with other bytes; keeping it", "object", object, "size", sp.Size, "sha256", sp.SHA256)
	}
	return fi, nil
}
