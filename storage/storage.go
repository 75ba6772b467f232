// Package storage defines the replica client: the one interface through which
// walsync writes LTX files to a replica and reads them back.
//
// Objects are addressed by (level, minTXID, maxTXID), never by free-form keys,
// so a backend cannot get Litestream's v0.5 layout wrong. Every implementation
// verifies what it reads (SHA-256 when the object carries one, and the LTX
// checksums) before it hands a byte to the caller; see docs/design/storage.md.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/superfly/ltx"
)

// SnapshotLevel is the level Litestream v0.5 stores full snapshots in.
const SnapshotLevel = 9

// MaxLevel is the highest level a replica may hold.
const MaxLevel = SnapshotLevel

// FileInfo describes one LTX file in a replica.
type FileInfo struct {
	Level   int
	MinTXID ltx.TXID
	MaxTXID ltx.TXID
	Size    int64 // bytes as stored

	// CreatedAt is the LTX header's timestamp when the backend knows it (after
	// a write, or from file modification times, which walsync and Litestream
	// set to it), otherwise the time the object was stored.
	CreatedAt time.Time

	// SHA256 is the hex SHA-256 of the stored bytes. Set after a write; empty
	// in listings, which do not carry object metadata.
	SHA256 string
}

// Name returns the file's name in Litestream's layout, without its directory.
func (fi *FileInfo) Name() string { return ltx.FormatFilename(fi.MinTXID, fi.MaxTXID) }

// String names the file for logs and errors, e.g. "L0/0000000000000001-0000000000000001.ltx".
func (fi *FileInfo) String() string { return fmt.Sprintf("L%d/%s", fi.Level, fi.Name()) }

// Client stores and retrieves the LTX files of one replica path. Every method
// is safe for concurrent use. Clients derived with Sub share their parent's
// connections: one process needs one client per bucket or root directory.
type Client interface {
	// String describes the replica for logs, e.g. "s3://bucket/prefix". It
	// never contains credentials.
	String() string

	// Sub returns a client for the replica at the sub-path name below this
	// one. It is cheap: it allocates no connection and does no I/O.
	Sub(name string) Client

	// WriteLTXFile stores the LTX file read from r as (level, minTXID,
	// maxTXID). The file is spooled to local disk (never held in memory),
	// its LTX checksums and TXID range are verified, and it is stored with
	// its SHA-256. A concurrent reader sees either no file or the whole file.
	WriteLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, r io.Reader) (*FileInfo, error)

	// OpenLTXFile returns the whole file after verifying its SHA-256 (when it
	// carries one) and its LTX checksums. A mismatch is a *CorruptError and
	// no byte is returned. A missing file is ErrNotFound.
	OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID) (io.ReadCloser, error)

	// OpenLTXRange returns size bytes from offset (size <= 0: to the end).
	// A range cannot be checked against a whole-file checksum: callers use
	// it for headers and page indexes, which they validate themselves.
	OpenLTXRange(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error)

	// LTXFiles lists the files of a level whose MinTXID is greater than
	// after, ordered by MinTXID then MaxTXID. Listing is incremental: a
	// backend does not re-read what comes before after.
	LTXFiles(ctx context.Context, level int, after ltx.TXID) (FileIterator, error)

	// DeleteLTXFiles removes the files. Files already gone are not an error.
	DeleteLTXFiles(ctx context.Context, files []*FileInfo) error
}

// FileIterator walks a listing. Next fetches further pages as needed with
// the context given to LTXFiles.
type FileIterator interface {
	Next() bool
	Item() *FileInfo
	Err() error
	Close() error
}

// ErrNotFound is returned (wrapped) when a file does not exist.
var ErrNotFound = errors.New("not found")

// CorruptError reports bytes that failed verification.
type CorruptError struct {
	Object string // the replica object, e.g. "s3://bucket/db/0000/….ltx"
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("corrupt replica object %s: %s; it was not used", e.Object, e.Reason)
}

// IsCorrupt reports whether err is or wraps a *CorruptError.
func IsCorrupt(err error) bool {
	var ce *CorruptError
	return errors.As(err, &ce)
}

// ValidateLevel returns an error unless level is between 0 and MaxLevel.
func ValidateLevel(level int) error {
	if level < 0 || level > MaxLevel {
		return fmt.Errorf("invalid LTX level %d: must be 0-%d", level, MaxLevel)
	}
	return nil
}

// ValidateRange returns an error unless 1 <= minTXID <= maxTXID.
func ValidateRange(minTXID, maxTXID ltx.TXID) error {
	if minTXID == 0 || minTXID > maxTXID {
		return fmt.Errorf("invalid TXID range %s-%s", minTXID, maxTXID)
	}
	return nil
}

// SliceIterator iterates over a sorted slice. Backends that list in one
// pass (the file backend) use it.
type SliceIterator struct {
	items []*FileInfo
	i     int
}

// NewSliceIterator returns an iterator over items, which must be sorted.
func NewSliceIterator(items []*FileInfo) *SliceIterator { return &SliceIterator{items: items, i: -1} }

// Next implements FileIterator.
func (it *SliceIterator) Next() bool {
	if it.i+1 >= len(it.items) {
		it.i = len(it.items)
		return false
	}
	it.i++
	return true
}

// Item implements FileIterator.
func (it *SliceIterator) Item() *FileInfo {
	if it.i < 0 || it.i >= len(it.items) {
		return nil
	}
	return it.items[it.i]
}

// Err implements FileIterator.
func (it *SliceIterator) Err() error { return nil }

// Close implements FileIterator.
func (it *SliceIterator) Close() error { return nil }

// EmptyChecker is implemented by backends that can tell with one request
// whether a replica holds any LTX file of its own: a new database's replica
// then costs one request at start instead of one listing per level. It may
// answer true for objects below the replica's path that are not its own
// (another replica nested below it); it never answers false for a replica
// that has files.
type EmptyChecker interface {
	HasFiles(ctx context.Context) (bool, error)
}

// ReplicaLister is implemented by backends that can find the replicas below
// a client: every sub-path that holds LTX files, relative to the client.
type ReplicaLister interface {
	ListReplicas(ctx context.Context) ([]string, error)
}

type retriesKey struct{}

// WithRetries returns a context under which a backend retries a failed
// request at most n times (fewer when it is configured so). Work that is
// retried later anyway (compaction, retention) takes few retries, so that
// an outage does not keep it, and the database's next sync behind it,
// waiting out a whole back-off.
func WithRetries(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, retriesKey{}, max(n, 0))
}

// Retries returns the bound WithRetries set on ctx, if any.
func Retries(ctx context.Context) (int, bool) {
	n, ok := ctx.Value(retriesKey{}).(int)
	return n, ok
}
