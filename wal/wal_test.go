package wal_test

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync/wal"
)

// realWAL writes n transactions with the real SQLite and returns the WAL
// file's bytes (the connection stays open, so the WAL is not checkpointed).
func realWAL(t testing.TB, pageSize, n int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	for _, q := range []string{fmt.Sprintf("PRAGMA page_size=%d", pageSize), "PRAGMA journal_mode=WAL", "PRAGMA wal_autocheckpoint=0", "CREATE TABLE t (v BLOB)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		if _, err := db.Exec("INSERT INTO t VALUES (randomblob(?))", pageSize/2); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestScanRealWAL(t *testing.T) {
	for _, ps := range []int{512, 4096, 65536} {
		b := realWAL(t, ps, 10)
		h, err := wal.ParseHeader(b)
		if err != nil {
			t.Fatalf("page size %d: %v", ps, err)
		}
		if h.PageSize != uint32(ps) {
			t.Fatalf("page size %d read as %d", ps, h.PageSize)
		}
		frames := (int64(len(b)) - wal.HeaderSize) / h.FrameSize()
		pages := wal.NewFrameIndex(nil)
		end, err := wal.Scan(bytes.NewReader(b), wal.Start(h), pages)
		if err != nil {
			t.Fatal(err)
		}
		if n := indexed(t, pages); end.Frame != frames || end.Commit == 0 || len(n) == 0 {
			t.Fatalf("page size %d: scan ended at frame %d of %d (commit %d, %d pages)", ps, end.Frame, frames, end.Commit, len(n))
		}

		// Cut the last frame in half: the last transaction is no longer
		// committed, the scan stops at the one before.
		cut := b[:len(b)-int(h.FrameSize())/2]
		short, err := wal.Scan(bytes.NewReader(cut), wal.Start(h), nil)
		if err != nil || short.Frame >= end.Frame || short.Frame == 0 {
			t.Fatalf("truncated WAL: scan ended at %d (full %d): %v", short.Frame, end.Frame, err)
		}

		// A flipped byte in a middle frame breaks the checksum chain there.
		bad := bytes.Clone(b)
		mid := h.FrameOffset(frames/2) + wal.FrameHeaderSize + 10
		bad[mid] ^= 1
		broken, _ := wal.Scan(bytes.NewReader(bad), wal.Start(h), nil)
		if broken.Frame >= frames/2 {
			t.Fatalf("corrupt frame %d was accepted (scan reached %d)", frames/2, broken.Frame)
		}

		// Frames of another generation (different salt) are not read.
		other := bytes.Clone(b)
		other[h.FrameOffset(2)+8] ^= 0xff // salt-1 of frame 2
		if p, _ := wal.Scan(bytes.NewReader(other), wal.Start(h), nil); p.Frame >= 2 {
			t.Fatalf("a frame with a foreign salt was accepted (scan reached %d)", p.Frame)
		}
	}
}

func TestParseHeaderRejects(t *testing.T) {
	b := realWAL(t, 4096, 1)
	if _, err := wal.ParseHeader(b[:10]); !errors.Is(err, wal.ErrNoHeader) {
		t.Fatalf("short header: %v", err)
	}
	for i, mutate := range []func([]byte){
		func(h []byte) { h[0] = 0 },   // magic
		func(h []byte) { h[7] ^= 1 },  // version
		func(h []byte) { h[10] = 3 },  // page size 0x0300
		func(h []byte) { h[17] ^= 1 }, // salt: header checksum breaks
	} {
		h := bytes.Clone(b[:wal.HeaderSize])
		mutate(h)
		if _, err := wal.ParseHeader(h); err == nil {
			t.Fatalf("mutation %d accepted", i)
		}
	}
}

func TestReadFramePage(t *testing.T) {
	b := realWAL(t, 4096, 3)
	h, _ := wal.ParseHeader(b)
	idx := wal.NewFrameIndex(nil)
	if _, err := wal.Scan(bytes.NewReader(b), wal.Start(h), idx); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, h.PageSize)
	for pg, n := range indexed(t, idx) {
		if err := wal.ReadFramePage(bytes.NewReader(b), h, n, pg, data); err != nil {
			t.Fatalf("page %d frame %d: %v", pg, n, err)
		}
		if !bytes.Equal(data, b[h.FrameOffset(n)+wal.FrameHeaderSize:h.FrameOffset(n+1)]) {
			t.Fatalf("page %d: wrong bytes", pg)
		}
		if err := wal.ReadFramePage(bytes.NewReader(b), h, n, pg+1, data); !errors.Is(err, wal.ErrOverwritten) {
			t.Fatalf("a frame holding another page: %v", err)
		}
		// A WAL truncated after a restart: the frame is gone.
		if err := wal.ReadFramePage(bytes.NewReader(b[:h.FrameOffset(n)+100]), h, n, pg, data); !errors.Is(err, wal.ErrOverwritten) {
			t.Fatalf("a truncated WAL: %v", err)
		}
	}
}

// FuzzScan: a WAL of arbitrary bytes never panics the reader, and whatever
// it accepts ends on a commit frame inside the data.
func FuzzScan(f *testing.F) {
	f.Add(realWAL(f, 512, 3))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := wal.ParseHeader(b)
		if err != nil {
			return
		}
		end, err := wal.Scan(bytes.NewReader(b), wal.Start(h), wal.NewFrameIndex(nil))
		if err != nil {
			t.Fatal(err)
		}
		if end.Frame > 0 && (end.Commit == 0 || end.Offset() > int64(len(b))) {
			t.Fatalf("scan ended at frame %d (commit %d, offset %d of %d bytes)", end.Frame, end.Commit, end.Offset(), len(b))
		}
	})
}

// indexed returns the index's entries.
func indexed(t testing.TB, x *wal.FrameIndex) map[uint32]int64 {
	t.Helper()
	m := map[uint32]int64{}
	if err := x.Range(math.MaxUint32, func(pg uint32, n int64) error { m[pg] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestScanOneHugeTransaction: a commit holding tens of thousands of pages
// (a first load, a VACUUM) is indexed page by page with the frame that last
// wrote each, as a commit of one page is.
func TestScanOneHugeTransaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{"PRAGMA page_size=512", "PRAGMA journal_mode=WAL", "PRAGMA wal_autocheckpoint=0", "PRAGMA cache_size=-65536", "CREATE TABLE t (v BLOB)",
		"BEGIN", "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 30000) INSERT INTO t SELECT randomblob(400) FROM s", "UPDATE t SET v = randomblob(400) WHERE rowid % 7 = 0", "COMMIT",
		"INSERT INTO t VALUES (randomblob(400))"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	b, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	h, err := wal.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	// The reference: the last frame of each page, read frame by frame.
	want := map[uint32]int64{}
	frames := (int64(len(b)) - wal.HeaderSize) / h.FrameSize()
	for n := int64(1); n <= frames; n++ {
		want[wal.ParseFrameHeader(b[h.FrameOffset(n):]).Pgno] = n
	}
	idx := wal.NewFrameIndex(nil)
	end, err := wal.Scan(bytes.NewReader(b), wal.Start(h), idx)
	if err != nil {
		t.Fatal(err)
	}
	if end.Frame != frames {
		t.Fatalf("scan ended at frame %d of %d", end.Frame, frames)
	}
	got := indexed(t, idx)
	if len(got) != len(want) || len(want) < 20000 {
		t.Fatalf("indexed %d pages, the WAL holds %d", len(got), len(want))
	}
	for pg, n := range want {
		if got[pg] != n {
			t.Fatalf("page %d: indexed frame %d, last written by %d", pg, got[pg], n)
		}
	}
}

// TestFrameIndexSpills: past its resident chunks the index spills to the
// file and reads back what it wrote, against a plain map.
func TestFrameIndexSpills(t *testing.T) {
	dir := t.TempDir()
	spills := 0
	x := wal.NewFrameIndex(func() (*os.File, error) {
		spills++
		return os.CreateTemp(dir, "spill")
	})
	defer x.Close()
	want := map[uint32]int64{}
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 400_000; i++ {
		var pg uint32
		if i%40 == 0 {
			pg = uint32(r.IntN(4_000_000)) + 1 // across ~1,000 chunks
		} else {
			pg = uint32(i) + 1 // a bulk load: ascending
		}
		n := int64(i + 1)
		if err := x.Set(pg, n); err != nil {
			t.Fatal(err)
		}
		want[pg] = n
		if i%997 == 0 { // reads interleaved with writes
			q := uint32(r.IntN(4_000_000)) + 1
			got, ok, err := x.Get(q)
			if w, wok := want[q]; err != nil || ok != wok || got != w {
				t.Fatalf("page %d: got %d %v %v, want %d %v", q, got, ok, err, w, wok)
			}
		}
	}
	if spills != 1 {
		t.Fatalf("spill files created: %d, want 1", spills)
	}
	got := indexed(t, x)
	if len(got) != len(want) {
		t.Fatalf("%d pages indexed, want %d", len(got), len(want))
	}
	for pg, n := range want {
		if got[pg] != n {
			t.Fatalf("page %d: frame %d, want %d", pg, got[pg], n)
		}
	}
	// Range stops at max.
	n := 0
	if err := x.Range(1000, func(pg uint32, _ int64) error {
		if pg > 1000 {
			t.Fatalf("page %d past max", pg)
		}
		n++
		return nil
	}); err != nil || n == 0 {
		t.Fatalf("ranged %d pages: %v", n, err)
	}
	if err := x.Set(1, 1<<33); err == nil {
		t.Fatal("a frame number past 32 bits was accepted")
	}
}

// TestFrameIndexSparseSpill: pages far apart (one per chunk) spill a few KiB
// each, not a chunk's worth of 16 KiB: the disk the spill takes stays in
// proportion to the frames scanned.
func TestFrameIndexSparseSpill(t *testing.T) {
	dir := t.TempDir()
	var spill *os.File
	x := wal.NewFrameIndex(func() (*os.File, error) {
		f, err := os.CreateTemp(dir, "spill")
		spill = f
		return f, err
	})
	defer x.Close()
	const n = 20_000
	for i := 1; i <= n; i++ {
		if err := x.Set(uint32(i)<<16, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if spill == nil {
		t.Fatal("nothing spilled")
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(spill.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 5<<10*n {
		t.Fatalf("%d sparse pages took %d bytes of spill (%d per page)", n, used, used/n)
	}
	for i := 1; i <= n; i += 997 {
		if f, ok, err := x.Get(uint32(i) << 16); err != nil || !ok || f != int64(i) {
			t.Fatalf("page %d: %d %v %v", i<<16, f, ok, err)
		}
	}
}
