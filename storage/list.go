package storage

import (
	"errors"
	"fmt"
)

// MaxListedFiles is the most files of one level that walsync holds from one
// listing. The count of objects is the bucket's to choose, not ours: without
// a bound, stray or planted objects (150,000 empty L0 objects took `list` to
// 73 MB and `verify` to 187 MB) grow memory without limit. Compaction and
// retention keep a replica far below it (24 h of L1 at one file per 30 s is
// 2,880 files). A variable so that tests can lower it.
var MaxListedFiles = 100_000

// ErrTooManyFiles is wrapped by the error of a listing that holds more than
// MaxListedFiles files.
var ErrTooManyFiles = errors.New("too many LTX files")

// ScanLimit is the most names one listing of a level may walk, LTX files
// or not, before a backend gives up with ErrTooManyFiles: a consumer that
// streams a listing (Newest) holds nothing, but a bucket or directory of
// endless names would still never let it finish.
func ScanLimit() int { return 10 * MaxListedFiles }

// ListingTooLong is the error of a backend whose listing of a level walked
// more than ScanLimit names.
func ListingTooLong() error {
	return fmt.Errorf("%w: the level's listing holds more than %d names, the most walsync walks; remove the objects that are not this database's",
		ErrTooManyFiles, ScanLimit())
}

// tooManyFiles returns the error for a listing over MaxListedFiles.
func tooManyFiles() error {
	return fmt.Errorf("%w: more than %d in one listing of the replica, the most walsync holds; compaction and retention keep a replica far below this, so the files were left by a long failure or written by another program: remove the objects that are not this database's, or let `walsync watch` compact and prune level 0, which it does in batches",
		ErrTooManyFiles, MaxListedFiles)
}

// Collect drains it into a slice and closes it. It fails with
// ErrTooManyFiles past MaxListedFiles files.
func Collect(it FileIterator) ([]*FileInfo, error) {
	return NewBudget().Collect(it)
}

// Budget bounds the files that the listings of one replica hold together,
// MaxListedFiles in all: a replica listed level by level must not hold ten
// times what one level may.
type Budget struct{ left int }

// NewBudget returns a budget of MaxListedFiles files.
func NewBudget() *Budget { return &Budget{left: MaxListedFiles} }

// Collect drains it into a slice and closes it, failing with
// ErrTooManyFiles when it holds more files than are left in the budget.
func (b *Budget) Collect(it FileIterator) ([]*FileInfo, error) {
	files, more, err := CollectFirst(it, b.left)
	if err != nil {
		return nil, err
	}
	if more {
		return nil, tooManyFiles()
	}
	b.left -= len(files)
	return files, nil
}

// CollectFirst returns the first n files of it (n is capped at
// MaxListedFiles), whether more follow, and closes it. Callers that work
// through a level in order (compaction, L0 retention) take it a batch at a
// time, so a long level never stops them.
func CollectFirst(it FileIterator, n int) (files []*FileInfo, more bool, err error) {
	defer it.Close()
	n = min(n, MaxListedFiles)
	for it.Next() {
		if len(files) == n {
			more = true
			break
		}
		files = append(files, it.Item())
	}
	if err := it.Err(); err != nil {
		return nil, false, err
	}
	return files, more, it.Close()
}

// Newest returns the file of it with the highest MaxTXID (nil when it is
// empty) and closes it, holding one file at a time whatever the level's
// length.
func Newest(it FileIterator) (*FileInfo, error) {
	defer it.Close()
	var best *FileInfo
	for it.Next() {
		if fi := it.Item(); best == nil || fi.MaxTXID > best.MaxTXID {
			best = fi
		}
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	return best, it.Close()
}
