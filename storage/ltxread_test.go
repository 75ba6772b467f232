package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc64"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

// frameLTX builds an LTX file in the format ltx < v0.5.1 wrote (and
// Litestream v0.5.0 replicas hold): each page one LZ4 frame, without a
// size prefix. opts configure the lz4 writer beyond ltx's own settings.
func frameLTX(t testing.TB, hdr ltx.Header, pages map[uint32][]byte, opts ...lz4.Option) []byte {
	t.Helper()
	var out bytes.Buffer
	h := crc64.New(crc64.MakeTable(crc64.ISO))
	write := func(b []byte, hashed bool) {
		out.Write(b)
		if hashed {
			h.Write(b)
		}
	}
	hb, _ := hdr.MarshalBinary()
	write(hb, true)
	var index []byte
	chksum := ltx.ChecksumFlag
	for _, pgno := range slices.Sorted(maps.Keys(pages)) {
		data := pages[pgno]
		off := out.Len()
		ph, _ := (&ltx.PageHeader{Pgno: pgno}).MarshalBinary()
		write(ph, true)
		var zb bytes.Buffer
		zw := lz4.NewWriter(&zb)
		if err := zw.Apply(append([]lz4.Option{lz4.BlockSizeOption(lz4.Block64Kb), lz4.CompressionLevelOption(lz4.Fast)}, opts...)...); err != nil {
			t.Fatal(err)
		}
		if _, err := zw.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		write(zb.Bytes(), false)
		h.Write(data)
		chksum = ltx.ChecksumFlag | (chksum ^ ltx.ChecksumPage(pgno, data))
		index = binary.AppendUvarint(index, uint64(pgno))
		index = binary.AppendUvarint(index, uint64(off))
		index = binary.AppendUvarint(index, uint64(out.Len()-off))
	}
	write(make([]byte, ltx.PageHeaderSize), true)
	index = binary.AppendUvarint(index, 0)
	write(index, true)
	write(binary.BigEndian.AppendUint64(nil, uint64(len(index))), true)
	var tr ltx.Trailer
	if !hdr.NoChecksum() {
		tr.PostApplyChecksum = chksum
	}
	tb, _ := tr.MarshalBinary()
	h.Write(tb[:ltx.TrailerChecksumOffset])
	binary.BigEndian.PutUint64(tb[ltx.TrailerChecksumOffset:], uint64(ltx.ChecksumFlag|ltx.Checksum(h.Sum64())))
	out.Write(tb)
	return out.Bytes()
}

// blockLTX encodes pages with ltx's current encoder (size-prefixed blocks).
func blockLTX(t testing.TB, hdr ltx.Header, pages map[uint32][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	chksum := ltx.ChecksumFlag
	for _, pgno := range slices.Sorted(maps.Keys(pages)) {
		data := pages[pgno]
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data); err != nil {
			t.Fatal(err)
		}
		chksum = ltx.ChecksumFlag | (chksum ^ ltx.ChecksumPage(pgno, data))
	}
	if !hdr.NoChecksum() {
		enc.SetPostApplyChecksum(chksum)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testPages(pageSize uint32, pgnos ...uint32) map[uint32][]byte {
	rng := rand.New(rand.NewPCG(uint64(pageSize), uint64(len(pgnos))))
	m := map[uint32][]byte{}
	for i, pgno := range pgnos {
		p := make([]byte, pageSize)
		for j := range p {
			if i%2 == 0 {
				p[j] = byte(rng.Uint32() % 4) // compressible
			} else {
				p[j] = byte(rng.Uint32()) // not: an uncompressed LZ4 block
			}
		}
		m[pgno] = p
	}
	return m
}

// validFiles are well-formed LTX files of every kind the reader accepts,
// each checked against ltx's own decoder.
func validFiles(t testing.TB) map[string][]byte {
	snap := ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: 3, MinTXID: 1, MaxTXID: 2, Timestamp: 1}
	incr := ltx.Header{Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: 512, Commit: 9, MinTXID: 3, MaxTXID: 4, Timestamp: 2}
	small := ltx.Header{Version: ltx.Version, PageSize: 65536, Commit: 1, MinTXID: 1, MaxTXID: 1, Timestamp: 3}
	files := map[string][]byte{
		"block snapshot":          blockLTX(t, snap, testPages(4096, 1, 2, 3)),
		"block incremental":       blockLTX(t, incr, testPages(512, 2, 5, 9)),
		"block 64K":               blockLTX(t, small, testPages(65536, 1)),
		"frame snapshot":          frameLTX(t, snap, testPages(4096, 1, 2, 3)),
		"frame incremental":       frameLTX(t, incr, testPages(512, 2, 5, 9)),
		"frame 64K":               frameLTX(t, small, testPages(65536, 1)),
		"frame block checksums":   frameLTX(t, snap, testPages(4096, 1, 2, 3), lz4.BlockChecksumOption(true)),
		"frame with content size": frameLTX(t, snap, testPages(4096, 1, 2, 3), lz4.SizeOption(4096)),
	}
	for name, b := range files {
		if err := ltx.NewDecoder(bytes.NewReader(b)).Verify(); err != nil {
			t.Fatalf("%s: ltx's decoder refuses it: %v", name, err)
		}
	}
	return files
}

// TestLTXReaderAcceptsWhatLTXWrites: both page formats, every page size
// class, snapshots with checksums, incremental files without.
func TestLTXReaderAcceptsWhatLTXWrites(t *testing.T) {
	for name, b := range validFiles(t) {
		hdr, _, _ := ltx.DecodeHeader(bytes.NewReader(b))
		if _, err := VerifyLTX(bytes.NewReader(b), hdr.MinTXID, hdr.MaxTXID); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		// The pages are ltx's pages.
		dec := ltx.NewDecoder(bytes.NewReader(b))
		_ = dec.DecodeHeader()
		d := NewLTXReader(bytes.NewReader(b))
		if _, err := d.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, hdr.PageSize)
		var ph ltx.PageHeader
		for {
			werr := dec.DecodePage(&ph, want)
			pgno, got, err := d.Next()
			if werr == io.EOF && err == io.EOF {
				break
			}
			if werr != nil || err != nil || pgno != ph.Pgno || !bytes.Equal(got, want) {
				t.Fatalf("%s: page %d/%d differs (%v, %v)", name, pgno, ph.Pgno, werr, err)
			}
		}
		if _, err := d.Close(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestLTXReaderTruncated: every prefix of a valid file is an error, never
// a panic, and a "truncated" one.
func TestLTXReaderTruncated(t *testing.T) {
	for name, b := range validFiles(t) {
		hdr, _, _ := ltx.DecodeHeader(bytes.NewReader(b))
		step := 1 + len(b)/2000 // a sample of the big files' prefixes, and their last 64 bytes
		for n := 0; n < len(b); n += min(step, max(1, len(b)-64-n)) {
			_, err := VerifyLTX(bytes.NewReader(b[:n]), hdr.MinTXID, hdr.MaxTXID)
			if !errors.Is(err, errTruncated) {
				t.Fatalf("%s cut to %d of %d bytes: %v", name, n, len(b), err)
			}
		}
	}
}

// TestLTXReaderBitFlips: a file with a byte flipped is refused, unless it
// is the same file still (a compressed block that decompresses to the same
// page: the checksums cover pages, as ltx's decoder, which accepts it too).
func TestLTXReaderBitFlips(t *testing.T) {
	for name, b := range validFiles(t) {
		hdr, _, _ := ltx.DecodeHeader(bytes.NewReader(b))
		step := 1 + len(b)/2000 // a sample of the big files' bytes
		for i := 0; i < len(b); i += step {
			c := bytes.Clone(b)
			c[i] ^= 0x10
			if _, err := VerifyLTX(bytes.NewReader(c), hdr.MinTXID, hdr.MaxTXID); err == nil {
				if ltx.NewDecoder(bytes.NewReader(c)).Verify() != nil {
					t.Errorf("%s: flipping byte %d went unnoticed", name, i)
				}
			}
		}
	}
}

// TestLTXReaderFrameLimits: LZ4 frames LTX writers never wrote are refused
// before their blocks are read (the lz4 package would allocate 4-8 MiB per
// page for large block sizes).
func TestLTXReaderFrameLimits(t *testing.T) {
	hdr := ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: 1, MinTXID: 1, MaxTXID: 1, Timestamp: 1}
	for name, opt := range map[string]lz4.Option{
		"4 MiB blocks":        lz4.BlockSizeOption(lz4.Block4Mb),
		"no content checksum": lz4.ChecksumOption(false),
	} {
		b := frameLTX(t, hdr, testPages(4096, 1), opt)
		if _, err := VerifyLTX(bytes.NewReader(b), 1, 1); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestLTXIndexMustNameFrames: an index with a wrong offset is refused
// (ltx's decoder checks only that offsets ascend).
func TestLTXIndexMustNameFrames(t *testing.T) {
	hdr := ltx.Header{Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: 512, Commit: 2, MinTXID: 2, MaxTXID: 2, Timestamp: 1}
	pages := testPages(512, 1, 2)
	b := blockLTX(t, hdr, pages)
	// The index follows the end-of-pages header; its first entry is
	// pgno 1 (1 byte), offset 100 (1 byte): make it 101 and shrink the size.
	idx := len(b) - ltx.TrailerSize - 8 - int(binary.BigEndian.Uint64(b[len(b)-ltx.TrailerSize-8:]))
	if b[idx] != 1 || b[idx+1] != 100 {
		t.Fatalf("unexpected index %x", b[idx:idx+4])
	}
	b[idx+1] = 101
	b[idx+2]--
	h := crc64.New(crc64.MakeTable(crc64.ISO))
	off := ltx.HeaderSize
	h.Write(b[:off])
	for _, pgno := range []uint32{1, 2} {
		n := int(binary.BigEndian.Uint32(b[off+6:]))
		h.Write(b[off : off+10])
		h.Write(pages[pgno])
		off += 10 + n
	}
	h.Write(b[off : len(b)-8])
	binary.BigEndian.PutUint64(b[len(b)-8:], uint64(ltx.ChecksumFlag|ltx.Checksum(h.Sum64())))
	if err := ltx.NewDecoder(bytes.NewReader(b)).Verify(); err != nil {
		t.Logf("ltx refuses it too: %v", err)
	}
	if _, err := VerifyLTX(bytes.NewReader(b), 2, 2); err == nil {
		t.Fatal("an index naming the wrong offset verified")
	}
}

func TestXXH32(t *testing.T) {
	for in, want := range map[string]uint32{
		"":    0x02CC5D05,
		"a":   0x550D7456,
		"abc": 0x32D153FF,
	} {
		if got := xxh32([]byte(in)); got != want {
			t.Errorf("xxh32(%q) = %08x, want %08x", in, got, want)
		}
	}
}

// TestApplyLTX applies a snapshot and an incremental file and compares the
// database with the pages.
func TestApplyLTX(t *testing.T) {
	snap := ltx.Header{Version: ltx.Version, PageSize: 512, Commit: 4, MinTXID: 1, MaxTXID: 1, Timestamp: 1}
	incr := ltx.Header{Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: 512, Commit: 3, MinTXID: 2, MaxTXID: 2, Timestamp: 2}
	p1, p2 := testPages(512, 1, 2, 3, 4), testPages(512, 2)
	f, err := os.Create(t.TempDir() + "/db")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	if _, err := ApplyLTX(ctx, bytes.NewReader(blockLTX(t, snap, p1)), "snap", f); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyLTX(ctx, bytes.NewReader(frameLTX(t, incr, p2)), "incr", f); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(f.Name())
	want := append(append(bytes.Clone(p1[1]), p2[2]...), p1[3]...)
	if !bytes.Equal(got, want) {
		t.Fatalf("database differs: %d bytes, want %d", len(got), len(want))
	}
	bad := bytes.Clone(blockLTX(t, incr, p2))
	bad[len(bad)-1] ^= 1
	if _, err := ApplyLTX(ctx, bytes.NewReader(bad), "L0/bad.ltx", f); !IsCorrupt(err) {
		t.Fatalf("got %v, want a *CorruptError", err)
	}
}
