package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/superfly/ltx"
)

// fuzzAllocCap is what decoding one fuzz input may allocate: the reader
// needs a read buffer and two page-sized buffers (64 KiB pages at most),
// never anything sized by the input.
const fuzzAllocCap = 2 << 20

// capAlloc runs fn and fails t if it allocated more than fuzzAllocCap.
// Fuzz targets run inputs one at a time on one goroutine, so TotalAlloc's
// growth is fn's.
func capAlloc(t *testing.T, what string, fn func()) {
	t.Helper()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	if n := b.TotalAlloc - a.TotalAlloc; n > fuzzAllocCap {
		t.Fatalf("%s allocated %d bytes for a %s input (cap %d)", what, n, "fuzz", fuzzAllocCap)
	}
}

// Run a target with e.g.
//
//	go test -run='^$' -fuzz=FuzzVerifyLTX -fuzztime=120s -fuzzminimizetime=50x -parallel=1 ./storage/
//
// (minimizing a new multi-KB input takes the default 60 s otherwise, most
// of a short run).

// fuzzSeeds are the valid files of every format, their truncations, and
// issue 20's hostile objects.
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, b := range validFiles(f) {
		if len(b) > 20000 {
			continue // the 64 KiB-page files: large inputs slow the fuzzer down
		}
		seeds = append(seeds, b)
		for _, cut := range []int{1, 7, 8, 9, 16, 17, 24, 100, len(b) / 2} {
			seeds = append(seeds, b[:len(b)-cut])
		}
	}
	// 174 bytes: a page frame whose LZ4 block size field claims 0xFFFFFFF0
	// bytes (ltx's decoder allocates that before any checksum).
	hdr := ltx.Header{Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: 4096, Commit: 1, MinTXID: 1, MaxTXID: 1, Timestamp: 1}
	huge, _ := hdr.MarshalBinary()
	huge = binary.BigEndian.AppendUint32(huge, 1)
	huge = binary.BigEndian.AppendUint16(huge, ltx.PageHeaderFlagSize)
	huge = binary.BigEndian.AppendUint32(huge, 0xFFFFFFF0)
	seeds = append(seeds, append(huge, make([]byte, 64)...))
	// A snapshot of page 1 claiming 4294967295 pages (a 16 TiB restore),
	// and 4294967294.
	for _, commit := range []uint32{0xFFFFFFFF, MaxPageCount} {
		h := ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: commit, MinTXID: 1, MaxTXID: 1, Timestamp: 1}
		seeds = append(seeds, blockLTX(f, h, testPages(4096, 1)))
	}
	return seeds
}

// FuzzVerifyLTX: whatever bytes come back from storage, verification
// returns an error or a header, never panics, never allocates more than
// fuzzAllocCap, and accepts only files ltx's own decoder accepts (which
// ltx.Compactor then reads).
func FuzzVerifyLTX(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var min, max ltx.TXID = 1, 1
		if len(b) >= 32 {
			min, max = ltx.TXID(binary.BigEndian.Uint64(b[16:])), ltx.TXID(binary.BigEndian.Uint64(b[24:]))
		}
		var err error
		var hdr ltx.Header
		capAlloc(t, "VerifyLTX", func() { hdr, err = VerifyLTX(bytes.NewReader(b), min, max) })
		if err != nil {
			return
		}
		if err := CheckLTXHeader(&hdr); err != nil {
			t.Fatalf("accepted a bad header: %v", err)
		}
		if err := ltx.NewDecoder(bytes.NewReader(b)).Verify(); err != nil {
			t.Fatalf("accepted a file ltx's decoder refuses: %v", err)
		}
	})
}

// FuzzParseHeader: the header read of list and restore planning.
func FuzzParseHeader(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		if len(b) >= ltx.HeaderSize {
			f.Add(b[:ltx.HeaderSize], int64(len(b)))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		fi := &FileInfo{Level: 0, MinTXID: 1, MaxTXID: 1, Size: size}
		if len(b) >= 32 {
			fi.MinTXID, fi.MaxTXID = ltx.TXID(binary.BigEndian.Uint64(b[16:])), ltx.TXID(binary.BigEndian.Uint64(b[24:]))
		}
		var err error
		var hdr ltx.Header
		capAlloc(t, "ParseHeader", func() { hdr, err = ParseHeader(b, fi) })
		if err == nil && (hdr.Commit > MaxPageCount || !ltx.IsValidPageSize(hdr.PageSize)) {
			t.Fatalf("accepted %+v", hdr)
		}
	})
}

// memFile is a WriterAtTruncater that records extents without holding them.
type memFile struct{ end, size int64 }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.end = max(m.end, off+int64(len(p)))
	return len(p), nil
}

func (m *memFile) Truncate(n int64) error { m.size = n; return nil }

// FuzzApplyLTX: applying a file (restore) accepts exactly what VerifyLTX
// accepts, within the allocation cap, and errors on the bytes are
// *CorruptError.
func FuzzApplyLTX(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var err error
		var hdr ltx.Header
		m := &memFile{}
		capAlloc(t, "ApplyLTX", func() { hdr, err = ApplyLTX(context.Background(), bytes.NewReader(b), "L0/fuzz.ltx", m) })
		_, verr := VerifyLTX(bytes.NewReader(b), hdr.MinTXID, hdr.MaxTXID)
		switch {
		case err == nil && verr != nil:
			t.Fatalf("applied a file VerifyLTX refuses: %v", verr)
		case err != nil && verr == nil:
			t.Fatalf("VerifyLTX accepts a file ApplyLTX refuses: %v", err)
		case err != nil && !IsCorrupt(err):
			t.Fatalf("not a *CorruptError: %v", err)
		case err == nil && m.end > int64(hdr.Commit)*int64(hdr.PageSize):
			t.Fatalf("wrote to %d, beyond the commit's %d bytes", m.end, int64(hdr.Commit)*int64(hdr.PageSize))
		}
	})
}
