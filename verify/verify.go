// Package verify checks a replica without trusting it: every object of every
// level is read in full and verified (SHA-256 when the object carries one,
// LTX checksums, the header's TXIDs against the name), the levels are checked
// for gaps and overlaps, and the latest state is checked to be restorable
// with the restore planner. Optionally the latest state is restored into a
// temp file and checked with PRAGMA integrity_check.
//
// # What a healthy replica looks like
//
// Within one of levels 0..8, walsync and Litestream v0.5 write files whose
// TXID ranges tile: each file starts right after the previous one ends
// (Litestream's own Replica.ValidateLevel checks the same). Nothing ever
// writes two files of one level that share a TXID, so an overlap is always a
// problem. A level may start anywhere: retention deletes the oldest files of
// a level, never one in the middle (compact's L0, time-based and GFS
// retention, and Litestream's EnforceL0RetentionByTime and
// EnforceRetentionByTXID all delete a prefix of each level). So a hole in the
// middle of a level is a problem, except where it can be a retention
// deletion seen half done (S3 deletes a batch in no set order, and a batch
// may fail part-way), and costs no restore point retention would keep:
//
//   - a hole in level 0 that level 1 reaches past: L0 retention deletes
//     exactly the L0 files that level 1 covers (what is lost is per-sync
//     granularity that L0 retention gives up anyway);
//   - a hole in any level that ends at or before the oldest snapshot's TXID:
//     no restore at or after the oldest snapshot can use those files.
//
// The levels are checked on a listing taken after the objects were read, so
// a retention pass that ran meanwhile is seen finished, and an object
// deleted between a listing and its reading is not a problem.
//
// Across levels, restore.Plan must reach the latest TXID. Every snapshot is
// a restore point on its own (a plan to its TXID is the snapshot alone), so
// its own verification is what makes it reachable. Whether restores also
// continue from a snapshot to the latest state depends on the retention
// policy: time-based retention (Litestream's) keeps every retained snapshot
// continuing, GFS retention keeps older snapshots as standalone points. The
// report gives the restorable window's first TXID and the snapshots older
// than it (Isolated); Options.StrictSnapshots makes each of those a problem.
package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
)

// Kinds of problems.
const (
	KindCorrupt     = "corrupt"     // the object's bytes fail verification
	KindUnreadable  = "unreadable"  // the object could not be read (not a verification failure)
	KindMissing     = "missing"     // the object is listed but cannot be found
	KindGap         = "gap"         // a level has no file for some TXIDs between two of its files
	KindOverlap     = "overlap"     // two files of one level share TXIDs
	KindInvalid     = "invalid"     // an object that does not belong where it is (a snapshot not starting at TXID 1)
	KindUnreachable = "unreachable" // a restore cannot reach the latest TXID, or cannot continue from a snapshot
	KindIntegrity   = "integrity"   // the restored database failed PRAGMA integrity_check
	KindRestore     = "restore"     // the test restore failed for another reason
	KindPageSize    = "page-size"   // a restore chain crosses a page-size change with no snapshot to start from
)

// DefaultConcurrency is how many objects are verified at once.
const DefaultConcurrency = 4

// maxListRounds bounds how often the replica is listed again when objects
// disappear while being verified (retention running concurrently).
const maxListRounds = 3

// Options configure Replica.
type Options struct {
	// Name is the database's name in the report; empty: the client's URL.
	Name string
	// Restore restores the latest state into a temp file, runs PRAGMA
	// integrity_check on it and removes it.
	Restore bool
	// TempDir holds the test restore; empty: os.TempDir().
	TempDir string
	// StrictSnapshots makes every snapshot that restores cannot continue
	// from, to the latest state, a problem. Time-based snapshot retention
	// (Litestream's, compact.EnforceSnapshotRetention) keeps every retained
	// snapshot continuing; GFS retention deliberately keeps older snapshots
	// as standalone restore points, so leave it off there. Off, such
	// snapshots are listed in Report.Isolated.
	StrictSnapshots bool
	// Concurrency is how many objects are verified at once; <= 0:
	// DefaultConcurrency.
	Concurrency int
	Logger      *slog.Logger
}

// Problem is one thing wrong with a replica.
type Problem struct {
	// Object is the file concerned, as "L0/0000000000000005-0000000000000005.ltx",
	// or the replica's URL for a problem of the whole replica.
	Object  string `json:"object"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Object + ": " + p.Kind + ": " + p.Message }

// RestoreResult says how the test restore went.
type RestoreResult struct {
	TXID    ltx.TXID `json:"txid,omitempty"`    // the TXID restored and checked
	Pages   uint32   `json:"pages,omitempty"`   // the database's size in pages
	Skipped string   `json:"skipped,omitempty"` // why no restore was attempted
}

// Report is the outcome of verifying one replica.
type Report struct {
	Name       string      `json:"name"`
	Replica    string      `json:"replica"`
	Files      int         `json:"files"`  // objects verified (of the final listing)
	Bytes      int64       `json:"bytes"`  // their total size
	Levels     map[int]int `json:"levels"` // files per level
	LatestTXID ltx.TXID    `json:"latest_txid"`
	// WindowFrom is the first TXID of the restorable window: the oldest
	// snapshot (or early file starting at TXID 1) from which restores
	// continue to the latest state, through levels 0..8 as far as they go
	// (restore.Window.Earliest); 0 when the latest state is unreachable.
	WindowFrom ltx.TXID `json:"window_from,omitempty"`
	// Isolated are the snapshots older than WindowFrom: each restores on
	// its own, to its TXID, but no restore continues from it (GFS retention
	// keeps such snapshots; see Options.StrictSnapshots).
	Isolated []string `json:"isolated_snapshots,omitempty"`
	// Vanished counts objects listed but deleted before they could be read
	// (retention running meanwhile); the replica was listed again.
	Vanished int            `json:"vanished,omitempty"`
	Restore  *RestoreResult `json:"restore,omitempty"` // nil unless Options.Restore
	Problems []Problem      `json:"problems"`
	// Omitted counts the problems found past MaxProblems, which are not
	// listed: a replica of stray objects must not grow the report, and
	// the process, without bound.
	Omitted int `json:"omitted_problems,omitempty"`
}

// MaxProblems is the most problems a Report lists.
const MaxProblems = 1000

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 && r.Omitted == 0 }

func (r *Report) add(object, kind, format string, a ...any) {
	r.note(Problem{Object: object, Kind: kind, Message: fmt.Sprintf(format, a...)})
}

// note lists p, or counts it once MaxProblems are listed.
func (r *Report) note(p Problem) {
	if len(r.Problems) >= MaxProblems {
		r.Omitted++
		return
	}
	r.Problems = append(r.Problems, p)
}

// omitted stands for an object's problem past MaxProblems, so that a
// replica of 100,000 bad objects does not hold 100,000 messages.
var omitted = &Problem{Kind: KindCorrupt, Message: "not listed: more than MaxProblems problems"}

// Replica verifies the replica c. Problems found go into the report; the
// error is for failures to verify at all (listing failed, ctx cancelled, an
// empty replica).
func Replica(ctx context.Context, c storage.Client, opts Options) (*Report, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	rep := &Report{Name: opts.Name, Replica: c.String(), Levels: map[int]int{}, Problems: []Problem{}}
	if rep.Name == "" {
		rep.Name = c.String()
	}

	pageSizes := map[fileKey]uint32{}
	files, checked, err := verifyObjects(ctx, c, opts, rep, pageSizes)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: %w", c, restore.ErrNoReplica)
	}
	for _, fi := range files {
		rep.Files++
		rep.Bytes += fi.Size
		rep.Levels[fi.Level]++
		rep.LatestTXID = max(rep.LatestTXID, fi.MaxTXID)
		switch p := checked[key(fi)]; {
		case p == omitted:
			rep.Omitted++
		case p != nil:
			rep.note(*p)
		}
	}

	checkLevels(files, rep)
	w := window(files)
	checkPageSizes(files, w, pageSizes, rep)
	latestOK, err := checkLatest(ctx, c, w, rep)
	if err != nil {
		return nil, err
	}
	if latestOK {
		rep.WindowFrom = w.from
		for _, s := range w.isolated {
			rep.Isolated = append(rep.Isolated, s.String())
		}
	}
	if opts.StrictSnapshots {
		checkSnapshots(w, latestOK, rep)
	}
	if opts.Restore {
		if err := testRestore(ctx, c, opts, latestOK, checked, rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

type fileKey struct {
	level    int
	min, max ltx.TXID
}

func key(fi *storage.FileInfo) fileKey { return fileKey{fi.Level, fi.MinTXID, fi.MaxTXID} }

// verifyObjects lists the replica and verifies every object, then lists it
// again, so that the levels are checked on a listing taken after the
// objects were read (a retention pass that ran meanwhile has finished in
// it), and verifies what is new in that listing; up to maxListRounds
// listings. An object that vanished (deleted by retention after a listing)
// is not a problem unless it is listed again, and again not found, up to
// the last listing. It returns the last listing, every object of which was
// verified, and each object's problem (nil: verified).
func verifyObjects(ctx context.Context, c storage.Client, opts Options, rep *Report, pageSizes map[fileKey]uint32) ([]*storage.FileInfo, map[fileKey]*Problem, error) {
	checked := map[fileKey]*Problem{}
	vanished := map[fileKey]bool{}
	var files []*storage.FileInfo
	for round := 1; ; round++ {
		var err error
		if files, err = restore.ListAll(ctx, c); err != nil {
			return nil, nil, err
		}
		var todo []*storage.FileInfo // new in this listing, or listed again after vanishing
		for _, fi := range files {
			if _, ok := checked[key(fi)]; !ok {
				todo = append(todo, fi)
			}
		}
		if round > 1 && len(todo) == 0 {
			break
		}
		gone, err := verifyAll(ctx, c, todo, opts.Concurrency, checked, pageSizes)
		if err != nil {
			return nil, nil, err
		}
		for _, fi := range gone {
			vanished[key(fi)] = true
		}
		if round == maxListRounds {
			// Still listed, still not found.
			for _, fi := range gone {
				checked[key(fi)] = &Problem{Object: fi.String(), Kind: KindMissing,
					Message: "listed, but not found when read, in each of several listings"}
			}
			break
		}
		if len(gone) > 0 {
			opts.Logger.Debug("objects vanished while verifying; listing again", "replica", c.String(), "vanished", len(gone))
		}
	}
	for _, fi := range files {
		delete(vanished, key(fi))
	}
	rep.Vanished = len(vanished)
	return files, checked, nil
}

// verifyAll verifies files with n workers, recording each result in checked
// and each verified file's page size in pageSizes, and returns the files
// that were not found.
func verifyAll(ctx context.Context, c storage.Client, files []*storage.FileInfo, n int, checked map[fileKey]*Problem, pageSizes map[fileKey]uint32) ([]*storage.FileInfo, error) {
	type result struct {
		p        *Problem
		pageSize uint32
		notFound bool
		err      error
	}
	results := make([]result, len(files))
	var next int
	var bad atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < min(n, len(files)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(files) || ctx.Err() != nil {
					return
				}
				p, ps, notFound, err := verifyObject(ctx, c, files[i])
				if p != nil && bad.Add(1) > MaxProblems {
					p = omitted
				}
				results[i] = result{p, ps, notFound, err}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var gone []*storage.FileInfo
	for i, r := range results {
		switch {
		case r.err != nil:
			return nil, r.err
		case r.notFound:
			gone = append(gone, files[i])
		default:
			checked[key(files[i])] = r.p
			if r.p == nil {
				pageSizes[key(files[i])] = r.pageSize
			}
		}
	}
	return gone, nil
}

// verifyObject reads one object in full through OpenLTXFile, which verifies
// its SHA-256 (when it has one), its LTX checksums and that its header holds
// the TXIDs of its name before it returns a byte. It returns the file's page
// size when it is sound.
func verifyObject(ctx context.Context, c storage.Client, fi *storage.FileInfo) (p *Problem, pageSize uint32, notFound bool, err error) {
	obj := fi.String()
	rc, err := c.OpenLTXFile(ctx, fi.Level, fi.MinTXID, fi.MaxTXID)
	if err != nil {
		var ce *storage.CorruptError
		switch {
		case ctx.Err() != nil:
			return nil, 0, false, ctx.Err()
		case errors.Is(err, storage.ErrNotFound):
			return nil, 0, true, nil
		case errors.As(err, &ce):
			return &Problem{Object: obj, Kind: KindCorrupt, Message: ce.Reason}, 0, false, nil
		default:
			return &Problem{Object: obj, Kind: KindUnreadable, Message: err.Error()}, 0, false, nil
		}
	}
	defer rc.Close()
	b := make([]byte, ltx.HeaderSize)
	var hdr ltx.Header
	if _, err = io.ReadFull(rc, b); err == nil {
		err = hdr.UnmarshalBinary(b)
	}
	var n int64
	if err == nil {
		n, err = io.Copy(io.Discard, rc)
		n += ltx.HeaderSize
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, false, ctx.Err()
		}
		return &Problem{Object: obj, Kind: KindUnreadable, Message: err.Error()}, 0, false, nil
	}
	if fi.Size > 0 && n != fi.Size {
		return &Problem{Object: obj, Kind: KindCorrupt, Message: fmt.Sprintf("read %d bytes, the listing says the object has %d", n, fi.Size)}, 0, false, nil
	}
	return nil, hdr.PageSize, false, nil
}

// checkPageSizes follows, from each file starting at TXID 1, the chain a
// restore plan follows, up to the next such file (where plans for later
// targets start instead), and reports a file whose page size differs from
// the chain's start: restores of the TXIDs from there on fail, because a
// database cannot change page size in the middle of a chain. walsync
// writes a snapshot at every resync, so its replicas never have one; a
// replica written without (by an older walsync) does until a snapshot is
// taken. Files whose page size is unknown (they failed verification) are
// passed over.
func checkPageSizes(files []*storage.FileInfo, w *restoreWindow, pageSizes map[fileKey]uint32, rep *Report) {
	var bases []*storage.FileInfo
	for _, fi := range files {
		if fi.MinTXID == 1 && pageSizes[key(fi)] != 0 {
			bases = append(bases, fi)
		}
	}
	slices.SortFunc(bases, func(a, b *storage.FileInfo) int { return cmp.Compare(a.MaxTXID, b.MaxTXID) })
	for i, b := range bases {
		limit := ltx.TXID(math.MaxUint64)
		if i+1 < len(bases) {
			limit = bases[i+1].MaxTXID
		}
		ps := pageSizes[key(b)]
		steps, _, _ := w.chain.Extend(b.MaxTXID)
		cur := b.MaxTXID
		for _, next := range steps {
			if cur >= limit {
				break // plans to later targets start from the next base
			}
			if fps := pageSizes[key(next)]; fps != 0 && fps != ps && next.MinTXID < limit {
				rep.add(next.String(), KindPageSize, "the database's page size changes here from %d to %d, and no snapshot starts the chain again: restores from %s to TXIDs %s and later fail until a snapshot at or after TXID %s is taken (walsync snapshot)",
					ps, fps, b, next.MinTXID, next.MinTXID)
				break
			}
			cur = next.MaxTXID
		}
	}
}

// checkLevels checks each level for holes and overlaps, and that snapshots
// start at TXID 1. See the package comment for which holes are legitimate.
func checkLevels(files []*storage.FileInfo, rep *Report) {
	byLevel := make([][]*storage.FileInfo, storage.MaxLevel+1)
	for _, fi := range files {
		byLevel[fi.Level] = append(byLevel[fi.Level], fi)
	}
	var oldestSnapshot ltx.TXID // MaxTXID of the oldest snapshot; 0: none
	for _, fi := range byLevel[storage.SnapshotLevel] {
		if fi.MinTXID != 1 {
			rep.add(fi.String(), KindInvalid, "a level-%d snapshot must start at TXID 1; restores ignore this file", storage.SnapshotLevel)
			continue
		}
		if oldestSnapshot == 0 || fi.MaxTXID < oldestSnapshot {
			oldestSnapshot = fi.MaxTXID
		}
	}
	var l1Max ltx.TXID
	for _, fi := range byLevel[1] {
		l1Max = max(l1Max, fi.MaxTXID)
	}
	for level := 0; level < storage.SnapshotLevel; level++ {
		lf := slices.Clone(byLevel[level])
		slices.SortFunc(lf, byTXIDs)
		var prev *storage.FileInfo // the file reaching furthest so far
		for _, fi := range lf {
			if prev == nil {
				prev = fi
				continue
			}
			switch {
			case fi.MinTXID <= prev.MaxTXID:
				rep.add(fi.String(), KindOverlap, "TXIDs %s-%s overlap %s (TXIDs %s-%s): the files of a level never share a TXID",
					fi.MinTXID, min(fi.MaxTXID, prev.MaxTXID), prev, prev.MinTXID, prev.MaxTXID)
			case fi.MinTXID > prev.MaxTXID+1:
				last := fi.MinTXID - 1 // the hole is prev.MaxTXID+1 .. last
				behindL1 := level == 0 && last <= l1Max
				behindSnapshots := oldestSnapshot != 0 && last <= oldestSnapshot
				if !behindL1 && !behindSnapshots {
					rep.add(fi.String(), KindGap, "L%d has no file for TXIDs %s-%s: the file before this one, %s, ends at TXID %s",
						level, prev.MaxTXID+1, last, prev, prev.MaxTXID)
				}
			}
			if fi.MaxTXID > prev.MaxTXID {
				prev = fi
			}
		}
	}
}

func byTXIDs(a, b *storage.FileInfo) int {
	if v := cmp.Compare(a.MinTXID, b.MinTXID); v != 0 {
		return v
	}
	return cmp.Compare(a.MaxTXID, b.MaxTXID)
}

// restoreWindow is what the listing says restores can reach.
type restoreWindow struct {
	chain *restore.Chain
	base  *storage.FileInfo // where the latest plan starts: the furthest file starting at TXID 1
	head  ltx.TXID          // where restores continue to (restore.Window.Head)
	// from is the restorable window's first TXID: the oldest file starting
	// at TXID 1 (a snapshot, or an early L0..L8 file) from which restores
	// continue to head (restore.Window.Earliest); 0: none does.
	from ltx.TXID
	// isolated are the snapshots older than from: each restores on its own,
	// to its TXID, but restores do not continue from it.
	isolated []*storage.FileInfo
}

func window(files []*storage.FileInfo) *restoreWindow {
	c := restore.NewChain(files)
	rw := c.Window()
	w := &restoreWindow{chain: c, base: c.Base(0), head: rw.Head}
	if rw.Earliest != nil {
		w.from = rw.Earliest.MaxTXID
	}
	for _, fi := range files {
		if fi.Level == storage.SnapshotLevel && fi.MinTXID == 1 && (w.from == 0 || fi.MaxTXID < w.from) {
			w.isolated = append(w.isolated, fi)
		}
	}
	slices.SortFunc(w.isolated, func(a, b *storage.FileInfo) int { return cmp.Compare(a.MaxTXID, b.MaxTXID) })
	return w
}

// checkLatest checks, with the restore planner itself, that the latest
// state restores, and reports whether it does.
func checkLatest(ctx context.Context, c storage.Client, w *restoreWindow, rep *Report) (bool, error) {
	plan, err := restore.Plan(ctx, c, restore.Target{})
	switch {
	case ctx.Err() != nil:
		return false, ctx.Err()
	case err != nil:
		// The first file past where the latest plan stops; with no file
		// starting at TXID 1, the oldest file.
		obj := rep.Replica
		var from ltx.TXID
		if w.base != nil {
			from = w.base.MaxTXID
		}
		if _, _, beyond := w.chain.Extend(from); beyond != nil {
			obj = beyond.String()
		}
		rep.add(obj, KindUnreachable, "the latest TXID %s cannot be restored: %v", rep.LatestTXID, err)
		return false, nil
	case plan[len(plan)-1].MaxTXID < rep.LatestTXID:
		rep.add(rep.Replica, KindUnreachable, "the latest restore plan ends at TXID %s, but the replica holds TXID %s", plan[len(plan)-1].MaxTXID, rep.LatestTXID)
		return false, nil
	}
	return true, nil
}

// checkSnapshots reports every snapshot that restores do not continue from
// to the head, the highest TXID of levels 0..8 (Options.StrictSnapshots).
func checkSnapshots(w *restoreWindow, latestOK bool, rep *Report) {
	var stop ltx.TXID // where the latest plan's chain stops when it fails
	if !latestOK && w.base != nil {
		_, stop, _ = w.chain.Extend(w.base.MaxTXID)
	}
	for _, s := range w.isolated {
		_, got, beyond := w.chain.Extend(s.MaxTXID)
		if !latestOK && got == stop {
			continue // the same gap as the latest plan's, reported already
		}
		next := "no file of levels 0-8 continues from there"
		if beyond != nil {
			next = fmt.Sprintf("the next file, %s, starts at TXID %s", beyond, beyond.MinTXID)
		}
		rep.add(s.String(), KindUnreachable, "restores from this snapshot stop at TXID %s, short of TXID %s that restores continue to: %s",
			got, w.head, next)
	}
}

// testRestore restores the latest state into a temp file (restore.Restore
// verifies every file it applies and runs PRAGMA integrity_check) and
// removes it.
func testRestore(ctx context.Context, c storage.Client, opts Options, latestOK bool, checked map[fileKey]*Problem, rep *Report) error {
	rep.Restore = &RestoreResult{}
	if !latestOK {
		rep.Restore.Skipped = "the latest state is unreachable"
		return nil
	}
	plan, err := restore.Plan(ctx, c, restore.Target{})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rep.Restore.Skipped = "no restore plan: " + err.Error()
		return nil
	}
	var bad []string
	for _, fi := range plan {
		if p := checked[key(fi)]; p != nil {
			bad = append(bad, fi.String())
		}
	}
	if len(bad) > 0 {
		rep.Restore.Skipped = "the latest restore plan uses objects that failed verification: " + strings.Join(bad, ", ")
		return nil
	}
	dir, err := os.MkdirTemp(opts.TempDir, "walsync-verify-*")
	if err != nil {
		return fmt.Errorf("verify %s: %w", c, err)
	}
	defer os.RemoveAll(dir)
	res, err := restore.Restore(ctx, restore.Options{
		Client: c, Output: filepath.Join(dir, "restored.db"), Logger: opts.Logger,
	})
	if err != nil {
		var ce *storage.CorruptError
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &ce):
			rep.add(rep.Replica, KindCorrupt, "the test restore read a corrupt object: %v", err)
		case strings.Contains(err.Error(), "integrity check"):
			rep.add(rep.Replica, KindIntegrity, "the latest state (TXID %s), restored, fails PRAGMA integrity_check: %v", rep.LatestTXID, err)
		default:
			rep.add(rep.Replica, KindRestore, "restoring the latest state failed: %v", err)
		}
		return nil
	}
	rep.Restore.TXID, rep.Restore.Pages = res.TXID, res.Pages
	if res.TXID < rep.LatestTXID {
		rep.add(rep.Replica, KindRestore, "the test restore reached TXID %s, short of the latest TXID %s", res.TXID, rep.LatestTXID)
	}
	return nil
}
