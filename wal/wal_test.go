package wal_test

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
		pages := map[uint32]int64{}
		end, err := wal.Scan(bytes.NewReader(b), wal.Start(h), make([]byte, h.FrameSize()), pages)
		if err != nil {
			t.Fatal(err)
		}
		if end.Frame != frames || end.Commit == 0 || len(pages) == 0 {
			t.Fatalf("page size %d: scan ended at frame %d of %d (commit %d, %d pages)", ps, end.Frame, frames, end.Commit, len(pages))
		}

		// Cut the last frame in half: the last transaction is no longer
		// committed, the scan stops at the one before.
		cut := b[:len(b)-int(h.FrameSize())/2]
		short, err := wal.Scan(bytes.NewReader(cut), wal.Start(h), make([]byte, h.FrameSize()), nil)
		if err != nil || short.Frame >= end.Frame || short.Frame == 0 {
			t.Fatalf("truncated WAL: scan ended at %d (full %d): %v", short.Frame, end.Frame, err)
		}

		// A flipped byte in a middle frame breaks the checksum chain there.
		bad := bytes.Clone(b)
		mid := h.FrameOffset(frames/2) + wal.FrameHeaderSize + 10
		bad[mid] ^= 1
		broken, _ := wal.Scan(bytes.NewReader(bad), wal.Start(h), make([]byte, h.FrameSize()), nil)
		if broken.Frame >= frames/2 {
			t.Fatalf("corrupt frame %d was accepted (scan reached %d)", frames/2, broken.Frame)
		}

		// Frames of another generation (different salt) are not read.
		other := bytes.Clone(b)
		other[h.FrameOffset(2)+8] ^= 0xff // salt-1 of frame 2
		if p, _ := wal.Scan(bytes.NewReader(other), wal.Start(h), make([]byte, h.FrameSize()), nil); p.Frame >= 2 {
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
	pages := map[uint32]int64{}
	wal.Scan(bytes.NewReader(b), wal.Start(h), make([]byte, h.FrameSize()), pages)
	data := make([]byte, h.PageSize)
	for pg, n := range pages {
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
		end, err := wal.Scan(bytes.NewReader(b), wal.Start(h), make([]byte, h.FrameSize()), map[uint32]int64{})
		if err != nil {
			t.Fatal(err)
		}
		if end.Frame > 0 && (end.Commit == 0 || end.Offset() > int64(len(b))) {
			t.Fatalf("scan ended at frame %d (commit %d, offset %d of %d bytes)", end.Frame, end.Commit, end.Offset(), len(b))
		}
	})
}
