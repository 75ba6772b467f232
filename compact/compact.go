// Package compact merges a replica's LTX files into coarser levels and
// enforces retention, in Litestream v0.5's layout:
//
//   - level 0 holds one file per sync, with contiguous TXID ranges;
//   - levels 1..8 hold compactions of the level below (by default L1 every
//     30 s, L2 every 5 min, L3 every hour, as Litestream v0.5.18);
//   - level 9 holds full snapshots (MinTXID 1).
//
// Compact merges the files of level N-1 that come after level N's last file
// into one file at level N. EnforceL0Retention and EnforceSnapshotRetention
// delete what is no longer needed; each keeps every point inside its
// retained window restorable (see their comments for the exact rules).
//
// The functions are stateless: every call lists what it needs. Run them one
// at a time per replica, from one scheduler. Compactions of different levels
// and retention touch disjoint files (see retention.go), so an overlap should
// do no harm, but it is not a supported mode.
package compact

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
)

// Level is one compaction level and how often it is compacted from the level
// below it.
type Level struct {
	Level    int
	Interval time.Duration
}

// PrevCompactionAt returns the most recent compaction boundary at or before
// now: now truncated to the interval, as Litestream v0.5.18 schedules it.
func (l Level) PrevCompactionAt(now time.Time) time.Time {
	return now.Truncate(l.Interval).UTC()
}

// NextCompactionAt returns the first compaction boundary after
// PrevCompactionAt(now).
func (l Level) NextCompactionAt(now time.Time) time.Time {
	return l.PrevCompactionAt(now).Add(l.Interval)
}

// DefaultLevels are Litestream v0.5.18's default compaction levels (its
// DefaultCompactionLevels without level 0, which is never compacted into).
var DefaultLevels = []Level{
	{Level: 1, Interval: 30 * time.Second},
	{Level: 2, Interval: 5 * time.Minute},
	{Level: 3, Interval: time.Hour},
}

// Litestream v0.5.18's default retention periods.
const (
	// DefaultL0Retention is how long L0 files are kept after they have been
	// compacted into L1.
	DefaultL0Retention = 5 * time.Minute
	// DefaultSnapshotRetention is how long level-9 snapshots are kept.
	DefaultSnapshotRetention = 24 * time.Hour
)

// DefaultMaxInputs bounds how many files one merge pass reads at once.
const DefaultMaxInputs = 256

// indexSpill is the number of output page-index entries the LTX encoder
// keeps in memory before spilling them to a file in the temp directory.
const indexSpill = 16384

// readBuffer is the read-ahead per input file.
const readBuffer = 32 << 10

// ErrGap is returned (wrapped) by Compact when the source level's next file
// does not continue where the destination level ends: nothing can be
// compacted until the gap is resolved.
var ErrGap = errors.New("gap in the source level's TXIDs")

// ErrReplicaLost is returned (wrapped) by Compact when the listing shows
// that files walsync wrote are gone: the destination level ends before the
// last output Compact was told of, or it is empty while level 0 starts past
// TXID 1 with no snapshot below it (every object deleted, by hand or by a
// lifecycle rule); and by EnforceRetention when the files left do not
// restore the latest TXID (the snapshots deleted after older incremental
// files were retired). The latest state cannot be restored until a
// snapshot is written.
var ErrReplicaLost = errors.New("the replica lost files walsync wrote")

// Options configure Compact.
type Options struct {
	// TempDir holds intermediate merges and the encoder's page-index spill;
	// empty: os.TempDir().
	TempDir string
	// MaxInputs bounds how many files are merged in one pass (at least 2);
	// zero: DefaultMaxInputs. A longer run is merged in passes through a
	// temp file, and still yields one destination file.
	MaxInputs int
	Logger    *slog.Logger
	// LastOutput, when set, is a file known to be at the destination level
	// (the previous compaction's output). The destination is then listed
	// from it on instead of in full; retention never deletes a level's
	// newest file, and if it is gone the level is listed in full.
	LastOutput *storage.FileInfo
	// Position, when not 0, is the database's TXID: a destination file
	// ending past it was not written by walsync for this database.
	Position ltx.TXID
}

func (o Options) withDefaults() Options {
	if o.TempDir == "" {
		o.TempDir = os.TempDir()
	}
	if o.MaxInputs <= 0 {
		o.MaxInputs = DefaultMaxInputs
	}
	if o.MaxInputs < 2 {
		o.MaxInputs = 2
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Compact merges the files of level dst-1 that come after level dst's last
// file into one file at level dst, and returns it. It returns (nil, nil)
// when there is nothing new to compact.
//
// Only a contiguous run is merged: it starts right after dst's last MaxTXID
// (at the first source file when dst is empty) and stops before the first
// gap, which is logged; no file ever spans a gap. When the source's first
// file after dst already leaves a gap, the error wraps ErrGap.
//
// Every input is opened with the client's OpenLTXFile, which verifies it
// (a damaged input fails the compaction with a *storage.CorruptError and
// nothing is written at dst). The merge is ltx.Compactor, streamed into
// WriteLTXFile, which verifies the output before storing it. The output
// carries HeaderFlagNoChecksum and the newest input's header timestamp, as
// Litestream's compactions do, so restores to a point in time stay correct.
func Compact(ctx context.Context, c storage.Client, dst int, opts Options) (*storage.FileInfo, error) {
	if dst < 1 || dst >= storage.SnapshotLevel {
		return nil, fmt.Errorf("compact %s: invalid destination level %d: must be 1-%d", c, dst, storage.SnapshotLevel-1)
	}
	opts = opts.withDefaults()
	src := dst - 1

	dstMax, err := maxTXID(ctx, c, dst, opts.LastOutput, opts.Position)
	if err != nil {
		return nil, fmt.Errorf("compact %s into L%d: %w", c, dst, err)
	}
	if last := opts.LastOutput; last != nil && last.Level == dst && dstMax < last.MaxTXID {
		return nil, fmt.Errorf("compact %s into L%d: %w: L%d ends at TXID %s, before %s written earlier", c, dst, ErrReplicaLost, dst, dstMax, last)
	}
	// A backlog longer than one listing holds is compacted a batch per run.
	files, _, err := listFirst(ctx, c, src, dstMax, storage.MaxListedFiles)
	if err != nil {
		return nil, fmt.Errorf("compact %s into L%d: %w", c, dst, err)
	}
	if src == 0 && dstMax == 0 && len(files) > 0 && files[0].MinTXID > 1 {
		if err := checkBase(ctx, c, files[0]); err != nil {
			return nil, fmt.Errorf("compact %s into L%d: %w", c, dst, err)
		}
	}
	run, gap := contiguousRun(files, dstMax)
	if gap != nil {
		end := dstMax
		if len(run) > 0 {
			end = run[len(run)-1].MaxTXID
		}
		if len(run) == 0 {
			return nil, fmt.Errorf("compact %s into L%d: %w: L%d ends at TXID %s and the next L%d file is %s", c, dst, ErrGap, dst, end, src, gap)
		}
		opts.Logger.Warn("compaction stops at a gap in the source level",
			"replica", c.String(), "level", dst, "contiguous_to", end.String(), "next_file", gap.String())
	}
	if len(run) == 0 {
		return nil, nil
	}
	info, err := merge(ctx, c, dst, run, opts)
	if err != nil {
		return nil, fmt.Errorf("compact %s L%d %s-%s (%d files) into L%d: %w",
			c, src, run[0].MinTXID, run[len(run)-1].MaxTXID, len(run), dst, err)
	}
	opts.Logger.Debug("compacted", "replica", c.String(), "level", dst,
		"min_txid", info.MinTXID.String(), "max_txid", info.MaxTXID.String(), "inputs", len(run), "size", info.Size)
	return info, nil
}

// checkBase is called when level 1 is empty and level 0 starts at first,
// past TXID 1: legitimate only when a snapshot reaches the TXID before it
// (a resync writes one). One listing of the snapshot level, in a case that
// arises only once per replica (its first compaction after a resync) or
// when files were lost.
func checkBase(ctx context.Context, c storage.Client, first *storage.FileInfo) error {
	snaps, err := listLevel(ctx, c, storage.SnapshotLevel, 0)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if s.MaxTXID+1 >= first.MinTXID {
			return nil
		}
	}
	return fmt.Errorf("%w: L1 is empty, L0 starts at %s and no snapshot reaches TXID %s", ErrReplicaLost, first, first.MinTXID-1)
}

// contiguousRun returns the files that continue from TXID after (from the
// first file when after is 0) without a gap, and the first file past a
// gap, if any. files are sorted by MinTXID then MaxTXID. A file that
// overlaps the run but extends it is accepted (ltx.IsContiguous); one the
// run already covers is skipped.
func contiguousRun(files []*storage.FileInfo, after ltx.TXID) (run []*storage.FileInfo, gap *storage.FileInfo) {
	cur := after
	for _, fi := range files {
		switch {
		case len(run) == 0 && after == 0:
			// An empty destination starts at the source's first file.
		case fi.MaxTXID <= cur:
			continue
		case !ltx.IsContiguous(cur, fi.MinTXID, fi.MaxTXID):
			return run, fi
		}
		run = append(run, fi)
		cur = fi.MaxTXID
	}
	return run, nil
}

// merge compacts run into one file at level dst. Runs longer than
// opts.MaxInputs are merged in passes: each pass merges the previous pass's
// output (a temp file) with the next inputs; only the last pass is
// streamed to the replica.
func merge(ctx context.Context, c storage.Client, dst int, run []*storage.FileInfo, opts Options) (*storage.FileInfo, error) {
	minTXID, maxTXID := run[0].MinTXID, run[len(run)-1].MaxTXID
	var acc *os.File // the previous pass's output
	defer func() {
		if acc != nil {
			acc.Close()
		}
	}()
	var pageSize uint32
	for start := 0; ; {
		n := opts.MaxInputs
		if acc != nil {
			n--
		}
		end := min(start+n, len(run))
		inputs, sizes, closeInputs, err := openInputs(ctx, c, run[start:end])
		if err != nil {
			return nil, err
		}
		if pageSize == 0 {
			pageSize = sizes[0]
		}
		// A page-size change (VACUUM after PRAGMA page_size, a database
		// replaced by one with other pages) starts with a full image;
		// merging across it would make one file of two page sizes. The
		// merge ends before it and the next compaction starts there.
		if k := slices.IndexFunc(sizes, func(ps uint32) bool { return ps != pageSize }); k >= 0 {
			opts.Logger.Info("compaction stops at a page-size change", "replica", c.String(), "level", dst,
				"file", run[start+k].String(), "page_size", sizes[k], "before", pageSize)
			inputs, end = inputs[:k], start+k
			run, maxTXID = run[:end], run[end-1].MaxTXID
		}
		if acc != nil {
			if _, err := acc.Seek(0, io.SeekStart); err != nil {
				closeInputs()
				return nil, fmt.Errorf("rewind the previous merge pass: %w", err)
			}
			inputs = append([]io.Reader{bufio.NewReaderSize(&ctxReader{ctx: ctx, r: acc}, readBuffer)}, inputs...)
		}
		if end == len(run) {
			info, err := streamTo(ctx, c, dst, minTXID, maxTXID, inputs, opts)
			closeInputs()
			return info, err
		}
		next, err := mergeToTemp(ctx, inputs, opts)
		closeInputs()
		if err != nil {
			return nil, err
		}
		if acc != nil {
			acc.Close()
		}
		acc = next
		opts.Logger.Debug("compaction pass merged", "level", dst, "through_txid", run[end-1].MaxTXID.String(), "inputs", end-start)
		start = end
	}
}

// openInputs opens (and so verifies) every file of batch before a byte is
// merged, and returns each one's page size, read from its header.
func openInputs(ctx context.Context, c storage.Client, batch []*storage.FileInfo) ([]io.Reader, []uint32, func(), error) {
	var rcs []io.ReadCloser
	closeAll := func() {
		for _, rc := range rcs {
			rc.Close()
		}
	}
	readers := make([]io.Reader, 0, len(batch)+1)
	sizes := make([]uint32, 0, len(batch))
	for _, fi := range batch {
		rc, err := c.OpenLTXFile(ctx, fi.Level, fi.MinTXID, fi.MaxTXID)
		if err != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("open input %s: %w", fi, err)
		}
		rcs = append(rcs, rc)
		br := bufio.NewReaderSize(&ctxReader{ctx: ctx, r: rc}, readBuffer)
		var hdr ltx.Header
		b, err := br.Peek(ltx.HeaderSize)
		if err == nil {
			err = hdr.UnmarshalBinary(b)
		}
		if err != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("read header of input %s: %w", fi, err)
		}
		readers = append(readers, br)
		sizes = append(sizes, hdr.PageSize)
	}
	return readers, sizes, closeAll, nil
}

// newCompactor returns ltx's compactor over inputs writing to w, set up as
// Litestream sets it up, with its page index spilling to opts.TempDir.
func newCompactor(w io.Writer, inputs []io.Reader, opts Options) (*ltx.Compactor, error) {
	comp, err := ltx.NewCompactor(w, inputs)
	if err != nil {
		return nil, err
	}
	comp.HeaderFlags = ltx.HeaderFlagNoChecksum
	spill, err := storage.SpillDir(opts.TempDir)
	if err != nil {
		return nil, err
	}
	comp.SetSpillDir(spill)
	comp.SetSpillThreshold(indexSpill)
	return comp, nil
}

// streamTo merges inputs straight into the replica through a pipe.
func streamTo(ctx context.Context, c storage.Client, dst int, minTXID, maxTXID ltx.TXID, inputs []io.Reader, opts Options) (*storage.FileInfo, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := func() error {
			comp, err := newCompactor(pw, inputs, opts)
			if err != nil {
				return err
			}
			defer comp.Cleanup()
			return comp.Compact(ctx)
		}()
		pw.CloseWithError(err) // nil: the reader sees EOF
		done <- err
	}()
	info, werr := c.WriteLTXFile(ctx, dst, minTXID, maxTXID, pr)
	// Unblock the compactor if the write gave up early, then wait for it:
	// the inputs are closed only after it is done with them.
	pr.CloseWithError(errors.New("the replica write ended"))
	if cerr := <-done; cerr != nil {
		if werr == nil {
			// Cannot happen: the write reads the stream to its end and
			// verifies it. Never keep a file whose merge reported an error.
			if derr := c.DeleteLTXFiles(context.WithoutCancel(ctx), []*storage.FileInfo{info}); derr != nil {
				cerr = errors.Join(cerr, fmt.Errorf("delete %s: %w", info, derr))
			}
		}
		return nil, fmt.Errorf("merge: %w", cerr)
	}
	if werr != nil {
		return nil, fmt.Errorf("write L%d %s: %w", dst, ltx.FormatFilename(minTXID, maxTXID), werr)
	}
	return info, nil
}

// mergeToTemp merges inputs into an unlinked temp file for the next pass.
func mergeToTemp(ctx context.Context, inputs []io.Reader, opts Options) (_ *os.File, err error) {
	f, err := storage.CreateUnlinkedTemp(opts.TempDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	w := bufio.NewWriterSize(f, readBuffer)
	comp, err := newCompactor(w, inputs, opts)
	if err != nil {
		return nil, err
	}
	defer comp.Cleanup()
	if err := comp.Compact(ctx); err != nil {
		return nil, fmt.Errorf("merge pass: %w", err)
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("write temp file: %w", err)
	}
	return f, nil
}

// ctxReader fails reads once ctx is done, so a long merge can be cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// listLevel lists the files of level whose MinTXID is greater than after.
func listLevel(ctx context.Context, c storage.Client, level int, after ltx.TXID) ([]*storage.FileInfo, error) {
	return listAfterWithin(ctx, c, level, after, storage.NewBudget())
}

// listLevelWithin lists every file of level, counting them against budget
// (the replica's listings together).
func listLevelWithin(ctx context.Context, c storage.Client, level int, budget *storage.Budget) ([]*storage.FileInfo, error) {
	return listAfterWithin(ctx, c, level, 0, budget)
}

func listAfterWithin(ctx context.Context, c storage.Client, level int, after ltx.TXID, budget *storage.Budget) ([]*storage.FileInfo, error) {
	it, err := c.LTXFiles(ctx, level, after)
	if err != nil {
		return nil, fmt.Errorf("list L%d: %w", level, err)
	}
	files, err := budget.Collect(it)
	if err != nil {
		return nil, fmt.Errorf("list L%d: %w", level, err)
	}
	return files, nil
}

// newestFile returns the file of level, among those whose MinTXID is
// greater than after, with the highest MaxTXID; nil when there is none.
func newestFile(ctx context.Context, c storage.Client, level int, after ltx.TXID) (*storage.FileInfo, error) {
	it, err := c.LTXFiles(ctx, level, after)
	if err != nil {
		return nil, fmt.Errorf("list L%d: %w", level, err)
	}
	fi, err := storage.Newest(it)
	if err != nil {
		return nil, fmt.Errorf("list L%d: %w", level, err)
	}
	return fi, nil
}

// listFirst lists the first n files of level whose MinTXID is greater than
// after, and whether more follow.
func listFirst(ctx context.Context, c storage.Client, level int, after ltx.TXID, n int) ([]*storage.FileInfo, bool, error) {
	it, err := c.LTXFiles(ctx, level, after)
	if err != nil {
		return nil, false, fmt.Errorf("list L%d: %w", level, err)
	}
	files, more, err := storage.CollectFirst(it, n)
	if err != nil {
		return nil, false, fmt.Errorf("list L%d: %w", level, err)
	}
	return files, more, nil
}

// maxTXID returns the highest MaxTXID of level, 0 when it is empty.
func maxTXID(ctx context.Context, c storage.Client, level int, known *storage.FileInfo, position ltx.TXID) (ltx.TXID, error) {
	var after ltx.TXID
	if known != nil && known.Level == level && known.MinTXID > 0 {
		after = known.MinTXID - 1
	}
	newest, err := newestFile(ctx, c, level, after)
	if err != nil {
		return 0, err
	}
	if after > 0 && newest == nil {
		if newest, err = newestFile(ctx, c, level, 0); err != nil {
			return 0, err
		}
	}
	if newest == nil {
		return 0, nil
	}
	// Where compaction resumes is the one thing a stray file could stall
	// silently: a name past the database's TXID, or a file this process
	// did not write whose header does not hold its name's TXIDs.
	if position > 0 && newest.MaxTXID > position {
		return 0, fmt.Errorf("%w: L%d's newest file %s ends past the database's TXID %s: walsync did not write it; remove it", ErrForeignFile, level, newest, position)
	}
	if known == nil || newest.Level != known.Level || newest.MinTXID != known.MinTXID || newest.MaxTXID != known.MaxTXID {
		if _, err := storage.ReadHeader(ctx, c, newest); err != nil {
			return 0, fmt.Errorf("%w: L%d's newest file %s: %v", ErrForeignFile, level, newest, err)
		}
	}
	return newest.MaxTXID, nil
}

// ErrForeignFile is wrapped by a compaction that will not resume after a
// destination file it cannot trust.
var ErrForeignFile = errors.New("a file at the compaction's destination cannot be trusted")
