package compact_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// syncAt is when the test's clock makes sync (and TXID) i: every 10 s.
func syncAt(i int) time.Time { return t0.Add(time.Duration(i) * 10 * time.Second) }

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// state is a database's size and rows in comparable form.
func state(t testing.TB, db *sql.DB) string {
	t.Helper()
	var sb strings.Builder
	var pages int64
	if err := db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&sb, "pages=%d\n", pages)
	rows, err := db.Query("SELECT id, v, coalesce(length(b), -1), coalesce(hex(substr(b, 1, 8)) || hex(substr(b, -8)), '') FROM t ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, n int64
		var v, h string
		if err := rows.Scan(&id, &v, &n, &h); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, "%d|%s|%d|%s\n", id, v, n, h)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// restoreState restores c to target and returns the restored state.
func restoreState(t testing.TB, c storage.Client, target restore.Target) (string, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored.db")
	if _, err := restore.Restore(context.Background(), restore.Options{Client: c, Output: out, Target: target, Logger: quiet()}); err != nil {
		return "", err
	}
	db, err := sql.Open("sqlite3", "file:"+out+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return state(t, db), nil
}

func list(t testing.TB, c storage.Client, level int) []*storage.FileInfo {
	t.Helper()
	it, err := c.LTXFiles(context.Background(), level, 0)
	if err != nil {
		t.Fatal(err)
	}
	files, err := storage.Collect(it)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func counts(t testing.TB, c storage.Client) map[int]int {
	t.Helper()
	n := map[int]int{}
	for level := 0; level <= storage.MaxLevel; level++ {
		if k := len(list(t, c, level)); k > 0 {
			n[level] = k
		}
	}
	return n
}

func total(m map[int]int) int {
	n := 0
	for _, k := range m {
		n += k
	}
	return n
}

func mustCompact(t testing.TB, c storage.Client, dst int, opts compact.Options, wantMin, wantMax ltx.TXID) {
	t.Helper()
	info, err := compact.Compact(context.Background(), c, dst, opts)
	if err != nil {
		t.Fatalf("compact L%d: %v", dst, err)
	}
	if info == nil || info.Level != dst || info.MinTXID != wantMin || info.MaxTXID != wantMax {
		t.Fatalf("compact L%d wrote %v, want L%d %s-%s", dst, info, dst, wantMin, wantMax)
	}
}

func mustNothing(t testing.TB, c storage.Client, dst int) {
	t.Helper()
	info, err := compact.Compact(context.Background(), c, dst, compact.Options{Logger: quiet()})
	if err != nil || info != nil {
		t.Fatalf("compact L%d with nothing new: %v, %v; want nil, nil", dst, info, err)
	}
}

// TestCompactAndRetentionOfCapturedReplica replicates a real database with
// capture (a sync every 10 s of simulated time, 90 syncs, checkpoints,
// VACUUMs, a resync snapshot, restarts), compacts L1 every 3 syncs, L2
// every 9 and L3 every 27, snapshots to L9 every 20 syncs, and enforces L0
// retention after every L1 compaction and snapshot retention after the
// last snapshot, as a scheduler would. Then it restores every TXID.
func TestCompactAndRetentionOfCapturedReplica(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	app, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	app.SetMaxOpenConns(1)
	mustExec(t, app, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
	client := file.New(filepath.Join(dir, "replica"))

	const (
		syncs             = 90
		l0Retention       = 135 * time.Second // now - 13.5 syncs
		snapshotRetention = 305 * time.Second // now - 30.5 syncs
	)
	now := t0
	open := func(checkpointPages int64) *capture.DB {
		t.Helper()
		db, err := capture.Open(ctx, capture.Options{
			Path: path, Client: client, TempDir: t.TempDir(), CheckpointPages: checkpointPages,
			Logger: quiet(), Now: func() time.Time { return now },
		})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	cdb := open(50)
	defer func() { cdb.Close(ctx) }()
	reopen := func(checkpointPages int64) {
		t.Helper()
		if err := cdb.Close(ctx); err != nil {
			t.Fatal(err)
		}
		cdb = open(checkpointPages)
	}
	opts := compact.Options{TempDir: t.TempDir(), Logger: quiet()}
	states := make([]string, syncs+1) // by TXID
	var l0Deleted, snapDeleted int

	for i := 1; i <= syncs; i++ {
		if i > 1 {
			for k := 0; k < 8; k++ {
				mustExec(t, app, "INSERT INTO t (v, b) VALUES (?, randomblob(?))", fmt.Sprintf("s%d-%d", i, k), 200+k*700+i*13)
			}
			mustExec(t, app, "UPDATE t SET v = v || '+' WHERE id % 7 = ?", i%7)
		}
		switch {
		case i%25 == 0: // the database shrinks
			mustExec(t, app, "DELETE FROM t WHERE id % 3 = ?", i%3)
			mustExec(t, app, "VACUUM")
		case i%10 == 0 && i != 70:
			// walsync's read transaction may hold it off: do not wait.
			mustExec(t, app, "PRAGMA busy_timeout = 50")
			mustExec(t, app, "PRAGMA wal_checkpoint(TRUNCATE)")
			mustExec(t, app, "PRAGMA busy_timeout = 5000")
		}
		wantSnapshot := i == 1
		switch i {
		case 45:
			// walsync stops and the WAL is truncated behind its back:
			// the sync is a full resync snapshot at L0, mid-replica.
			if err := cdb.Close(ctx); err != nil {
				t.Fatal(err)
			}
			var busy, logN, ckpt int
			if err := app.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logN, &ckpt); err != nil || busy != 0 {
				t.Fatalf("wal_checkpoint(TRUNCATE): busy=%d %v", busy, err)
			}
			cdb = open(50)
			wantSnapshot = true
		case 69:
			// From here on nothing checkpoints unless asked, so that the
			// restart at 70 finds the WAL where the replica ends.
			mustExec(t, app, "PRAGMA wal_autocheckpoint = 0")
			reopen(-1)
		case 70:
			// A restart after L0 retention ran many times: capture must
			// resume from the newest L0 file, which retention keeps.
			reopen(-1)
		}
		now = syncAt(i)
		st, err := cdb.Sync(ctx)
		if err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		if st.TXID != ltx.TXID(i) || !st.Uploaded {
			t.Fatalf("sync %d: %+v", i, st)
		}
		if i == 45 || i == 1 || i == 70 {
			if st.Snapshot != wantSnapshot {
				t.Fatalf("sync %d: snapshot=%v (%s), want %v", i, st.Snapshot, st.Reason, wantSnapshot)
			}
		}
		states[i] = state(t, app)

		if i%3 == 0 {
			mustCompact(t, client, 1, opts, ltx.TXID(i-2), ltx.TXID(i))
			mustNothing(t, client, 1) // idempotent
			del, err := compact.EnforceL0Retention(ctx, client, l0Retention, now)
			if err != nil {
				t.Fatal(err)
			}
			l0Deleted += len(del)
		}
		if i%9 == 0 {
			mustCompact(t, client, 2, opts, ltx.TXID(i-8), ltx.TXID(i))
			mustNothing(t, client, 2)
		}
		if i%27 == 0 {
			// Three L2 files, two at a time: the merge takes two passes.
			mustCompact(t, client, 3, compact.Options{TempDir: t.TempDir(), MaxInputs: 2, Logger: quiet()}, ltx.TXID(i-26), ltx.TXID(i))
			mustNothing(t, client, 3)
		}
		if i%20 == 0 {
			st, err := cdb.Snapshot(ctx)
			if err != nil || st.TXID != ltx.TXID(i) {
				t.Fatalf("snapshot at %d: %+v %v", i, st, err)
			}
		}
		if i == 80 {
			before := counts(t, client)
			// Snapshots 20, 40 and 45 (the resync's) are older than
			// now-305s; 60, 69 (another resync's) and 80 stay.
			floor, del, err := compact.EnforceSnapshotRetention(ctx, client, snapshotRetention, now)
			if err != nil {
				t.Fatal(err)
			}
			if floor != 45 {
				t.Fatalf("snapshot retention floor %s, want 45 (the newest deleted snapshot)", floor)
			}
			snapDeleted += len(del)
			after := counts(t, client)
			// L1 1-3..40-42, L2 1-9..28-36, L3 1-27 and three snapshots.
			want := map[int]int{1: before[1] - 14, 2: before[2] - 4, 3: before[3] - 1, 9: 3, 0: before[0]}
			if fmt.Sprint(after) != fmt.Sprint(want) || len(del) != 14+4+1+3 {
				t.Fatalf("after snapshot retention: %v (deleted %d: %v), want %v, before %v", after, len(del), del, want, before)
			}
		}
	}
	if err := cdb.Close(ctx); err != nil {
		t.Fatal(err)
	}
	final := state(t, app)

	// Retention again at the end: L0 up to 75 (the L1 boundary at or
	// before the L0 cut-off, TXID 76); the snapshots need nothing more.
	del, err := compact.EnforceL0Retention(ctx, client, l0Retention, now)
	if err != nil {
		t.Fatal(err)
	}
	l0Deleted += len(del)
	floor, sdel, err := compact.EnforceSnapshotRetention(ctx, client, snapshotRetention, now)
	if err != nil || floor != 0 || len(sdel) != 0 {
		t.Fatalf("second snapshot retention: floor %s, deleted %v, %v", floor, sdel, err)
	}
	mustNothing(t, client, 1)
	mustNothing(t, client, 2)

	// (c) The object count: 90 + 30 + 10 + 3 + 4 files written, plus the
	// snapshots the resyncs at 45 and 69 write beside their full images;
	// at most 15 L0 (76..90), 16 L1 (from 43-45), 6 L2, 2 L3 (28-54,
	// 55-81) and 3 snapshots (60, 69, 80) left.
	got := counts(t, client)
	want := map[int]int{0: 15, 1: 16, 2: 6, 3: 2, 9: 3}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("files per level %v, want %v", got, want)
	}
	if l0Deleted != 75 || snapDeleted != 22 {
		t.Fatalf("L0 retention deleted %d files, snapshot retention %d; want 75 and 22", l0Deleted, snapDeleted)
	}
	if l := list(t, client, 0); l[0].MinTXID != 76 {
		t.Fatalf("L0 starts at %s, want 76", l[0].MinTXID)
	}

	// Compacted files carry the newest input's timestamp, as their
	// listing's CreatedAt, and Litestream's flags.
	for level := 1; level <= 3; level++ {
		for _, fi := range list(t, client, level) {
			hdr, err := storage.ReadHeader(ctx, client, fi)
			if err != nil {
				t.Fatal(err)
			}
			want := syncAt(int(fi.MaxTXID))
			if hdr.Timestamp != want.UnixMilli() || !fi.CreatedAt.Equal(want) || hdr.Flags != ltx.HeaderFlagNoChecksum {
				t.Fatalf("%s: timestamp %d, CreatedAt %v, flags %#x; want %v and no-checksum", fi, hdr.Timestamp, fi.CreatedAt, hdr.Flags, want)
			}
		}
	}

	// The retained window starts at the oldest snapshot kept, TXID 60.
	// Inside it a TXID is reachable when a file still ends at it: every
	// TXID of the last L0 retention period (76..90, and 75 where the kept
	// L0 files start), and the compaction boundaries before that.
	snaps := list(t, client, storage.SnapshotLevel)
	windowStart := snaps[0].MaxTXID
	ends := map[ltx.TXID]bool{}
	for level := 0; level <= storage.MaxLevel; level++ {
		for _, fi := range list(t, client, level) {
			ends[fi.MaxTXID] = true
		}
	}
	var reachable []int
	for i := 1; i <= syncs; i++ {
		if ltx.TXID(i) >= windowStart && ends[ltx.TXID(i)] {
			reachable = append(reachable, i)
		}
	}
	wantReachable := []int{60, 63, 66, 69, 72, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90}
	if !slices.Equal(reachable, wantReachable) {
		t.Fatalf("TXIDs reachable in the window %v, want %v", reachable, wantReachable)
	}
	for i := 1; i <= syncs; i++ {
		got, err := restoreState(t, client, restore.Target{TXID: ltx.TXID(i)})
		switch {
		case slices.Contains(reachable, i) && err != nil:
			t.Errorf("(a) restore to TXID %d inside the window: %v", i, err)
		case slices.Contains(reachable, i) && got != states[i]:
			t.Errorf("(a) restore to TXID %d: rows differ from the database's at that TXID", i)
		case !slices.Contains(reachable, i) && err == nil:
			t.Errorf("(b) restore to TXID %d succeeded; it is outside the window or its granularity", i)
		}
	}
	if got, err := restoreState(t, client, restore.Target{}); err != nil || got != final || got != states[syncs] {
		t.Fatalf("latest restore: %v; equal to the database: %v", err, got == final)
	}
	// Points in time: one in the per-sync period, one in the L1-only part
	// of the window (the last file ending before it is L1 61-63).
	for _, tc := range []struct {
		at   time.Time
		txid int
	}{{syncAt(85).Add(5 * time.Second), 85}, {syncAt(64).Add(5 * time.Second), 63}} {
		got, err := restoreState(t, client, restore.Target{Time: tc.at})
		if err != nil || got != states[tc.txid] {
			t.Fatalf("restore to %v: %v; want the state of TXID %d", tc.at, err, tc.txid)
		}
	}
	if _, err := restoreState(t, client, restore.Target{Time: syncAt(50)}); err == nil {
		t.Fatal("(b) restore to a time before the window succeeded")
	}
}

// put stores a synthetic LTX file whose header timestamp (and so CreatedAt)
// is syncAt(maxTXID) and which holds pages 1..pages.
func put(t testing.TB, c *file.Client, level int, minTXID, maxTXID ltx.TXID, pages int) []byte {
	t.Helper()
	data := storagetest.LTX(t, minTXID, maxTXID, pages, 4096, syncAt(int(maxTXID)), true)
	if _, err := c.WriteLTXFile(context.Background(), level, minTXID, maxTXID, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return data
}

func names(files []*storage.FileInfo) string {
	var s []string
	for _, fi := range files {
		s = append(s, fmt.Sprintf("L%d:%d-%d", fi.Level, fi.MinTXID, fi.MaxTXID))
	}
	return strings.Join(s, " ")
}

// TestCompactStopsAtGap: a gap in L0 ends the merged run before it, is
// logged, and is an ErrGap once nothing before it is left.
func TestCompactStopsAtGap(t *testing.T) {
	ctx := context.Background()
	c := file.New(t.TempDir())
	for _, r := range [][2]ltx.TXID{{1, 1}, {2, 2}, {3, 4}, {5, 5}, {7, 7}, {8, 9}} {
		put(t, c, 0, r[0], r[1], 2)
	}
	var logs bytes.Buffer
	opts := compact.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	mustCompact(t, c, 1, opts, 1, 5)
	if !strings.Contains(logs.String(), "gap") || !strings.Contains(logs.String(), "L0/0000000000000007-0000000000000007.ltx") {
		t.Fatalf("the gap was not logged: %s", logs.String())
	}
	info, err := compact.Compact(ctx, c, 1, opts)
	if !errors.Is(err, compact.ErrGap) || info != nil {
		t.Fatalf("compact at the gap: %v, %v; want ErrGap", info, err)
	}
	if got := names(list(t, c, 1)); got != "L1:1-5" {
		t.Fatalf("L1 holds %s", got)
	}

	// An empty destination starts at the source's first file, wherever
	// that is.
	c2 := file.New(t.TempDir())
	for _, r := range [][2]ltx.TXID{{3, 3}, {4, 6}, {7, 7}, {9, 9}} {
		put(t, c2, 1, r[0], r[1], 2)
	}
	mustCompact(t, c2, 2, opts, 3, 7)

	if _, err := compact.Compact(ctx, c, 0, opts); err == nil {
		t.Fatal("compacting into L0 was accepted")
	}
	if _, err := compact.Compact(ctx, c, storage.SnapshotLevel, opts); err == nil {
		t.Fatal("compacting into L9 was accepted")
	}
}

// TestCompactCorruptInput: a byte flipped in an L0 file on disk fails the
// compaction with a CorruptError, and nothing appears at the destination,
// whether the damaged file is in the only pass or a later one.
func TestCompactCorruptInput(t *testing.T) {
	for _, maxInputs := range []int{0, 2} {
		t.Run(fmt.Sprintf("MaxInputs=%d", maxInputs), func(t *testing.T) {
			c := file.New(t.TempDir())
			for i := ltx.TXID(1); i <= 6; i++ {
				put(t, c, 0, i, i, 3)
			}
			path := c.Path(0, 5, 5)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			info, err := compact.Compact(context.Background(), c, 1, compact.Options{MaxInputs: maxInputs, TempDir: t.TempDir(), Logger: quiet()})
			if !storage.IsCorrupt(err) || info != nil {
				t.Fatalf("compact with a corrupt input: %v, %v; want a CorruptError", info, err)
			}
			if !strings.Contains(err.Error(), "0000000000000005-0000000000000005.ltx") {
				t.Fatalf("error does not name the damaged file: %v", err)
			}
			entries, err := os.ReadDir(c.LevelDir(1))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Fatalf("a failed compaction left %d entries at L1, e.g. %s", len(entries), entries[0].Name())
			}
		})
	}
}

// decodePages returns the pages of an LTX file and its header.
func decodePages(t testing.TB, r io.Reader) (ltx.Header, map[uint32][]byte) {
	t.Helper()
	dec := ltx.NewDecoder(r)
	if err := dec.DecodeHeader(); err != nil {
		t.Fatal(err)
	}
	hdr := dec.Header()
	pages := map[uint32][]byte{}
	for {
		var ph ltx.PageHeader
		data := make([]byte, hdr.PageSize)
		if err := dec.DecodePage(&ph, data); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pages[ph.Pgno] = data
	}
	if err := dec.Close(); err != nil {
		t.Fatal(err)
	}
	return hdr, pages
}

// TestCompactInPasses: a run longer than MaxInputs is merged in passes
// into the same single file, byte for byte, as one pass gives; its pages
// are the newest version of each page up to the last file's size, and its
// header has the newest input's timestamp.
func TestCompactInPasses(t *testing.T) {
	const n = 20
	sizes := func(i ltx.TXID) int { return 3 + int(i*7)%11 } // grows and shrinks
	var inputs [][]byte
	var outputs [][]byte
	for _, maxInputs := range []int{0, 1, 2, 3, 7} {
		c := file.New(t.TempDir())
		inputs = inputs[:0]
		for i := ltx.TXID(1); i <= n; i++ {
			inputs = append(inputs, put(t, c, 0, i, i, sizes(i)))
		}
		mustCompact(t, c, 1, compact.Options{MaxInputs: maxInputs, TempDir: t.TempDir(), Logger: quiet()}, 1, n)
		b, err := os.ReadFile(c.Path(1, 1, n))
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, b)
		fi := list(t, c, 1)[0]
		if !fi.CreatedAt.Equal(syncAt(n)) {
			t.Fatalf("CreatedAt %v, want the newest input's %v", fi.CreatedAt, syncAt(n))
		}
	}
	for i := range outputs {
		if !bytes.Equal(outputs[i], outputs[0]) {
			t.Fatalf("merge %d differs from the single-pass merge", i)
		}
	}
	want := map[uint32][]byte{}
	for _, in := range inputs {
		_, pages := decodePages(t, bytes.NewReader(in))
		for pg, data := range pages {
			want[pg] = data
		}
	}
	hdr, got := decodePages(t, bytes.NewReader(outputs[0]))
	if hdr.MinTXID != 1 || hdr.MaxTXID != n || hdr.Commit != uint32(sizes(n)) || hdr.Timestamp != syncAt(n).UnixMilli() || hdr.Flags != ltx.HeaderFlagNoChecksum {
		t.Fatalf("header %+v", hdr)
	}
	if len(got) != sizes(n) {
		t.Fatalf("merged file holds %d pages, want %d", len(got), sizes(n))
	}
	for pg, data := range got {
		if !bytes.Equal(data, want[pg]) {
			t.Fatalf("page %d is not the newest input's", pg)
		}
	}
}

// TestEnforceL0Retention: only L0 files that L1 covers, older than the
// retention, up to an L1 boundary, and never the newest.
func TestEnforceL0Retention(t *testing.T) {
	ctx := context.Background()
	c := file.New(t.TempDir())
	for i := ltx.TXID(1); i <= 10; i++ {
		put(t, c, 0, i, i, 2)
	}
	// Nothing in L1 yet: nothing to delete, however old.
	if del, err := compact.EnforceL0Retention(ctx, c, time.Second, syncAt(100)); err != nil || len(del) != 0 {
		t.Fatalf("without L1: deleted %s, %v", names(del), err)
	}
	put(t, c, 1, 1, 3, 2)
	put(t, c, 1, 4, 6, 2)
	put(t, c, 1, 7, 9, 2)
	// Disabled.
	if del, err := compact.EnforceL0Retention(ctx, c, 0, syncAt(100)); err != nil || len(del) != 0 {
		t.Fatalf("retention 0: deleted %s, %v", names(del), err)
	}
	// Files 1..5 are old enough; the cut goes back to L1's boundary at 3,
	// so that TXIDs 4 and 5 stay reachable through L1 1-3 and L0 4, 5.
	del, err := compact.EnforceL0Retention(ctx, c, 50*time.Second, syncAt(5).Add(50*time.Second))
	if err != nil || names(del) != "L0:1-1 L0:2-2 L0:3-3" {
		t.Fatalf("deleted %s, %v; want L0 1..3", names(del), err)
	}
	for _, txid := range []ltx.TXID{4, 5, 9, 10} {
		if _, err := restore.Plan(ctx, c, restore.Target{TXID: txid}); err != nil {
			t.Fatalf("TXID %s no longer reachable: %v", txid, err)
		}
	}
	// Everything old: up to L1's end (9); 10 is not compacted.
	del, err = compact.EnforceL0Retention(ctx, c, time.Minute, syncAt(1000))
	if err != nil || names(del) != "L0:4-4 L0:5-5 L0:6-6 L0:7-7 L0:8-8 L0:9-9" {
		t.Fatalf("deleted %s, %v; want L0 4..9", names(del), err)
	}
	// Everything compacted and old: the newest L0 file stays.
	put(t, c, 1, 10, 10, 2)
	del, err = compact.EnforceL0Retention(ctx, c, time.Minute, syncAt(1000))
	if err != nil || len(del) != 0 {
		t.Fatalf("deleted %s, %v; want nothing (10 is the newest)", names(del), err)
	}
	if got := names(list(t, c, 0)); got != "L0:10-10" {
		t.Fatalf("L0 holds %s", got)
	}
}

// TestEnforceSnapshotRetention: the floor is the newest deleted snapshot;
// a level's files are kept while the level above does not reach them, so
// the next compaction finds no gap; the newest file of each level stays.
func TestEnforceSnapshotRetention(t *testing.T) {
	ctx := context.Background()
	c := file.New(t.TempDir())
	for i := ltx.TXID(1); i <= 30; i++ {
		put(t, c, 0, i, i, 2)
	}
	for i := ltx.TXID(3); i <= 30; i += 3 {
		put(t, c, 1, i-2, i, 2)
	}
	put(t, c, 2, 1, 9, 2) // L2 lags behind at 9
	put(t, c, 3, 1, 9, 2)
	put(t, c, 9, 1, 10, 2)
	put(t, c, 9, 1, 20, 2)
	put(t, c, 9, 1, 25, 2)
	now := syncAt(30)

	// Nothing expired.
	if floor, del, err := compact.EnforceSnapshotRetention(ctx, c, time.Hour, now); err != nil || floor != 0 || len(del) != 0 {
		t.Fatalf("nothing expired: floor %s, deleted %s, %v", floor, names(del), err)
	}
	// Snapshots 10 and 20 expire (25 is recent): the floor is 20.
	floor, del, err := compact.EnforceSnapshotRetention(ctx, c, 60*time.Second, now)
	if err != nil || floor != 20 {
		t.Fatalf("floor %s, %v; want 20", floor, err)
	}
	want := "L9:1-10 L9:1-20 " +
		// L0 below 20 and within L1 (which reaches 30).
		"L0:1-1 L0:2-2 L0:3-3 L0:4-4 L0:5-5 L0:6-6 L0:7-7 L0:8-8 L0:9-9 L0:10-10 L0:11-11 L0:12-12 L0:13-13 L0:14-14 L0:15-15 L0:16-16 L0:17-17 L0:18-18 L0:19-19 " +
		// L1 below 20 but only what L2 reaches (9).
		"L1:1-3 L1:4-6 L1:7-9"
	// L2 1-9 and L3 1-9 are their levels' newest.
	if names(del) != want {
		t.Fatalf("deleted\n %s\nwant\n %s", names(del), want)
	}
	// L2 resumes where it ended, without a gap.
	mustCompact(t, c, 2, compact.Options{Logger: quiet()}, 10, 30)
	for _, txid := range []ltx.TXID{25, 26, 30, 0} {
		if _, err := restore.Plan(ctx, c, restore.Target{TXID: txid}); err != nil {
			t.Fatalf("TXID %s (inside the window) is unreachable: %v", txid, err)
		}
	}
	// The newest snapshot is kept however old.
	floor, del, err = compact.EnforceSnapshotRetention(ctx, c, time.Second, syncAt(10000))
	if err != nil || names(del) != "" || floor != 0 {
		t.Fatalf("only the newest snapshot left: floor %s, deleted %s, %v", floor, names(del), err)
	}
	if got := names(list(t, c, 9)); got != "L9:1-25" {
		t.Fatalf("L9 holds %s", got)
	}
	// Disabled.
	if floor, del, err := compact.EnforceSnapshotRetention(ctx, c, 0, syncAt(10000)); err != nil || floor != 0 || len(del) != 0 {
		t.Fatalf("retention 0: %s %s %v", floor, names(del), err)
	}
}

func TestLevels(t *testing.T) {
	want := []compact.Level{{1, 30 * time.Second}, {2, 5 * time.Minute}, {3, time.Hour}}
	if !slices.Equal(compact.DefaultLevels, want) {
		t.Fatalf("DefaultLevels %v", compact.DefaultLevels)
	}
	l := compact.DefaultLevels[1]
	now := time.Date(2026, 1, 1, 10, 7, 30, 0, time.UTC)
	if got := l.PrevCompactionAt(now); !got.Equal(time.Date(2026, 1, 1, 10, 5, 0, 0, time.UTC)) {
		t.Fatalf("PrevCompactionAt %v", got)
	}
	if got := l.NextCompactionAt(now); !got.Equal(time.Date(2026, 1, 1, 10, 10, 0, 0, time.UTC)) {
		t.Fatalf("NextCompactionAt %v", got)
	}
}

// TestBacklogLongerThanAListing: a level holding more files than one
// listing may (storage.MaxListedFiles) is worked through in batches:
// compaction merges the first batch per run and L0 retention deletes its
// prefix, so a replica that fell behind recovers instead of failing every
// run; every TXID stays restorable.
func TestBacklogLongerThanAListing(t *testing.T) {
	ctx := context.Background()
	defer func(n int) { storage.MaxListedFiles = n }(storage.MaxListedFiles)
	storage.MaxListedFiles = 4
	c := file.New(t.TempDir())
	for i := ltx.TXID(1); i <= 10; i++ {
		put(t, c, 0, i, i, 2)
	}
	if _, err := restore.Plan(ctx, c, restore.Target{}); !errors.Is(err, storage.ErrTooManyFiles) {
		t.Fatalf("restore of 10 L0 files with MaxListedFiles 4: %v; want ErrTooManyFiles", err)
	}
	opts := compact.Options{Logger: quiet()}
	mustCompact(t, c, 1, opts, 1, 4)
	mustCompact(t, c, 1, opts, 5, 8)
	mustCompact(t, c, 1, opts, 9, 10)
	mustNothing(t, c, 1)
	del, err := compact.EnforceL0Retention(ctx, c, time.Second, syncAt(1000))
	if err != nil || names(del) != "L0:1-1 L0:2-2 L0:3-3 L0:4-4" {
		t.Fatalf("L0 retention deleted %s, %v; want the first batch, 1..4", names(del), err)
	}
	del, err = compact.EnforceL0Retention(ctx, c, time.Second, syncAt(1000))
	if err != nil || names(del) != "L0:5-5 L0:6-6 L0:7-7 L0:8-8" {
		t.Fatalf("L0 retention deleted %s, %v; want 5..8", names(del), err)
	}
	del, err = compact.EnforceL0Retention(ctx, c, time.Second, syncAt(1000))
	if err != nil || names(del) != "L0:9-9" {
		t.Fatalf("L0 retention deleted %s, %v; want 9, keeping the newest", names(del), err)
	}
	for _, txid := range []ltx.TXID{4, 8, 10} { // where the L1 batches end
		if _, err := restore.Plan(ctx, c, restore.Target{TXID: txid}); err != nil {
			t.Fatalf("TXID %s: %v", txid, err)
		}
	}
}

// TestCompactRefusesAStrayDestination: a compaction resumes after its
// destination's newest file; a file walsync did not write there (an empty
// object with a huge TXID, or a well-formed one past the database's TXID)
// fails the compaction with ErrForeignFile instead of stalling the level
// silently (compaction found nothing new past it, and the replica's latest
// state became unrestorable with nothing logged).
func TestCompactRefusesAStrayDestination(t *testing.T) {
	ctx := context.Background()
	opts := compact.Options{Logger: quiet()}
	for _, tc := range []struct {
		name  string
		plant func(c *file.Client)
		pos   ltx.TXID
	}{
		{"empty object", func(c *file.Client) {
			p := c.Path(2, 0xffffffff, 0xffffffff)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, 0},
		{"well formed, past the database", func(c *file.Client) { put(t, c, 2, 1000, 1000, 2) }, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := file.New(t.TempDir())
			for i := ltx.TXID(1); i <= 6; i++ {
				put(t, c, 1, i, i, 2)
			}
			tc.plant(c)
			o := opts
			o.Position = tc.pos
			info, err := compact.Compact(ctx, c, 2, o)
			if !errors.Is(err, compact.ErrForeignFile) || info != nil {
				t.Fatalf("compact into L2 past a stray file: %v, %v; want ErrForeignFile", info, err)
			}
		})
	}
	// The file it wrote itself is trusted without reading it again.
	c := file.New(t.TempDir())
	for i := ltx.TXID(1); i <= 6; i++ {
		put(t, c, 1, i, i, 2)
	}
	first, err := compact.Compact(ctx, c, 2, opts)
	if err != nil || first == nil {
		t.Fatal(first, err)
	}
	put(t, c, 1, 7, 7, 2)
	opts.LastOutput, opts.Position = first, 7
	mustCompact(t, c, 2, opts, 7, 7)
}
