// Package cross holds the tests that matter most on other architectures:
// 64-bit offsets and TXIDs on 32-bit ARM. scripts/cross-test.sh builds them
// for arm64 and armv7 and runs them under qemu; on the build machine they
// run with the rest of the suite.
package cross

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
	"github.com/walsync/walsync/wal"
)

// TestWALFrameBeyond4GiB reads a frame more than 4 GiB into a sparse WAL:
// offsets computed in a 32-bit int, or read with a 32-bit pread, would wrap.
func TestWALFrameBeyond4GiB(t *testing.T) {
	const pageSize = 4096
	hdr := make([]byte, wal.HeaderSize)
	binary.BigEndian.PutUint32(hdr[0:], 0x377f0682) // little-endian checksums
	binary.BigEndian.PutUint32(hdr[4:], 3007000)
	binary.BigEndian.PutUint32(hdr[8:], pageSize)
	binary.BigEndian.PutUint32(hdr[16:], 0xdeadbeef) // salt-1
	binary.BigEndian.PutUint32(hdr[20:], 0x01020304) // salt-2
	c1, c2 := wal.Checksum(false, 0, 0, hdr[:24])
	binary.BigEndian.PutUint32(hdr[24:], c1)
	binary.BigEndian.PutUint32(hdr[28:], c2)
	h, err := wal.ParseHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}

	n := int64(5<<30)/h.FrameSize() + 1 // the first frame past 5 GiB
	off := h.FrameOffset(n)
	if off <= 1<<32 {
		t.Fatalf("frame %d is at %d, not past 4 GiB", n, off)
	}
	frame := make([]byte, h.FrameSize())
	binary.BigEndian.PutUint32(frame[0:], 7)           // page number
	binary.BigEndian.PutUint32(frame[8:], 0xdeadbeef)  // salt-1
	binary.BigEndian.PutUint32(frame[12:], 0x01020304) // salt-2
	for i := wal.FrameHeaderSize; i < len(frame); i++ {
		frame[i] = byte(i * 31)
	}
	path := filepath.Join(t.TempDir(), "big.db-wal")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(frame, off); err != nil {
		t.Fatalf("write at %d of a sparse file: %v", off, err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != off+h.FrameSize() {
		t.Fatalf("size %v, %v; want %d", fi.Size(), err, off+h.FrameSize())
	}

	page := make([]byte, pageSize)
	if err := wal.ReadFramePage(f, h, n, 7, page); err != nil {
		t.Fatalf("read frame %d at %d: %v", n, off, err)
	}
	if !bytes.Equal(page, frame[wal.FrameHeaderSize:]) {
		t.Fatalf("frame %d at %d: the page read back differs", n, off)
	}
	// The frame before is a hole: zero salts, not of this generation.
	if err := wal.ReadFramePage(f, h, n-1, 7, page); err != wal.ErrOverwritten {
		t.Fatalf("hole before frame %d: %v, want ErrOverwritten", n, err)
	}
}

// TestTXIDsAbove32Bits stores, lists and reads back LTX files whose TXIDs
// do not fit in 32 bits, in the file replica.
func TestTXIDsAbove32Bits(t *testing.T) {
	ctx := context.Background()
	c := file.New(t.TempDir()).Sub("db")
	const base = ltx.TXID(1) << 32
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, r := range [][2]ltx.TXID{{base - 1, base}, {base + 1, base + 1}, {base + 2, base + 3}} {
		data := storagetest.LTX(t, r[0], r[1], 3, 4096, ts, true)
		if _, err := c.WriteLTXFile(ctx, 0, r[0], r[1], bytes.NewReader(data)); err != nil {
			t.Fatalf("write %v: %v", r, err)
		}
		rc, err := c.OpenLTXFile(ctx, 0, r[0], r[1])
		if err != nil {
			t.Fatalf("open %v: %v", r, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %v: %d bytes, %v", r, len(got), err)
		}
	}
	// After base: the two files above 2^32 only, in order. A TXID cut to
	// 32 bits would list base+1 as 1 and put it first or drop it.
	it, err := c.LTXFiles(ctx, 0, base)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var got [][2]ltx.TXID
	for it.Next() {
		got = append(got, [2]ltx.TXID{it.Item().MinTXID, it.Item().MaxTXID})
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	want := [][2]ltx.TXID{{base + 1, base + 1}, {base + 2, base + 3}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("listed after %d: %v, want %v", base, got, want)
	}
}
