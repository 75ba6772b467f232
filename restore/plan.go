// Package restore rebuilds a database from its replica: plan (which files
// reach the target) and apply (stream them into a temp file, verify, fsync,
// rename).
package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
)

// ErrNoReplica means the replica holds no files at all.
var ErrNoReplica = errors.New("the replica holds no LTX files")

// Target is the point to restore to: the latest state (zero value), a TXID,
// or the last sync at or before a time.
type Target struct {
	TXID ltx.TXID
	Time time.Time
}

func (t Target) String() string {
	switch {
	case t.TXID != 0:
		return "TXID " + t.TXID.String()
	case !t.Time.IsZero():
		return t.Time.UTC().Format(time.RFC3339Nano)
	}
	return "the latest state"
}

// ListAll returns every file of every level, sorted by level then TXIDs;
// at most storage.MaxListedFiles in all (storage.ErrTooManyFiles).
func ListAll(ctx context.Context, c storage.Client) ([]*storage.FileInfo, error) {
	var all []*storage.FileInfo
	budget := storage.NewBudget()
	for level := 0; level <= storage.MaxLevel; level++ {
		it, err := c.LTXFiles(ctx, level, 0)
		if err != nil {
			return nil, err
		}
		files, err := budget.Collect(it)
		if err != nil {
			return nil, fmt.Errorf("list level %d of %s: %w", level, c, err)
		}
		all = append(all, files...)
	}
	return all, nil
}

// Plan lists the replica and returns the files to apply, in order, to reach
// target, by the rule of Chain.Plan (a time resolves to the newest TXID
// synced at or before it). It fails, naming the gap, when the target cannot
// be reached exactly.
func Plan(ctx context.Context, c storage.Client, target Target) ([]*storage.FileInfo, error) {
	all, err := ListAll(ctx, c)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, ErrNoReplica
	}
	if !target.Time.IsZero() {
		txid, err := txidAtTime(ctx, c, all, target.Time)
		if err != nil {
			return nil, err
		}
		target = Target{TXID: txid}
	}
	return NewChain(all).Plan(target.TXID)
}

// txidAtTime returns the highest TXID whose sync time (the LTX header's
// timestamp) is at or before t. Timestamps grow with TXIDs, so it binary
// searches the files ordered by MaxTXID, reading only their headers.
func txidAtTime(ctx context.Context, c storage.Client, all []*storage.FileInfo, t time.Time) (ltx.TXID, error) {
	files := slices.Clone(all)
	slices.SortFunc(files, func(a, b *storage.FileInfo) int {
		if v := cmp.Compare(a.MaxTXID, b.MaxTXID); v != 0 {
			return v
		}
		return cmp.Compare(a.Level, b.Level)
	})
	var searchErr error
	tms := t.UnixMilli()
	cache := map[*storage.FileInfo]int64{}
	n := sort.Search(len(files), func(i int) bool {
		if searchErr != nil {
			return true
		}
		ts, ok := cache[files[i]]
		if !ok {
			hdr, err := storage.ReadHeader(ctx, c, files[i])
			if err != nil {
				searchErr = err
				return true
			}
			ts = hdr.Timestamp
			cache[files[i]] = ts
		}
		return ts > tms
	})
	if searchErr != nil {
		return 0, searchErr
	}
	if n == 0 {
		first := time.UnixMilli(cache[files[0]]).UTC()
		return 0, fmt.Errorf("nothing to restore at %s: the replica's oldest sync is at %s", t.UTC().Format(time.RFC3339), first.Format(time.RFC3339Nano))
	}
	return files[n-1].MaxTXID, nil
}
