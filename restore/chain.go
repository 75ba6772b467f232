package restore

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
)

// Chain is the one rule for which files of a replica reach a TXID: Plan
// (restore), Describe (list), compact's retention and verify all ask it, over
// one listing, so they cannot disagree.
//
// The rule (like Litestream v0.5's CalcRestorePlan):
//
//   - A plan starts from a base: a file starting at TXID 1, of any level (a
//     level-9 snapshot, or the first file of a level nothing was deleted
//     from). It is the furthest one that does not pass the target; at equal
//     reach, the higher level.
//   - It continues with files of levels 0..8. At position cur (the TXID the
//     database is at) a file applies when MinTXID <= cur+1 <= MaxTXID: it
//     may hold TXIDs already applied (an L1 compaction after L0 files), which
//     is harmless, as LTX files hold each page's image at MaxTXID. Each step
//     takes the file that reaches furthest without passing the target; at
//     equal reach the higher level (one compacted file, not the L0 files it
//     replaced), then the shorter file.
//   - Level-9 files that do not start at TXID 1 are never applied, but they
//     hold TXIDs of the replica (they count for Latest).
//
// A TXID is reachable when such a chain ends exactly at it. Taking the
// furthest step finds a chain whenever one exists, and one of the fewest
// files: after k steps it is at least as far as any other chain after k.
type Chain struct {
	bases  []*storage.FileInfo // files starting at TXID 1, by MaxTXID then level
	lower  []*storage.FileInfo // files of levels 0..8, by MinTXID then MaxTXID
	all    []*storage.FileInfo // every file, by MaxTXID, newest first
	latest ltx.TXID
	head   ltx.TXID // see Window.Head
}

// NewChain indexes a listing of one replica's files (every level, in any
// order); it does not modify files. A file starting at TXID 0, which no
// listing returns, is ignored.
func NewChain(files []*storage.FileInfo) *Chain {
	c := &Chain{}
	onlySnapshots := true
	for _, fi := range files {
		if fi.MinTXID == 0 {
			continue
		}
		c.all = append(c.all, fi)
		c.latest = max(c.latest, fi.MaxTXID)
		if fi.MinTXID == 1 {
			c.bases = append(c.bases, fi)
		}
		if fi.Level != storage.SnapshotLevel {
			c.lower = append(c.lower, fi)
		}
		if fi.Level != storage.SnapshotLevel || fi.MinTXID != 1 {
			onlySnapshots = false
			c.head = max(c.head, fi.MaxTXID)
		}
	}
	if onlySnapshots {
		c.head = c.latest // the newest snapshot is all there is to continue to
	}
	slices.SortFunc(c.bases, func(a, b *storage.FileInfo) int {
		return cmp.Or(cmp.Compare(a.MaxTXID, b.MaxTXID), cmp.Compare(a.Level, b.Level))
	})
	slices.SortFunc(c.lower, func(a, b *storage.FileInfo) int {
		return cmp.Or(cmp.Compare(a.MinTXID, b.MinTXID), cmp.Compare(a.MaxTXID, b.MaxTXID), cmp.Compare(a.Level, b.Level))
	})
	slices.SortFunc(c.all, func(a, b *storage.FileInfo) int { return cmp.Compare(b.MaxTXID, a.MaxTXID) })
	return c
}

// Latest returns the highest TXID any listed file holds; 0 for no files.
func (c *Chain) Latest() ltx.TXID { return c.latest }

// Base returns the file a plan to target (0: the latest) starts from: the
// furthest file starting at TXID 1 that does not pass target, the higher
// level at equal reach. Nil when there is none.
func (c *Chain) Base(target ltx.TXID) *storage.FileInfo {
	i := len(c.bases)
	if target != 0 {
		i = sort.Search(len(c.bases), func(i int) bool { return c.bases[i].MaxTXID > target })
	}
	if i == 0 {
		return nil
	}
	return c.bases[i-1]
}

// Plan returns the files that bring an empty database to target (0: the
// latest TXID), in apply order: Base(target), then the steps of the rule.
// It fails, naming where the files stop, when target cannot be reached
// exactly; the latest state is never replaced silently by an older one.
func (c *Chain) Plan(target ltx.TXID) ([]*storage.FileInfo, error) {
	if c.latest == 0 {
		return nil, ErrNoReplica
	}
	latest := target == 0
	if latest {
		target = c.latest
	}
	base := c.Base(target)
	if base == nil {
		return nil, errors.New("the replica has no snapshot (no file starting at TXID 1) at or before the target")
	}
	steps, end := c.extend(base.MaxTXID, target)
	switch {
	case end == target:
		return append([]*storage.FileInfo{base}, steps...), nil
	case !latest:
		return nil, fmt.Errorf("TXID %s cannot be reached: the replica's files reach TXID %s contiguously, and no file continues from there without passing the target", target, end)
	}
	if next := c.beyond(end); next != nil {
		return nil, fmt.Errorf("the replica has a gap: its files reach TXID %s contiguously, but %s starts at TXID %s; restore to TXID %s explicitly to accept the older state", end, next, next.MinTXID, end)
	}
	// Only a level-9 file restores never use holds the later TXIDs.
	return nil, fmt.Errorf("the latest TXID %s cannot be reached: the replica's files reach TXID %s contiguously, and %s, a snapshot that does not start at TXID 1, holds the TXIDs after it; restore to TXID %s explicitly to accept the older state", target, end, c.all[0], end)
}

// Extend follows the rule's steps from position from with no target: the
// files that continue it, in apply order, the TXID where they stop, and the
// first file of levels 0..8 past that point (the lowest MinTXID among those
// holding later TXIDs; nil when there is none). beyond.MinTXID > end+1 is a
// gap.
func (c *Chain) Extend(from ltx.TXID) (steps []*storage.FileInfo, end ltx.TXID, beyond *storage.FileInfo) {
	steps, end = c.extend(from, 0)
	return steps, end, c.beyond(end)
}

// extend takes the rule's steps from position cur without passing target
// (0: no bound). Files by MinTXID: as the position advances, more become
// applicable; a heap of those by reach gives the furthest in O(log n).
func (c *Chain) extend(cur, target ltx.TXID) ([]*storage.FileInfo, ltx.TXID) {
	var steps []*storage.FileInfo
	h := &furthest{}
	i := 0
	for target == 0 || cur < target {
		for ; i < len(c.lower) && c.lower[i].MinTXID <= cur+1; i++ {
			if target == 0 || c.lower[i].MaxTXID <= target {
				heap.Push(h, c.lower[i])
			}
		}
		for h.Len() > 0 && (*h)[0].MaxTXID <= cur {
			heap.Pop(h)
		}
		if h.Len() == 0 {
			break
		}
		next := heap.Pop(h).(*storage.FileInfo)
		steps = append(steps, next)
		cur = next.MaxTXID
	}
	return steps, cur
}

// beyond returns the file of levels 0..8 with the lowest MinTXID among
// those holding a TXID after end.
func (c *Chain) beyond(end ltx.TXID) *storage.FileInfo {
	for _, fi := range c.lower {
		if fi.MaxTXID > end {
			return fi
		}
	}
	return nil
}

// furthest is a max-heap of files by MaxTXID, then level, then MinTXID
// (the file re-applying the fewest TXIDs).
type furthest []*storage.FileInfo

func (h furthest) Len() int { return len(h) }
func (h furthest) Less(i, j int) bool {
	a, b := h[i], h[j]
	return cmp.Or(cmp.Compare(a.MaxTXID, b.MaxTXID), cmp.Compare(a.Level, b.Level), cmp.Compare(a.MinTXID, b.MinTXID)) > 0
}
func (h furthest) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *furthest) Push(x any)   { *h = append(*h, x.(*storage.FileInfo)) }
func (h *furthest) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Reachable returns, ascending, every TXID a plan reaches exactly. A file
// end is reachable when the file is a base, or is of levels 0..8 and applies
// at a reachable position below its end; files by MaxTXID, every position
// below the current file's end is settled before it.
func (c *Chain) Reachable() []ltx.TXID {
	var r []ltx.TXID
	for _, fi := range slices.Backward(c.all) {
		ok := fi.MinTXID == 1
		if !ok && fi.Level != storage.SnapshotLevel {
			// A reachable p with MinTXID-1 <= p < MaxTXID.
			i := sort.Search(len(r), func(i int) bool { return r[i] >= fi.MinTXID-1 })
			ok = i < len(r) && r[i] < fi.MaxTXID
		}
		if ok && (len(r) == 0 || r[len(r)-1] != fi.MaxTXID) {
			r = append(r, fi.MaxTXID)
		}
	}
	return r
}

// Window is what a listing restores; see Chain.Window.
type Window struct {
	// Latest is the highest TXID any file holds.
	Latest ltx.TXID
	// Head is where restores continue to: the highest TXID of every file
	// but the snapshots, the level-9 files starting at TXID 1 (levels 0..8
	// hold the history sync by sync; a newer snapshot is a point of its
	// own), or Latest when the replica holds only snapshots.
	Head ltx.TXID
	// Earliest is the oldest file starting at TXID 1 (a snapshot, or the
	// first file of a level) from which restores continue, through files
	// of levels 0..8, to Head, or that is at or past Head: the start of
	// the restorable window. Snapshots older than it restore on their own,
	// to their TXID, but restores do not continue from them to Head. Nil
	// exactly when the latest state cannot be restored.
	Earliest *storage.FileInfo
	// From is the oldest TXID from which every TXID at which a file ends,
	// up to Latest, restores, and from which restores continue to Head; so
	// every time from its sync on restores, to the newest sync at or before
	// it that a file ends at. Earliest.MaxTXID <= From; they differ when a
	// file ends, between them, at a TXID no plan reaches (an L0 file after
	// an L0 retention that stopped inside an L1 file, as Litestream's may).
	// 0 when the latest state cannot be restored.
	From ltx.TXID
	// EveryFrom is the oldest TXID from which every TXID (every sync) up to
	// Latest restores; From <= EveryFrom. 0 with From.
	EveryFrom ltx.TXID
}

// Window computes what the listing restores. Restores continue from
// position p when files of levels 0..8 lead from p to Head; the positions
// that do are one range [g, Head] (every file used ends inside it), and a
// base continues exactly when its MaxTXID >= g. Starting later only makes
// more files applicable, so the bases that continue are the newest ones.
func (c *Chain) Window() Window {
	w := Window{Latest: c.latest, Head: c.head}
	// g: files by MaxTXID, newest first; one that ends at or after g
	// extends the range down to its MinTXID-1.
	g := c.head
	for _, fi := range c.all {
		if fi.Level != storage.SnapshotLevel && fi.MaxTXID >= g {
			g = min(g, fi.MinTXID-1)
		}
	}
	i := sort.Search(len(c.bases), func(i int) bool { return c.bases[i].MaxTXID >= g })
	if i == len(c.bases) {
		return w
	}
	w.Earliest = c.bases[i]
	r := c.Reachable()
	// From: walk the file ends down from Latest while they are reachable
	// and restores continue from them.
	w.From = c.latest
	for _, fi := range c.all {
		if fi.MaxTXID >= w.From {
			continue
		}
		if _, ok := slices.BinarySearch(r, fi.MaxTXID); !ok || fi.MaxTXID < g {
			break
		}
		w.From = fi.MaxTXID
	}
	// EveryFrom: the run of consecutive reachable TXIDs ending at Latest.
	j := len(r) - 1
	for j > 0 && r[j-1] == r[j]-1 {
		j--
	}
	w.EveryFrom = max(r[j], w.From)
	return w
}
