package verify_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"
	"golang.org/x/sys/unix"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
	"github.com/walsync/walsync/verify"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// syncAt is when the test's clock makes sync (and TXID) i: every 10 s.
func syncAt(i int) time.Time { return t0.Add(time.Duration(i) * 10 * time.Second) }

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
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

func name(level int, minTXID, maxTXID ltx.TXID) string {
	return fmt.Sprintf("L%d/%s", level, ltx.FormatFilename(minTXID, maxTXID))
}

const (
	syncs = 50
	// The last L1 compaction is at TXID compactedTo: L0 43..50 is newer
	// than every compaction.
	compactedTo = 42
)

var (
	captured     string // a replica written by capture, compacted, with retention applied
	capturedOnce sync.Once
	capturedErr  error
)

// capturedReplica returns a private copy of a replica that capture wrote:
// 50 syncs of a real database 10 s apart (inserts, updates, a checkpoint, a
// VACUUM that shrinks it), L1 compactions every 3 syncs up to TXID 42, L2
// every 9 up to 36, L3 at 27, snapshots at 10, 20, 30 and 40, L0 retention
// of 100 s after every L1 compaction and at the end, and snapshot retention
// of 125 s at 40 (snapshots 10 and 20 go, the floor is 20). It is built once
// per test binary.
func capturedReplica(t *testing.T) *file.Client {
	t.Helper()
	capturedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "walsync-verify-test-")
		if err != nil {
			capturedErr = err
			return
		}
		captured = dir
		capturedErr = buildCaptured(dir)
	})
	if capturedErr != nil {
		t.Fatal(capturedErr)
	}
	return cloneReplica(t, filepath.Join(captured, "replica"))
}

func TestMain(m *testing.M) {
	code := m.Run()
	if captured != "" {
		os.RemoveAll(captured)
	}
	os.Exit(code)
}

func buildCaptured(dir string) (err error) {
	ctx := context.Background()
	path := filepath.Join(dir, "app.db")
	app, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000&_journal_mode=WAL")
	if err != nil {
		return err
	}
	defer app.Close()
	app.SetMaxOpenConns(1)
	if _, err := app.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)"); err != nil {
		return err
	}
	client := file.New(filepath.Join(dir, "replica"))
	now := t0
	cdb, err := capture.Open(ctx, capture.Options{
		Path: path, Client: client, TempDir: dir, CheckpointPages: 50,
		Logger: quiet(), Now: func() time.Time { return now },
	})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := cdb.Close(ctx); err == nil {
			err = cerr
		}
	}()
	opts := compact.Options{TempDir: dir, Logger: quiet()}
	const l0Retention, snapshotRetention = 100 * time.Second, 125 * time.Second
	for i := 1; i <= syncs; i++ {
		var qs [][]any
		if i > 1 {
			for k := 0; k < 5; k++ {
				qs = append(qs, []any{"INSERT INTO t (v, b) VALUES (?, randomblob(?))", fmt.Sprintf("s%d-%d", i, k), 300 + k*500 + i*17})
			}
			qs = append(qs, []any{"UPDATE t SET v = v || '+' WHERE id % 5 = ?", i % 5})
		}
		switch i {
		case 15:
			qs = append(qs, []any{"PRAGMA wal_checkpoint(TRUNCATE)"})
		case 25:
			qs = append(qs, []any{"DELETE FROM t WHERE id % 3 = 0"}, []any{"VACUUM"})
		}
		for _, q := range qs {
			if _, err := app.Exec(q[0].(string), q[1:]...); err != nil {
				return fmt.Errorf("%s: %w", q[0], err)
			}
		}
		now = syncAt(i)
		st, err := cdb.Sync(ctx)
		if err != nil {
			return fmt.Errorf("sync %d: %w", i, err)
		}
		if st.TXID != ltx.TXID(i) {
			return fmt.Errorf("sync %d reached TXID %s", i, st.TXID)
		}
		if i%3 == 0 && i <= compactedTo {
			if _, err := compact.Compact(ctx, client, 1, opts); err != nil {
				return err
			}
			if _, err := compact.EnforceL0Retention(ctx, client, l0Retention, now); err != nil {
				return err
			}
		}
		if i%9 == 0 && i <= compactedTo {
			if _, err := compact.Compact(ctx, client, 2, opts); err != nil {
				return err
			}
		}
		if i == 27 {
			if _, err := compact.Compact(ctx, client, 3, opts); err != nil {
				return err
			}
		}
		if i%10 == 0 && i <= 40 {
			if _, err := cdb.Snapshot(ctx); err != nil {
				return fmt.Errorf("snapshot at %d: %w", i, err)
			}
		}
		if i == 40 {
			floor, _, err := compact.EnforceSnapshotRetention(ctx, client, snapshotRetention, now)
			if err != nil {
				return err
			}
			if floor != 20 {
				return fmt.Errorf("snapshot retention floor %s, want 20", floor)
			}
		}
	}
	_, err = compact.EnforceL0Retention(ctx, client, l0Retention, now)
	return err
}

// cloneReplica copies a file replica, with its SHA-256 attributes (or
// sidecars) and modification times, into a new temp directory.
func cloneReplica(t *testing.T, src string) *file.Client {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "replica")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			return err
		}
		buf := make([]byte, 128)
		if n, err := unix.Getxattr(p, file.XattrSHA256, buf); err == nil {
			if err := unix.Setxattr(out, file.XattrSHA256, buf[:n], 0); err != nil {
				return err
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chtimes(out, info.ModTime(), info.ModTime())
	})
	if err != nil {
		t.Fatal(err)
	}
	return file.New(dst)
}

func run(t *testing.T, c storage.Client, opts verify.Options) *verify.Report {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	if opts.TempDir == "" {
		opts.TempDir = t.TempDir()
	}
	rep, err := verify.Replica(context.Background(), c, opts)
	if err != nil {
		t.Fatalf("verify %s: %v", c, err)
	}
	return rep
}

func problems(rep *verify.Report) string {
	var s []string
	for _, p := range rep.Problems {
		s = append(s, p.String())
	}
	return strings.Join(s, "\n")
}

func mustOK(t *testing.T, rep *verify.Report) {
	t.Helper()
	if !rep.OK() {
		t.Fatalf("a healthy replica has %d problems:\n%s", len(rep.Problems), problems(rep))
	}
}

// has asserts that rep holds a problem of kind for object, and returns it.
func has(t *testing.T, rep *verify.Report, kind, object string) verify.Problem {
	t.Helper()
	for _, p := range rep.Problems {
		if p.Kind == kind && p.Object == object {
			return p
		}
	}
	t.Fatalf("no %s problem for %s among:\n%s", kind, object, problems(rep))
	return verify.Problem{}
}

func kinds(rep *verify.Report) []string {
	var k []string
	for _, p := range rep.Problems {
		k = append(k, p.Kind)
	}
	slices.Sort(k)
	return slices.Compact(k)
}

// TestVerifyHealthyCapturedReplica: a replica after compaction, L0 retention and
// snapshot retention (so every level starts above TXID 1, and L0 and L1 hold
// TXIDs other levels also hold) has no problem, and restores.
func TestVerifyHealthyCapturedReplica(t *testing.T) {
	c := capturedReplica(t)

	// The replica is shaped as retention leaves it: otherwise this test
	// would prove nothing about false gaps.
	l0, l1, l2, l3, snaps := list(t, c, 0), list(t, c, 1), list(t, c, 2), list(t, c, 3), list(t, c, storage.SnapshotLevel)
	if l0[0].MinTXID == 1 || l1[0].MinTXID == 1 || l2[0].MinTXID == 1 {
		t.Fatalf("retention left L0 from %s, L1 from %s, L2 from %s: want each above TXID 1", l0[0].MinTXID, l1[0].MinTXID, l2[0].MinTXID)
	}
	if l0[0].MinTXID > compactedTo || l0[len(l0)-1].MaxTXID != syncs {
		t.Fatalf("L0 holds %s-%s: want it to start behind L1 (%d) and reach %d", l0[0].MinTXID, l0[len(l0)-1].MaxTXID, compactedTo, syncs)
	}
	if len(snaps) != 2 || snaps[0].MaxTXID != 30 || snaps[1].MaxTXID != 40 || len(l3) == 0 {
		t.Fatalf("snapshots %v, L3 %v: want snapshots 30 and 40 and an L3 file", snaps, l3)
	}

	for _, n := range []int{1, 16} {
		// Time-based retention keeps every snapshot continuing to the
		// latest state: strict or not, nothing to report.
		rep := run(t, c, verify.Options{Name: "app", Restore: true, Concurrency: n, StrictSnapshots: n > 1})
		mustOK(t, rep)
		// L3 1-27 is the oldest file restores continue from.
		if rep.WindowFrom != 27 || len(rep.Isolated) != 0 || rep.Vanished != 0 {
			t.Fatalf("window from %s, isolated %v, vanished %d; want 27, none, 0", rep.WindowFrom, rep.Isolated, rep.Vanished)
		}
		if rep.Restore == nil || rep.Restore.TXID != syncs || rep.Restore.Skipped != "" {
			t.Fatalf("the test restore: %+v, want TXID %d", rep.Restore, syncs)
		}
		all, err := restore.ListAll(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		var bytes int64
		levels := map[int]int{}
		for _, fi := range all {
			bytes += fi.Size
			levels[fi.Level]++
		}
		if rep.Name != "app" || rep.Files != len(all) || rep.Bytes != bytes || fmt.Sprint(rep.Levels) != fmt.Sprint(levels) || rep.LatestTXID != syncs {
			t.Fatalf("report %s: %d files, %d bytes, levels %v, latest %s; want %d, %d, %v, %d",
				rep.Name, rep.Files, rep.Bytes, rep.Levels, rep.LatestTXID, len(all), bytes, levels, syncs)
		}
	}
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	off := info.Size() / 2
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyCorruptObject: a flipped byte is a corrupt problem naming the object,
// whether the object carries a SHA-256 (walsync) or not (Litestream: the LTX
// checksums catch it). A corrupt file in the latest plan skips the restore.
func TestVerifyCorruptObject(t *testing.T) {
	c := capturedReplica(t)
	l1 := list(t, c, 1)
	mid := l1[len(l1)/2]
	flipByte(t, c.Path(1, mid.MinTXID, mid.MaxTXID))
	rep := run(t, c, verify.Options{})
	p := has(t, rep, verify.KindCorrupt, mid.String())
	if !strings.Contains(p.Message, "SHA-256") || len(rep.Problems) != 1 {
		t.Fatalf("want one problem, a SHA-256 mismatch; got:\n%s", problems(rep))
	}

	// Without a SHA-256, as Litestream writes objects.
	l0 := list(t, c, 0)
	last := l0[len(l0)-1]
	path := c.Path(0, last.MinTXID, last.MaxTXID)
	if err := unix.Removexattr(path, file.XattrSHA256); err != nil {
		t.Fatal(err)
	}
	os.Remove(path + file.SidecarSuffix)
	rep = run(t, c, verify.Options{})
	if len(rep.Problems) != 1 {
		t.Fatalf("removing the SHA-256 alone is a problem:\n%s", problems(rep))
	}
	flipByte(t, path)
	rep = run(t, c, verify.Options{Restore: true})
	p = has(t, rep, verify.KindCorrupt, last.String())
	if strings.Contains(p.Message, "SHA-256") {
		t.Fatalf("an object without a SHA-256 reported as %q", p.Message)
	}
	if rep.Restore == nil || !strings.Contains(rep.Restore.Skipped, last.String()) {
		t.Fatalf("the restore went ahead with a corrupt file in its plan: %+v", rep.Restore)
	}
	if len(rep.Problems) != 2 {
		t.Fatalf("want the two corrupt objects only:\n%s", problems(rep))
	}
}

// TestVerifyGaps: a file deleted from the middle of L0 where nothing else holds
// its TXID is a gap, and the latest state is unreachable; a hole that
// retention could have left half-done is not a problem: L0 files that L1
// reaches past, and files of any level below the oldest snapshot.
func TestVerifyGaps(t *testing.T) {
	ctx := context.Background()
	c := capturedReplica(t)
	del := func(level int, minTXID, maxTXID ltx.TXID) {
		t.Helper()
		if err := c.DeleteLTXFiles(ctx, []*storage.FileInfo{{Level: level, MinTXID: minTXID, MaxTXID: maxTXID}}); err != nil {
			t.Fatal(err)
		}
	}
	has1 := func(level int, minTXID, maxTXID ltx.TXID) {
		t.Helper()
		for _, fi := range list(t, c, level) {
			if fi.MinTXID == minTXID && fi.MaxTXID == maxTXID {
				return
			}
		}
		t.Fatalf("the replica has no %s: the test's premise is wrong", name(level, minTXID, maxTXID))
	}

	// L0 41 is behind L1 40-42: L0 retention deletes such files.
	has1(0, 40, 40)
	has1(0, 41, 41)
	has1(1, 40, 42)
	del(0, 41, 41)
	mustOK(t, run(t, c, verify.Options{}))

	// L1 22-24 ends below the oldest snapshot (30): snapshot retention
	// deletes such files.
	has1(1, 22, 24)
	has1(1, 25, 27)
	del(1, 22, 24)
	mustOK(t, run(t, c, verify.Options{Restore: true}))

	// L1 34-36 is above it: a gap, although L2 28-36 keeps every TXID
	// restorable.
	has1(1, 34, 36)
	del(1, 34, 36)
	rep := run(t, c, verify.Options{})
	p := has(t, rep, verify.KindGap, name(1, 37, 39))
	if !strings.Contains(p.Message, "0000000000000022-0000000000000024") || len(rep.Problems) != 1 {
		t.Fatalf("want one gap, TXIDs 34-36 (hex 22-24):\n%s", problems(rep))
	}
	restoreFile(t, c, 1, 34, 36)

	// L0 47, newer than every compaction: a gap, and nothing reaches the
	// latest TXID. The snapshots stop at the same gap: not reported again.
	has1(0, 47, 47)
	del(0, 47, 47)
	rep = run(t, c, verify.Options{Restore: true})
	has(t, rep, verify.KindGap, name(0, 48, 48))
	p = has(t, rep, verify.KindUnreachable, name(0, 48, 48))
	if !strings.Contains(p.Message, "gap") || fmt.Sprint(kinds(rep)) != "[gap unreachable]" || len(rep.Problems) != 2 {
		t.Fatalf("want a gap and the unreachable latest state:\n%s", problems(rep))
	}
	if rep.Restore == nil || rep.Restore.Skipped == "" {
		t.Fatalf("a restore was attempted without a plan: %+v", rep.Restore)
	}
}

// restoreFile writes back a file deleted from the replica built by
// capturedReplica, from the pristine copy.
func restoreFile(t *testing.T, c *file.Client, level int, minTXID, maxTXID ltx.TXID) {
	t.Helper()
	b, err := os.ReadFile(file.New(filepath.Join(captured, "replica")).Path(level, minTXID, maxTXID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLTXFile(context.Background(), level, minTXID, maxTXID, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyOverlap: an extra file sharing TXIDs with files of its level.
func TestVerifyOverlap(t *testing.T) {
	ctx := context.Background()
	c := capturedReplica(t)
	data := storagetest.LTX(t, 45, 46, 3, 4096, syncAt(46), true)
	if _, err := c.WriteLTXFile(ctx, 0, 45, 46, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	rep := run(t, c, verify.Options{})
	p := has(t, rep, verify.KindOverlap, name(0, 45, 46))
	if !strings.Contains(p.Message, name(0, 45, 45)) || len(rep.Problems) != 2 {
		t.Fatalf("want L0 45-46 overlapping 45 and 46 overlapping it:\n%s", problems(rep))
	}
	has(t, rep, verify.KindOverlap, name(0, 46, 46))

	// One L1 file spanning several.
	c = capturedReplica(t)
	data = storagetest.LTX(t, 25, 40, 3, 4096, syncAt(40), true)
	if _, err := c.WriteLTXFile(ctx, 1, 25, 40, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	rep = run(t, c, verify.Options{})
	has(t, rep, verify.KindOverlap, name(1, 25, 40))
	if fmt.Sprint(kinds(rep)) != "[overlap]" {
		t.Fatalf("want overlaps only:\n%s", problems(rep))
	}
}

// synthetic writes files of 2 random pages (valid LTX, not a valid database).
func synthetic(t *testing.T, files ...[3]int) *file.Client {
	t.Helper()
	c := file.New(filepath.Join(t.TempDir(), "replica"))
	for _, f := range files {
		data := storagetest.LTX(t, ltx.TXID(f[1]), ltx.TXID(f[2]), 2, 4096, syncAt(f[2]), true)
		if _, err := c.WriteLTXFile(context.Background(), f[0], ltx.TXID(f[1]), ltx.TXID(f[2]), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func l0(from, to int) [][3]int {
	var out [][3]int
	for i := from; i <= to; i++ {
		out = append(out, [3]int{0, i, i})
	}
	return out
}

// TestVerifyLevelRules on synthetic replicas.
func TestVerifyLevelRules(t *testing.T) {
	for _, tc := range []struct {
		name       string
		files      [][3]int
		want       []string // "kind object", sorted
		wantStrict []string // with StrictSnapshots; nil: want
	}{
		{"snapshot then L0", append([][3]int{{9, 1, 5}}, l0(6, 10)...), nil, nil},
		{"L0 from 1", l0(1, 10), nil, nil},
		{"L0 starts late, a snapshot bridges", append([][3]int{{9, 1, 7}}, l0(5, 10)...), nil, nil},
		{"hole in L0", append(l0(1, 4), l0(6, 10)...), []string{"gap L0/6", "unreachable L0/6"}, nil},
		{"hole in L0 behind L1", append([][3]int{{1, 1, 8}}, append(l0(1, 4), l0(6, 10)...)...), nil, nil},
		{"hole in L0 past L1", append([][3]int{{1, 1, 4}}, append(l0(1, 4), l0(6, 10)...)...), []string{"gap L0/6", "unreachable L0/6"}, nil},
		{"hole below the oldest snapshot", append([][3]int{{9, 1, 8}, {9, 1, 12}}, append(l0(1, 4), l0(6, 14)...)...), nil, nil},
		{"hole above the oldest snapshot", append([][3]int{{9, 1, 3}, {9, 1, 12}}, append(l0(1, 4), l0(6, 14)...)...), []string{"gap L0/6"}, []string{"gap L0/6", "unreachable L9/1-3"}},
		{"overlap", append([][3]int{{0, 3, 4}}, l0(1, 5)...), []string{"overlap L0/3-4", "overlap L0/4"}, nil},
		{"duplicate range", append([][3]int{{1, 1, 4}, {1, 3, 4}, {1, 5, 6}}, l0(5, 8)...), []string{"overlap L1/3-4"}, nil},
		{"snapshot not at TXID 1", append([][3]int{{9, 2, 5}}, l0(1, 6)...), []string{"invalid L9/2-5"}, nil},
		{"no snapshot", l0(3, 6), []string{"unreachable L0/3"}, nil},
		// As GFS retention leaves it: the older snapshot is a standalone
		// restore point.
		{"snapshot cannot roll forward", append([][3]int{{9, 1, 10}, {9, 1, 30}}, l0(25, 35)...), nil, []string{"unreachable L9/1-10"}},
		{"newest snapshot ahead of L0", append([][3]int{{9, 1, 3}, {9, 1, 12}}, l0(1, 10)...), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := synthetic(t, tc.files...)
			for _, strict := range []bool{false, true} {
				want := tc.want
				if strict && tc.wantStrict != nil {
					want = tc.wantStrict
				}
				rep := run(t, c, verify.Options{StrictSnapshots: strict})
				var got []string
				for _, p := range rep.Problems {
					got = append(got, p.Kind+" "+short(p.Object))
				}
				slices.Sort(got)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("strict=%v: problems %v, want %v:\n%s", strict, got, want, problems(rep))
				}
			}
		})
	}
}

// short turns "L0/0000000000000006-0000000000000006.ltx" into "L0/6" and
// "L9/0000000000000001-0000000000000003.ltx" into "L9/1-3".
func short(object string) string {
	level, fname, ok := strings.Cut(object, "/")
	if !ok {
		return object
	}
	minTXID, maxTXID, err := ltx.ParseFilename(fname)
	if err != nil {
		return object
	}
	if minTXID == maxTXID {
		return fmt.Sprintf("%s/%d", level, minTXID)
	}
	return fmt.Sprintf("%s/%d-%d", level, minTXID, maxTXID)
}

// TestVerifyRestoreIntegrity: objects that verify but make no valid database:
// only --restore sees it.
func TestVerifyRestoreIntegrity(t *testing.T) {
	c := synthetic(t, [3]int{9, 1, 1})
	mustOK(t, run(t, c, verify.Options{}))
	rep := run(t, c, verify.Options{Restore: true})
	p := has(t, rep, verify.KindIntegrity, c.String())
	if len(rep.Problems) != 1 || !strings.Contains(p.Message, "integrity") {
		t.Fatalf("want one integrity problem:\n%s", problems(rep))
	}
	dir := t.TempDir()
	rep = run(t, c, verify.Options{Restore: true, TempDir: dir})
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("the test restore left %d entries in %s", len(left), dir)
	}
	if len(rep.Problems) != 1 {
		t.Fatalf("want one integrity problem:\n%s", problems(rep))
	}
}

// racingClient runs hook once, before the first object is opened.
type racingClient struct {
	storage.Client
	once     sync.Once
	hook     func()
	notFound string // an object that is always "not found" when opened
}

func (r *racingClient) OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID) (io.ReadCloser, error) {
	r.once.Do(r.hook)
	if name(level, minTXID, maxTXID) == r.notFound {
		return nil, fmt.Errorf("open: %w", storage.ErrNotFound)
	}
	return r.Client.OpenLTXFile(ctx, level, minTXID, maxTXID)
}

// TestVerifyWithRetentionRunning: L0 retention deletes files after the
// listing: they are neither corrupt nor gaps. An object listed again and
// again but never found is a problem.
func TestVerifyWithRetentionRunning(t *testing.T) {
	ctx := context.Background()
	c := capturedReplica(t)
	var deleted []*storage.FileInfo
	rc := &racingClient{Client: c, hook: func() {
		var err error
		deleted, err = compact.EnforceL0Retention(ctx, c, time.Second, syncAt(1000))
		if err != nil {
			t.Error(err)
		}
	}}
	rep := run(t, rc, verify.Options{Concurrency: 1})
	mustOK(t, rep)
	if len(deleted) == 0 || rep.Vanished != len(deleted) {
		t.Fatalf("retention deleted %d files, the report says %d vanished", len(deleted), rep.Vanished)
	}
	if l := list(t, c, 0); rep.Levels[0] != len(l) {
		t.Fatalf("the report counts %d L0 files, %d are left", rep.Levels[0], len(l))
	}

	l1 := list(t, c, 1)
	rc = &racingClient{Client: c, hook: func() {}, notFound: l1[0].String()}
	rep = run(t, rc, verify.Options{})
	has(t, rep, verify.KindMissing, l1[0].String())
	if len(rep.Problems) != 1 {
		t.Fatalf("want one missing object:\n%s", problems(rep))
	}
}

func TestVerifyEmptyReplica(t *testing.T) {
	_, err := verify.Replica(context.Background(), file.New(t.TempDir()), verify.Options{})
	if !errors.Is(err, restore.ErrNoReplica) {
		t.Fatalf("an empty replica: %v, want ErrNoReplica", err)
	}
}

// TestVerifyWindow: older snapshots that restores do not continue from (as
// GFS retention keeps them) are reported, and are problems only with
// StrictSnapshots.
func TestVerifyWindow(t *testing.T) {
	c := synthetic(t, append([][3]int{{9, 1, 5}, {9, 1, 10}, {9, 1, 20}, {1, 16, 18}}, l0(19, 25)...)...)
	rep := run(t, c, verify.Options{})
	mustOK(t, rep)
	if rep.WindowFrom != 20 || fmt.Sprint(rep.Isolated) != fmt.Sprint([]string{name(9, 1, 5), name(9, 1, 10)}) || rep.LatestTXID != 25 {
		t.Fatalf("window from %s, isolated %v, latest %s; want 20, the snapshots 5 and 10, 25", rep.WindowFrom, rep.Isolated, rep.LatestTXID)
	}
	rep = run(t, c, verify.Options{StrictSnapshots: true})
	has(t, rep, verify.KindUnreachable, name(9, 1, 5))
	p := has(t, rep, verify.KindUnreachable, name(9, 1, 10))
	if len(rep.Problems) != 2 || !strings.Contains(p.Message, "stop at TXID 000000000000000a") {
		t.Fatalf("want the two older snapshots:\n%s", problems(rep))
	}

	// Only snapshots: restores continue from none but the newest, as
	// compact's window says (the window used to start at the oldest).
	c = synthetic(t, [3]int{9, 1, 5}, [3]int{9, 1, 10})
	rep = run(t, c, verify.Options{})
	mustOK(t, rep)
	if rep.WindowFrom != 10 || fmt.Sprint(rep.Isolated) != fmt.Sprint([]string{name(9, 1, 5)}) {
		t.Fatalf("only snapshots: window from %s, isolated %v; want 10, the snapshot 5", rep.WindowFrom, rep.Isolated)
	}
	rep = run(t, c, verify.Options{StrictSnapshots: true})
	p = has(t, rep, verify.KindUnreachable, name(9, 1, 5))
	if len(rep.Problems) != 1 || !strings.Contains(p.Message, "stop at TXID 0000000000000005, short of TXID 000000000000000a") {
		t.Fatalf("want the older snapshot:\n%s", problems(rep))
	}
}

// TestVerifyPageSizeChange: a chain that crosses a page-size change with no
// snapshot to restart from (what walsync wrote before it took a snapshot at
// every resync) is reported without --restore; with the snapshot there is
// nothing to report. On main plain verify said OK and only --restore saw it.
func TestVerifyPageSizeChange(t *testing.T) {
	ctx := context.Background()
	c := file.New(t.TempDir())
	put := func(level int, minTX, maxTX ltx.TXID, pages int, pageSize uint32) {
		t.Helper()
		b := storagetest.LTX(t, minTX, maxTX, pages, pageSize, syncAt(int(maxTX)), false)
		if _, err := c.WriteLTXFile(ctx, level, minTX, maxTX, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	put(0, 1, 1, 2, 4096)
	put(0, 2, 2, 2, 4096)
	put(0, 3, 3, 2, 8192) // a resync's full image with the new page size
	put(0, 4, 4, 2, 8192)
	rep := run(t, c, verify.Options{})
	if !strings.Contains(problems(rep), verify.KindPageSize) || !strings.Contains(problems(rep), "L0/0000000000000003-0000000000000003.ltx") {
		t.Fatalf("a chain crossing a page-size change was not reported: %s", problems(rep))
	}
	put(storage.SnapshotLevel, 1, 3, 2, 8192)
	if rep := run(t, c, verify.Options{}); !rep.OK() {
		t.Fatalf("with a snapshot at the change: %s", problems(rep))
	}
}

// TestVerifyManyBadObjectsBounded: a replica stuffed with empty L0 objects
// lists at most MaxProblems problems and counts the rest, so the report
// (and the process) does not grow with the objects a bucket holds.
func TestVerifyManyBadObjectsBounded(t *testing.T) {
	c := synthetic(t, [3]int{9, 1, 1})
	const stray = verify.MaxProblems + 300
	for i := 2; i < 2+stray; i++ {
		p := c.Path(0, ltx.TXID(i), ltx.TXID(i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rep := run(t, c, verify.Options{})
	if rep.OK() || len(rep.Problems) > verify.MaxProblems || len(rep.Problems)+rep.Omitted < stray {
		t.Fatalf("verify of %d empty objects: OK %v, %d problems listed, %d omitted; want at most %d listed and every one counted",
			stray, rep.OK(), len(rep.Problems), rep.Omitted, verify.MaxProblems)
	}
}
