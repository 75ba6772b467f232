package restore_test

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
)

// reference answers the chain questions by brute force over the TXIDs
// 0..latest, position 0 being the empty database: a file of levels 0..8 is
// an edge from every p with MinTXID-1 <= p < MaxTXID to MaxTXID, and a file
// starting at TXID 1 (a level-9 snapshot too) an edge from 0.
type reference struct {
	files  []*storage.FileInfo
	latest ltx.TXID
	dist   []int // fewest files from the empty database; -1: unreachable
}

func applies(fi *storage.FileInfo, p ltx.TXID) bool {
	if p == 0 {
		return fi.MinTXID == 1
	}
	return fi.Level != storage.SnapshotLevel && fi.MinTXID-1 <= p && p < fi.MaxTXID
}

func newReference(files []*storage.FileInfo) *reference {
	r := &reference{files: files}
	for _, fi := range files {
		r.latest = max(r.latest, fi.MaxTXID)
	}
	r.dist = make([]int, r.latest+1)
	for i := range r.dist {
		r.dist[i] = -1
	}
	r.dist[0] = 0
	queue := []ltx.TXID{0}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, fi := range files {
			if applies(fi, p) && r.dist[fi.MaxTXID] < 0 {
				r.dist[fi.MaxTXID] = r.dist[p] + 1
				queue = append(queue, fi.MaxTXID)
			}
		}
	}
	return r
}

func (r *reference) reachable(x ltx.TXID) bool { return x >= 1 && x <= r.latest && r.dist[x] > 0 }

// head is where restores continue to: the newest TXID of every file but
// the level-9 snapshots, or the latest when there are only snapshots.
func (r *reference) head() ltx.TXID {
	var h ltx.TXID
	only := true
	for _, fi := range r.files {
		if fi.Level != storage.SnapshotLevel || fi.MinTXID != 1 {
			h, only = max(h, fi.MaxTXID), false
		}
	}
	if only {
		return r.latest
	}
	return h
}

// leads reports, for every position, whether files of levels 0..8 lead
// from it to head (or it is at or past head), backwards from head.
func (r *reference) leads(head ltx.TXID) []bool {
	lead := make([]bool, r.latest+1)
	for p := r.latest; ; p-- {
		lead[p] = p >= head
		for _, fi := range r.files {
			if !lead[p] && fi.Level != storage.SnapshotLevel && fi.MinTXID-1 <= p && p < fi.MaxTXID && lead[fi.MaxTXID] {
				lead[p] = true
			}
		}
		if p == 0 {
			return lead
		}
	}
}

// furthest reports whether no file applicable at cur (as a step, or as the
// base when cur is 0) reaches further than fi without passing target, or as
// far from a higher level.
func furthestStep(files []*storage.FileInfo, cur, target ltx.TXID, fi *storage.FileInfo) bool {
	for _, o := range files {
		if !applies(o, cur) || o.MaxTXID > target || (cur == 0 && o.MinTXID != 1) {
			continue
		}
		if o.MaxTXID > fi.MaxTXID || (o.MaxTXID == fi.MaxTXID && o.Level > fi.Level) {
			return false
		}
	}
	return true
}

// checkChain checks every answer of restore.Chain on files against the
// reference.
func checkChain(t *testing.T, files []*storage.FileInfo, rng *rand.Rand) {
	t.Helper()
	ref := newReference(files)
	c := restore.NewChain(files)
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("%s\nlisting: %s", fmt.Sprintf(format, a...), describe(files))
	}
	listed := map[*storage.FileInfo]bool{}
	for _, fi := range files {
		listed[fi] = true
	}
	if c.Latest() != ref.latest {
		fail("Latest %d, want %d", c.Latest(), ref.latest)
	}

	var want []ltx.TXID
	for x := ltx.TXID(1); x <= ref.latest; x++ {
		if ref.reachable(x) {
			want = append(want, x)
		}
	}
	if got := c.Reachable(); !slices.Equal(got, want) {
		fail("Reachable %v, want %v", got, want)
	}

	// Every target: a valid plan of the fewest files ending exactly there,
	// each step the furthest, or an error naming it.
	for target := ltx.TXID(0); target <= ref.latest+1; target++ {
		plan, err := c.Plan(target)
		end := target
		if target == 0 {
			end = ref.latest
		}
		if !ref.reachable(end) {
			if err == nil {
				fail("Plan(%d) = %s, but TXID %d is unreachable", target, describe(plan), end)
			}
			if target != 0 && strings.Contains(err.Error(), "cannot be reached") && !strings.Contains(err.Error(), target.String()) {
				fail("Plan(%d): the error does not name the target: %v", target, err)
			}
			continue
		}
		if err != nil {
			fail("Plan(%d): %v; want a plan of %d files", target, err, ref.dist[end])
		}
		if len(plan) != ref.dist[end] {
			fail("Plan(%d) = %s: %d files, the fewest is %d", target, describe(plan), len(plan), ref.dist[end])
		}
		var cur ltx.TXID
		for i, fi := range plan {
			if !listed[fi] || !applies(fi, cur) || (i == 0) != (cur == 0) || fi.MaxTXID > end {
				fail("Plan(%d) = %s: file %d, %s, does not continue from TXID %d", target, describe(plan), i, fi, cur)
			}
			if !furthestStep(files, cur, end, fi) {
				fail("Plan(%d) = %s: file %d, %s, is not the furthest step from TXID %d", target, describe(plan), i, fi, cur)
			}
			cur = fi.MaxTXID
		}
		if cur != end {
			fail("Plan(%d) = %s ends at TXID %d", target, describe(plan), cur)
		}
	}

	// The window.
	head := ref.head()
	lead := ref.leads(head)
	w := c.Window()
	if w.Latest != ref.latest || w.Head != head {
		fail("Window latest %d head %d, want %d %d", w.Latest, w.Head, ref.latest, head)
	}
	var earliest *storage.FileInfo
	for _, fi := range files {
		if fi.MinTXID == 1 && lead[fi.MaxTXID] && (earliest == nil || fi.MaxTXID < earliest.MaxTXID) {
			earliest = fi
		}
	}
	if (earliest != nil) != ref.reachable(ref.latest) {
		fail("the reference's earliest base %v, but the latest TXID reachable: %v", earliest, ref.reachable(ref.latest))
	}
	switch {
	case earliest == nil && w.Earliest != nil:
		fail("Window.Earliest %s, want none", w.Earliest)
	case earliest != nil && (w.Earliest == nil || w.Earliest.MaxTXID != earliest.MaxTXID || w.Earliest.MinTXID != 1 || !listed[w.Earliest]):
		fail("Window.Earliest %v, want one ending at %d", w.Earliest, earliest.MaxTXID)
	}
	var from, every ltx.TXID
	if earliest != nil {
		ends := make([]ltx.TXID, 0, len(files))
		for _, fi := range files {
			ends = append(ends, fi.MaxTXID)
		}
		slices.Sort(ends)
		from = ref.latest
		for _, e := range slices.Backward(slices.Compact(ends)) {
			if e >= from {
				continue
			}
			if !ref.reachable(e) || !lead[e] {
				break
			}
			from = e
		}
		every = ref.latest
		for every > 1 && ref.reachable(every-1) {
			every--
		}
		every = max(every, from)
	}
	if w.From != from || w.EveryFrom != every {
		fail("Window from %d every %d, want %d %d", w.From, w.EveryFrom, from, every)
	}
	if w.Earliest != nil && !(w.Earliest.MaxTXID <= w.From && w.From <= w.EveryFrom && w.EveryFrom <= w.Latest) {
		fail("Window out of order: %+v", w)
	}

	// Extend from a few positions: as far as files of levels 0..8 lead,
	// and the first file past that.
	for range 3 {
		p := ltx.TXID(rng.IntN(int(ref.latest) + 1))
		steps, end, beyond := c.Extend(p)
		cur := p
		for _, fi := range steps {
			if !listed[fi] || fi.Level == storage.SnapshotLevel || !applies(fi, cur) {
				fail("Extend(%d) = %s does not continue from %d", p, describe(steps), cur)
			}
			cur = fi.MaxTXID
		}
		seen := map[ltx.TXID]bool{p: true}
		far := p
		for q := p; q <= ref.latest; q++ {
			if !seen[q] {
				continue
			}
			far = q
			for _, fi := range files {
				if fi.Level != storage.SnapshotLevel && applies(fi, q) {
					seen[fi.MaxTXID] = true
				}
			}
		}
		if cur != end || end != far {
			fail("Extend(%d) = %s stops at %d, want %d", p, describe(steps), end, far)
		}
		var first *storage.FileInfo
		for _, fi := range files {
			if fi.Level != storage.SnapshotLevel && fi.MaxTXID > end && (first == nil || fi.MinTXID < first.MinTXID) {
				first = fi
			}
		}
		if (first == nil) != (beyond == nil) || (first != nil && (beyond.MinTXID != first.MinTXID || beyond.MaxTXID <= end)) {
			fail("Extend(%d): beyond %v, want one starting like %v", p, beyond, first)
		}
	}
}

func describe(files []*storage.FileInfo) string {
	var s []string
	for _, fi := range files {
		s = append(s, fmt.Sprintf("L%d:%d-%d", fi.Level, fi.MinTXID, fi.MaxTXID))
	}
	return strings.Join(s, " ")
}

// tile splits TXIDs 1..n into files of level, each of 1..maxLen TXIDs.
func tile(rng *rand.Rand, level int, n ltx.TXID, maxLen int) []*storage.FileInfo {
	var out []*storage.FileInfo
	for lo := ltx.TXID(1); lo <= n; {
		hi := min(n, lo+ltx.TXID(rng.IntN(maxLen)))
		out = append(out, &storage.FileInfo{Level: level, MinTXID: lo, MaxTXID: hi})
		lo = hi + 1
	}
	return out
}

// randomListing returns a replica's listing as walsync or Litestream leave
// it, then damaged: each level tiles a prefix of the history (L0 a file
// per sync, the higher levels coarser), retention deleted a prefix of each
// level, some files are missing from the middle (gaps), snapshots sit at
// random TXIDs (some ahead of every other file), and stray files overlap
// others, some as level-9 files not starting at TXID 1. One listing in
// five is files of random levels and ranges (one of those in five, only
// snapshots).
func randomListing(rng *rand.Rand) []*storage.FileInfo {
	n := ltx.TXID(1 + rng.IntN(40))
	rnd := func(lo, hi ltx.TXID) ltx.TXID { return lo + ltx.TXID(rng.IntN(int(hi-lo)+1)) }
	var files []*storage.FileInfo
	if rng.IntN(5) == 0 {
		onlySnapshots := rng.IntN(5) == 0
		for range 1 + rng.IntN(25) {
			level := rng.IntN(storage.SnapshotLevel + 1)
			if onlySnapshots {
				level = storage.SnapshotLevel
			}
			lo := rnd(1, n)
			if level == storage.SnapshotLevel && (onlySnapshots || rng.IntN(3) > 0) {
				lo = 1
			}
			files = append(files, &storage.FileInfo{Level: level, MinTXID: lo, MaxTXID: rnd(lo, min(n, lo+8))})
		}
		return files
	}
	for level, maxLen := range []int{1, 4, 10, 25} {
		upto := n
		if level > 0 {
			upto = rnd(0, n) // compactions lag behind
		} else if rng.IntN(4) == 0 {
			upto = rnd(0, n) // a snapshot ahead of every sync
		}
		if upto == 0 || (level > 1 && rng.IntN(3) == 0) {
			continue
		}
		lf := tile(rng, level, upto, maxLen)
		if rng.IntN(2) == 0 {
			lf = lf[rng.IntN(len(lf)):] // retention: a prefix
		}
		for rng.IntN(4) == 0 && len(lf) > 2 {
			i := 1 + rng.IntN(len(lf)-2) // a gap
			lf = slices.Delete(lf, i, i+1)
		}
		files = append(files, lf...)
	}
	for range rng.IntN(4) {
		files = append(files, &storage.FileInfo{Level: storage.SnapshotLevel, MinTXID: 1, MaxTXID: rnd(1, n)})
	}
	for range rng.IntN(3) {
		lo := rnd(1, n)
		level := rng.IntN(storage.SnapshotLevel + 1)
		if level == storage.SnapshotLevel {
			lo = max(lo, 2)
		}
		files = append(files, &storage.FileInfo{Level: level, MinTXID: lo, MaxTXID: rnd(lo, n+2)})
	}
	if len(files) == 0 {
		files = append(files, &storage.FileInfo{Level: storage.SnapshotLevel, MinTXID: 1, MaxTXID: n})
	}
	// Duplicate ranges across levels are legitimate (L0 5-5 and L1 5-5).
	slices.SortFunc(files, func(a, b *storage.FileInfo) int {
		return cmp.Or(cmp.Compare(a.MaxTXID, b.MaxTXID), cmp.Compare(a.MinTXID, b.MinTXID), cmp.Compare(a.Level, b.Level))
	})
	files = slices.CompactFunc(files, func(a, b *storage.FileInfo) bool {
		return a.Level == b.Level && a.MinTXID == b.MinTXID && a.MaxTXID == b.MaxTXID
	})
	rng.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	return files
}

// TestChainProperties checks the chain rule on thousands of random
// listings against the brute-force reference: which TXIDs are reachable,
// that every plan is a contiguous chain of the fewest files ending exactly
// at its target, each step the furthest, the window, and Extend.
func TestChainProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 1))
	for range 4000 {
		checkChain(t, randomListing(rng), rng)
	}
}

func fi(level int, minTXID, maxTXID ltx.TXID) *storage.FileInfo {
	return &storage.FileInfo{Level: level, MinTXID: minTXID, MaxTXID: maxTXID}
}

// TestChainCases: the cases where the rule's copies used to disagree, and
// the choice between overlapping files.
func TestChainCases(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    []*storage.FileInfo
		latest   string // the latest plan, or "error: ..." (a substring)
		earliest ltx.TXID
		from     ltx.TXID
	}{
		// compact's window and verify agreed the latest state (TXID 12,
		// held by an L9 file restores never use) is unreachable; restore
		// planned to TXID 10 and list gave a window.
		{"stray L9 file holds the latest TXIDs",
			[]*storage.FileInfo{fi(9, 1, 5), fi(0, 6, 10), fi(9, 8, 12)},
			"error: the latest TXID 000000000000000c cannot be reached", 0, 0},
		// Only snapshots: restores continue from none but the newest (as
		// compact's window had it; restore's Earliest said the oldest).
		{"only snapshots", []*storage.FileInfo{fi(9, 1, 5), fi(9, 1, 10)}, "L9:1-10", 10, 10},
		// A snapshot newer than every other file does not cut the window
		// (as verify and list had it; compact's window started at it).
		{"snapshot ahead of L0", []*storage.FileInfo{fi(9, 1, 3), fi(9, 1, 12), fi(0, 1, 1), fi(0, 2, 10)}, "L9:1-12", 1, 1},
		// An L0 file no plan reaches (L0 retention stopped inside L1 9-12)
		// ends the strict window; restores still continue from the
		// snapshot.
		{"L0 retention inside an L1 file", []*storage.FileInfo{fi(9, 1, 4), fi(1, 1, 8), fi(1, 9, 12), fi(0, 11, 11), fi(0, 12, 12), fi(0, 13, 13)},
			"L1:1-8 L1:9-12 L0:13-13", 4, 12},
		// Overlapping files: the furthest, then the higher level.
		{"overlaps", []*storage.FileInfo{fi(0, 1, 1), fi(0, 2, 2), fi(1, 1, 2), fi(0, 3, 3), fi(2, 2, 3), fi(1, 3, 3)},
			"L1:1-2 L2:2-3", 1, 1},
		{"gap", []*storage.FileInfo{fi(9, 1, 5), fi(0, 6, 6), fi(0, 8, 8)},
			"error: the replica has a gap: its files reach TXID 0000000000000006 contiguously, but L0/0000000000000008-0000000000000008.ltx starts", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := restore.NewChain(tc.files)
			plan, err := c.Plan(0)
			got := describe(plan)
			if err != nil {
				got = "error: " + err.Error()
			}
			if !strings.HasPrefix(got, tc.latest) {
				t.Errorf("latest plan %q, want %q", got, tc.latest)
			}
			w := c.Window()
			var earliest ltx.TXID
			if w.Earliest != nil {
				earliest = w.Earliest.MaxTXID
			}
			if earliest != tc.earliest || w.From != tc.from {
				t.Errorf("window earliest %d from %d, want %d %d", earliest, w.From, tc.earliest, tc.from)
			}
			checkChain(t, tc.files, rand.New(rand.NewPCG(1, 1)))
		})
	}
	if _, err := restore.NewChain(nil).Plan(0); !errors.Is(err, restore.ErrNoReplica) {
		t.Fatalf("an empty listing: %v", err)
	}
}
