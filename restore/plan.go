// Package restore rebuilds a database from its replica: plan (which files
// reach the target) and apply (stream them into a temp file, verify, fsync,
// rename).
package restore

import (
	"cmp"
	"container/heap"
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

// ListAll returns every file of every level, sorted by level then TXIDs.
func ListAll(ctx context.Context, c storage.Client) ([]*storage.FileInfo, error) {
	var all []*storage.FileInfo
	for level := 0; level <= storage.MaxLevel; level++ {
		it, err := c.LTXFiles(ctx, level, 0)
		if err != nil {
			return nil, err
		}
		files, err := storage.Collect(it)
		if err != nil {
			return nil, fmt.Errorf("list level %d of %s: %w", level, c, err)
		}
		all = append(all, files...)
	}
	return all, nil
}

// Plan returns the files to apply, in order, to reach target: the newest
// snapshot at or before it, then the files that extend the contiguous TXID
// range furthest without passing it. It fails, naming the gap, when the
// target cannot be reached exactly.
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
	return planTXID(all, target.TXID)
}

// planTXID plans to txid (0: the latest) from the best snapshot: any file
// starting at TXID 1, preferring the furthest one not past the target, then
// level 9.
func planTXID(all []*storage.FileInfo, txid ltx.TXID) ([]*storage.FileInfo, error) {
	var snap *storage.FileInfo
	for _, fi := range all {
		if fi.MinTXID != 1 || (txid != 0 && fi.MaxTXID > txid) {
			continue
		}
		if snap == nil || fi.MaxTXID > snap.MaxTXID || (fi.MaxTXID == snap.MaxTXID && fi.Level > snap.Level) {
			snap = fi
		}
	}
	if snap == nil {
		return nil, errors.New("the replica has no snapshot (no file starting at TXID 1) at or before the target")
	}
	return planFrom(all, snap, txid)
}

// planFrom extends the plan from snap with the files that reach furthest
// without passing txid (0: the latest), and fails naming the gap when the
// target cannot be reached exactly.
func planFrom(all []*storage.FileInfo, snap *storage.FileInfo, txid ltx.TXID) ([]*storage.FileInfo, error) {
	// Files by MinTXID: as the plan advances, more become eligible; a heap
	// of the eligible ones by MaxTXID gives the furthest step in O(log n).
	files := make([]*storage.FileInfo, 0, len(all))
	for _, fi := range all {
		if fi.Level != storage.SnapshotLevel && (txid == 0 || fi.MaxTXID <= txid) {
			files = append(files, fi)
		}
	}
	slices.SortFunc(files, func(a, b *storage.FileInfo) int { return cmp.Compare(a.MinTXID, b.MinTXID) })
	plan := []*storage.FileInfo{snap}
	cur := snap.MaxTXID
	h := &furthest{}
	i := 0
	for txid == 0 || cur < txid {
		for ; i < len(files) && files[i].MinTXID <= cur+1; i++ {
			heap.Push(h, files[i])
		}
		for h.Len() > 0 && (*h)[0].MaxTXID <= cur {
			heap.Pop(h)
		}
		if h.Len() == 0 {
			break
		}
		next := heap.Pop(h).(*storage.FileInfo)
		plan = append(plan, next)
		cur = next.MaxTXID
	}
	if txid != 0 && cur != txid {
		return nil, fmt.Errorf("TXID %s cannot be reached: the replica's files reach TXID %s contiguously, and no file continues from there without passing the target", txid, cur)
	}
	if txid == 0 {
		for _, fi := range all {
			if fi.MinTXID > cur+1 {
				return nil, fmt.Errorf("the replica has a gap: its files reach TXID %s contiguously, but %s starts at TXID %s; restore to TXID %s explicitly to accept the older state", cur, fi, fi.MinTXID, cur)
			}
		}
	}
	return plan, nil
}

// furthest is a max-heap of files by MaxTXID, then level (a compacted file
// beats an L0 file of the same reach).
type furthest []*storage.FileInfo

func (h furthest) Len() int { return len(h) }
func (h furthest) Less(i, j int) bool {
	if h[i].MaxTXID != h[j].MaxTXID {
		return h[i].MaxTXID > h[j].MaxTXID
	}
	return h[i].Level > h[j].Level
}
func (h furthest) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *furthest) Push(x any)   { *h = append(*h, x.(*storage.FileInfo)) }
func (h *furthest) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
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
