package storage_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc64"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
)

// allocCap is what decoding one small replica object may allocate.
const allocCap = 4 << 20

// allocated returns the bytes fn allocates (run on one goroutine; the
// test must not be parallel).
func allocated(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// hugeBlockLTX is issue 20's 174-byte object: a valid header and a page
// frame whose LZ4 block size field claims 0xFFFFFFF0 bytes.
func hugeBlockLTX(t testing.TB) []byte {
	t.Helper()
	hdr := ltx.Header{Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: 4096, Commit: 1,
		MinTXID: 1, MaxTXID: 1, Timestamp: 1}
	b, err := hdr.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b = binary.BigEndian.AppendUint32(b, 1)                      // pgno
	b = binary.BigEndian.AppendUint16(b, ltx.PageHeaderFlagSize) // flags
	b = binary.BigEndian.AppendUint32(b, 0xFFFFFFF0)             // LZ4 block size
	b = append(b, bytes.Repeat([]byte{0x5a}, 174-len(b))...)     // a little data
	if len(b) != 174 {
		t.Fatalf("built %d bytes", len(b))
	}
	return b
}

// TestVerifyLTXHugeBlockSize: the 174-byte object made superfly/ltx's
// decoder allocate 4 GiB before any checksum was checked (walsync verify
// over 12 of them reached 21 GB RSS). It must be refused within a few MiB.
func TestVerifyLTXHugeBlockSize(t *testing.T) {
	b := hugeBlockLTX(t)
	var err error
	n := allocated(func() { _, err = storage.VerifyLTX(bytes.NewReader(b), 1, 1) })
	if err == nil {
		t.Fatal("verified")
	}
	if n > allocCap {
		t.Fatalf("verifying a %d-byte object allocated %d bytes", len(b), n)
	}
	t.Logf("allocated %d bytes: %v", n, err)
}

// TestOpenHugeBlockSize: the same object read through the file backend is
// a *CorruptError naming it, within the allocation cap.
func TestOpenHugeBlockSize(t *testing.T) {
	c, path := plant(t, 1, 1, hugeBlockLTX(t))
	var err error
	n := allocated(func() { _, err = c.OpenLTXFile(context.Background(), 9, 1, 1) })
	if !storage.IsCorrupt(err) || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v, want a corrupt-object error naming %s", err, path)
	}
	if n > allocCap {
		t.Fatalf("opening a 174-byte object allocated %d bytes", n)
	}
}

// TestVerifyLTXHugeCommitSnapshot: a snapshot claiming 4294967295 pages
// with only page 1 restored as a 16 TiB sparse file. Every read path
// refuses it: verification (a snapshot holds every page 1..Commit) and the
// header read of list and restore planning.
func TestVerifyLTXHugeCommitSnapshot(t *testing.T) {
	for _, commit := range []uint32{4294967295, 4294967294, 2} {
		b := storagetest.HugeCommitSnapshot(t, commit)
		if commit == 4294967295 {
			t.Logf("the snapshot has %d bytes", len(b))
		}
		if err := ltx.NewDecoder(bytes.NewReader(b)).Verify(); err != nil {
			t.Fatal(err) // its checksums are right: ltx accepts it
		}
		if _, err := storage.VerifyLTX(bytes.NewReader(b), 1, 1); err == nil {
			t.Errorf("commit %d: a snapshot holding page 1 only verified", commit)
		}
		c, path := plant(t, 1, 1, b)
		if _, err := c.OpenLTXFile(context.Background(), 9, 1, 1); !storage.IsCorrupt(err) || !strings.Contains(err.Error(), path) {
			t.Errorf("commit %d: OpenLTXFile: got %v, want a corrupt-object error naming %s", commit, err, path)
		}
		fi := &storage.FileInfo{Level: 9, MinTXID: 1, MaxTXID: 1, Size: int64(len(b))}
		if commit > 2 {
			if _, err := storage.ReadHeader(context.Background(), c, fi); !storage.IsCorrupt(err) {
				t.Errorf("commit %d: ReadHeader: got %v, want a corrupt-object error", commit, err)
			}
		}
	}
}

// TestVerifyLTXPageBeyondCommit: no file holds a page beyond its Commit
// (ltx's encoder refuses to write one; the bytes are patched and the
// checksum recomputed).
func TestVerifyLTXPageBeyondCommit(t *testing.T) {
	var buf bytes.Buffer
	enc, _ := ltx.NewEncoder(&buf)
	if err := enc.EncodeHeader(ltx.Header{Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: 512, Commit: 3,
		MinTXID: 5, MaxTXID: 5, Timestamp: 1}); err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 3}, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b[12:], 2) // Commit 3 -> 2; page 3 stays
	resum(b, make([]byte, 512))
	if _, err := storage.VerifyLTX(bytes.NewReader(b), 5, 5); err == nil || !strings.Contains(err.Error(), "beyond") {
		t.Fatalf("got %v, want page beyond commit", err)
	}
}

// resum recomputes the file checksum of an LTX file with size-prefixed
// blocks after a patch outside its page data; pages are the pages'
// decompressed contents (the checksum covers them, not the compressed
// bytes).
func resum(b []byte, pages ...[]byte) {
	h := crc64.New(crc64.MakeTable(crc64.ISO))
	h.Write(b[:ltx.HeaderSize])
	off := ltx.HeaderSize
	for _, p := range pages {
		n := int(binary.BigEndian.Uint32(b[off+ltx.PageHeaderSize:]))
		h.Write(b[off : off+ltx.PageHeaderSize+4])
		h.Write(p)
		off += ltx.PageHeaderSize + 4 + n
	}
	h.Write(b[off : len(b)-8]) // end of pages, index, trailer's first half
	binary.BigEndian.PutUint64(b[len(b)-8:], uint64(ltx.ChecksumFlag|ltx.Checksum(h.Sum64())))
}

// plant writes b as the level-9 object (min, max) of a new file replica,
// with no SHA-256 (as Litestream writes them), and returns the client and
// the object's path.
func plant(t *testing.T, minTXID, maxTXID ltx.TXID, b []byte) (*file.Client, string) {
	t.Helper()
	c := file.New(t.TempDir())
	path := c.Path(9, minTXID, maxTXID)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return c, path
}
