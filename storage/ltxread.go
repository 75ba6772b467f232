package storage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"math"

	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

// This file is the one place where bytes read from a replica are parsed as
// an LTX file. Replica objects are untrusted: whoever can write to the
// bucket can plant a file whose checksums agree with its content. So every
// size taken from the bytes is bounded before anything is allocated,
// written or truncated, and the whole file is held to the rules below.
//
// superfly/ltx v0.5.3's Decoder trusts the 4-byte LZ4 block size that
// follows a page header (DecodePage: compressed := make([]byte, dataSize))
// and allocates it before any checksum is checked: a 174-byte object makes
// it allocate 4 GiB. This reader never hands replica bytes to that decoder;
// callers that still use it (ltx.Compactor) get bytes this reader verified.

// MaxPageCount is the largest database size, in pages, that SQLite allows
// (SQLITE_MAX_PAGE_COUNT); a header's Commit above it is corrupt.
const MaxPageCount = 4294967294

// lz4Bound is the largest size LZ4 compresses n bytes to (LZ4's
// LZ4_COMPRESSBOUND): an LZ4 block holding one page is never larger.
func lz4Bound(n int) int { return n + n/255 + 16 }

// lz4FrameBlockMax is the only LZ4 frame block size LTX writers used for
// page frames (ltx < v0.5.1 set lz4.Block64Kb): larger ones make the lz4
// package allocate up to 8 MiB per page.
const lz4FrameBlockMax = 64 << 10

// crcISO is the CRC-64 table of LTX's file checksum.
var crcISO = crc64.MakeTable(crc64.ISO)

// LTXReader decodes one LTX file from untrusted bytes, a page at a time,
// with memory bounded by the page size (never by the database size or by a
// size field in the file). It checks everything ltx.Decoder.Verify checks
// and the rules of CheckLTXHeader and Next: page numbers ascend, never
// exceed the header's Commit nor name the lock page, a snapshot holds
// exactly pages 1..Commit, and the page index names exactly the frames
// read, at their offsets. Its errors describe what is wrong; callers name
// the object (see VerifyLTX). Methods may panic only on a bug; callers at
// the replica boundary recover (see VerifyLTX).
type LTXReader struct {
	r     *bufio.Reader
	off   int64 // bytes consumed
	hdr   ltx.Header
	state int

	hash     hash.Hash64 // the file checksum: everything but the trailer's last 8 bytes
	frames   hash.Hash64 // (pgno, offset, size) of every page frame read, for the page index
	chksum   ltx.Checksum
	pageN    int
	prevPgno uint32
	lock     uint32

	page []byte // one page
	comp []byte // one compressed block

	trailer ltx.Trailer
}

const (
	stateHeader = iota
	statePages
	stateIndex
	stateDone
	stateFailed
)

// NewLTXReader returns a reader of the LTX file r.
func NewLTXReader(r io.Reader) *LTXReader {
	return &LTXReader{
		r:      bufio.NewReaderSize(r, 32<<10),
		hash:   crc64.New(crcISO),
		frames: crc64.New(crcISO),
	}
}

// CheckLTXHeader returns an error unless hdr is a valid LTX header that a
// replica may hold: ltx's own validation, and a Commit SQLite allows.
func CheckLTXHeader(hdr *ltx.Header) error {
	if err := hdr.Validate(); err != nil {
		return err
	}
	if hdr.Commit > MaxPageCount {
		return fmt.Errorf("header's commit %d pages is more than SQLite's maximum of %d", hdr.Commit, uint32(MaxPageCount))
	}
	return nil
}

// CheckLTXSize returns an error when an LTX file of size bytes cannot hold
// what hdr says: a snapshot must carry every page 1..Commit, and no LTX
// writer compresses a page frame below minFrame bytes, so a small object
// claiming a huge database is rejected from its header alone.
func CheckLTXSize(hdr *ltx.Header, size int64) error {
	if !hdr.IsSnapshot() || size <= 0 {
		return nil
	}
	pages := int64(hdr.Commit)
	if hdr.Commit >= hdr.LockPgno() {
		pages--
	}
	// header, page frames, end of pages, index entries (>= 3 bytes each),
	// index end marker and size, trailer.
	minSize := ltx.HeaderSize + pages*(minFrame(hdr.PageSize)+3) + ltx.PageHeaderSize + 1 + 8 + ltx.TrailerSize
	if size < minSize {
		return fmt.Errorf("a snapshot of %d pages of %d bytes takes at least %d bytes, the object has %d", hdr.Commit, hdr.PageSize, minSize, size)
	}
	return nil
}

// minFrame is a lower bound on a page frame's size: its header, the block
// size, and the LZ4 block (one sequence encodes at most 255 bytes per byte
// of match length; pageSize/512 is a safe half of that).
func minFrame(pageSize uint32) int64 {
	return ltx.PageHeaderSize + 4 + int64(pageSize)/512
}

// ReadHeader reads and checks the file's header.
func (d *LTXReader) ReadHeader() (ltx.Header, error) {
	if d.state != stateHeader {
		return d.hdr, errors.New("LTX header already read")
	}
	d.state = stateFailed
	b := make([]byte, ltx.HeaderSize)
	if err := d.readFull(b, "header"); err != nil {
		return d.hdr, err
	}
	if err := d.hdr.UnmarshalBinary(b); err != nil {
		return d.hdr, fmt.Errorf("header: %w", err)
	}
	if err := CheckLTXHeader(&d.hdr); err != nil {
		return d.hdr, fmt.Errorf("header: %w", err)
	}
	d.hash.Write(b)
	if !d.hdr.NoChecksum() {
		d.chksum = ltx.ChecksumFlag
	}
	d.lock = d.hdr.LockPgno()
	d.page = make([]byte, d.hdr.PageSize)
	d.comp = make([]byte, lz4Bound(int(d.hdr.PageSize)))
	d.state = statePages
	return d.hdr, nil
}

// Next reads the next page and returns its number and content, which is
// valid until the next call. At the end of the page block it returns
// io.EOF.
func (d *LTXReader) Next() (uint32, []byte, error) {
	if d.state != statePages {
		if d.state == stateIndex || d.state == stateDone {
			return 0, nil, io.EOF
		}
		return 0, nil, errors.New("LTX pages read out of order")
	}
	d.state = stateFailed
	start := d.off
	var b [ltx.PageHeaderSize]byte
	if err := d.readFull(b[:], "page header"); err != nil {
		return 0, nil, err
	}
	d.hash.Write(b[:])
	var ph ltx.PageHeader
	_ = ph.UnmarshalBinary(b[:])
	if ph.IsZero() {
		if err := d.endOfPages(); err != nil {
			return 0, nil, err
		}
		d.state = stateIndex
		return 0, nil, io.EOF
	}
	if err := ph.Validate(); err != nil {
		return 0, nil, fmt.Errorf("page frame at offset %d: %w", start, err)
	}
	if err := d.checkPgno(ph.Pgno); err != nil {
		return 0, nil, err
	}
	var err error
	if ph.Flags&ltx.PageHeaderFlagSize != 0 {
		err = d.readBlock(ph.Pgno)
	} else {
		err = d.readFrame(ph.Pgno)
	}
	if err != nil {
		return 0, nil, err
	}
	d.hash.Write(d.page)
	d.pageN++
	d.prevPgno = ph.Pgno
	hashFrame(d.frames, ph.Pgno, start, d.off-start)
	if d.hdr.IsSnapshot() && !d.hdr.NoChecksum() {
		d.chksum = ltx.ChecksumFlag | (d.chksum ^ ltx.ChecksumPage(ph.Pgno, d.page))
	}
	d.state = statePages
	return ph.Pgno, d.page, nil
}

// checkPgno holds page numbers to the file's rules before the page is read.
func (d *LTXReader) checkPgno(pgno uint32) error {
	switch {
	case pgno > d.hdr.Commit:
		return fmt.Errorf("page %d is beyond the header's commit of %d pages", pgno, d.hdr.Commit)
	case pgno <= d.prevPgno:
		return fmt.Errorf("page %d follows page %d: pages must ascend", pgno, d.prevPgno)
	case pgno == d.lock:
		return fmt.Errorf("page %d is SQLite's lock page, which is never stored", pgno)
	case d.hdr.IsSnapshot():
		if want := d.nextSnapshotPgno(); pgno != want {
			return fmt.Errorf("snapshot has no page %d (the next page is %d): a snapshot holds every page 1-%d", want, pgno, d.hdr.Commit)
		}
	}
	return nil
}

// nextSnapshotPgno is the page a snapshot must hold next.
func (d *LTXReader) nextSnapshotPgno() uint32 {
	next := d.prevPgno + 1
	if next == d.lock {
		next++
	}
	return next
}

// endOfPages checks, at the end of the page block, that a snapshot held
// every page up to its Commit.
func (d *LTXReader) endOfPages() error {
	if d.hdr.IsSnapshot() && d.hdr.Commit > 0 {
		last := d.hdr.Commit
		if last == d.lock {
			last--
		}
		if d.prevPgno != last {
			return fmt.Errorf("snapshot ends at page %d, but its header's commit is %d pages: a snapshot holds every page 1-%d", d.prevPgno, d.hdr.Commit, d.hdr.Commit)
		}
	}
	return nil
}

// readBlock reads a size-prefixed LZ4 block (ltx >= v0.5.1) into d.page.
func (d *LTXReader) readBlock(pgno uint32) error {
	var b [4]byte
	if err := d.readFull(b[:], "page size field"); err != nil {
		return err
	}
	d.hash.Write(b[:])
	n := binary.BigEndian.Uint32(b[:])
	if n == 0 || uint64(n) > uint64(len(d.comp)) {
		return fmt.Errorf("page %d: LZ4 block of %d bytes: a %d-byte page compresses to 1-%d bytes", pgno, n, d.hdr.PageSize, len(d.comp))
	}
	src := d.comp[:n]
	if err := d.readFull(src, "page data"); err != nil {
		return err
	}
	got, err := lz4.UncompressBlock(src, d.page)
	if err != nil {
		return fmt.Errorf("page %d: decompress: %w", pgno, err)
	}
	if got != len(d.page) {
		return fmt.Errorf("page %d: decompresses to %d bytes, not the page size %d", pgno, got, len(d.page))
	}
	return nil
}

// readFrame reads a page stored as one LZ4 frame (ltx < v0.5.1) into
// d.page, parsing the frame itself so that no size in it is trusted. It
// accepts what ltx's encoders wrote and its decoder reads: one frame, 64 KiB
// blocks, no dictionary, a content checksum.
func (d *LTXReader) readFrame(pgno uint32) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("page %d: LZ4 frame: %s", pgno, fmt.Sprintf(format, a...))
	}
	var hb [4 + 2 + 8 + 1]byte
	if err := d.readFull(hb[:7], "page LZ4 frame"); err != nil {
		return err
	}
	if magic := binary.LittleEndian.Uint32(hb[:4]); magic != 0x184D2204 {
		return fail("bad magic number 0x%08x", magic)
	}
	flg, bd := hb[4], hb[5]
	switch {
	case flg>>6 != 1:
		return fail("unknown version %d", flg>>6)
	case flg&0x02 != 0 || bd&0x8f != 0:
		return fail("reserved bits set")
	case flg&0x01 != 0:
		return fail("dictionaries are not used by LTX")
	case flg&0x04 == 0:
		return fail("no content checksum (LTX writers always set one)")
	case int(bd>>4&7) != 4:
		return fail("block size index %d: LTX writers use 64 KiB blocks (index 4)", bd>>4&7)
	}
	desc := hb[4:6]
	if flg&0x08 != 0 {
		if err := d.readFull(hb[7:15], "page LZ4 frame"); err != nil {
			return err
		}
		if cs := binary.LittleEndian.Uint64(hb[6:14]); cs != uint64(len(d.page)) {
			return fail("content size %d is not the page size %d", cs, len(d.page))
		}
		desc = hb[4:14]
	}
	if hc := hb[len(desc)+4]; hc != byte(xxh32(desc)>>8) {
		return fail("header checksum mismatch")
	}
	blockChecksum, independent := flg&0x10 != 0, flg&0x20 != 0
	pos := 0
	for {
		var sb [4]byte
		if err := d.readFull(sb[:], "page LZ4 frame"); err != nil {
			return err
		}
		x := binary.LittleEndian.Uint32(sb[:])
		if x == 0 {
			break // end mark
		}
		n, raw := int(x&0x7fffffff), x&0x80000000 != 0
		rest := len(d.page) - pos
		limit := lz4Bound(rest)
		if raw {
			limit = rest
		}
		if n == 0 || n > lz4FrameBlockMax || n > limit {
			return fail("block of %d bytes at page offset %d: at most %d fit", n, pos, limit)
		}
		src := d.comp[:n]
		if err := d.readFull(src, "page LZ4 frame"); err != nil {
			return err
		}
		if blockChecksum {
			if err := d.readFull(sb[:], "page LZ4 frame"); err != nil {
				return err
			}
			if binary.LittleEndian.Uint32(sb[:]) != xxh32(src) {
				return fail("block checksum mismatch")
			}
		}
		var got int
		var err error
		switch {
		case raw:
			got = copy(d.page[pos:], src)
		case independent || pos == 0:
			got, err = lz4.UncompressBlock(src, d.page[pos:])
		default:
			got, err = lz4.UncompressBlockWithDict(src, d.page[pos:], d.page[:pos])
		}
		if err != nil {
			return fail("decompress: %v", err)
		}
		pos += got
	}
	if pos != len(d.page) {
		return fail("decompresses to %d bytes, not the page size %d", pos, len(d.page))
	}
	var cb [4]byte
	if err := d.readFull(cb[:], "page LZ4 frame"); err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(cb[:]) != xxh32(d.page) {
		return fail("content checksum mismatch")
	}
	return nil
}

// Close reads the rest of the file after the last page: the page index,
// which must name exactly the page frames read, the trailer and its file
// checksum (and, for a snapshot with checksums, the post-apply checksum),
// and checks that nothing follows. Pages not yet read are read first.
func (d *LTXReader) Close() (ltx.Trailer, error) {
	for d.state == statePages {
		if _, _, err := d.Next(); err == io.EOF {
			break
		} else if err != nil {
			return d.trailer, err
		}
	}
	if d.state == stateDone {
		return d.trailer, nil
	}
	if d.state != stateIndex {
		return d.trailer, errors.New("LTX file not read to its page index")
	}
	d.state = stateFailed
	if err := d.readIndex(); err != nil {
		return d.trailer, fmt.Errorf("page index: %w", err)
	}
	b := make([]byte, ltx.TrailerSize)
	if err := d.readFull(b, "trailer"); err != nil {
		return d.trailer, err
	}
	d.hash.Write(b[:ltx.TrailerChecksumOffset])
	_ = d.trailer.UnmarshalBinary(b)
	if _, err := d.r.ReadByte(); err == nil {
		return d.trailer, fmt.Errorf("data after the trailer at offset %d", d.off)
	} else if err != io.EOF {
		return d.trailer, fmt.Errorf("read after the trailer: %w", err)
	}
	if got := ltx.ChecksumFlag | ltx.Checksum(d.hash.Sum64()); got != d.trailer.FileChecksum {
		return d.trailer, fmt.Errorf("file checksum is %s, the trailer says %s", got, d.trailer.FileChecksum)
	}
	if d.hdr.IsSnapshot() && !d.hdr.NoChecksum() && d.trailer.PostApplyChecksum != d.chksum {
		return d.trailer, fmt.Errorf("post-apply checksum in the trailer (%s) does not match the pages' (%s)", d.trailer.PostApplyChecksum, d.chksum)
	}
	d.state = stateDone
	return d.trailer, nil
}

// readIndex reads the page index, each entry of which must be the next
// page frame read, with its offset and size, then its end marker and size
// field.
func (d *LTXReader) readIndex() error {
	start := d.off
	seen := crc64.New(crcISO)
	for n := 0; ; n++ {
		pgno, err := d.uvarint()
		if err != nil {
			return err
		}
		if pgno == 0 {
			if n != d.pageN {
				return fmt.Errorf("%d entries for %d pages", n, d.pageN)
			}
			break
		}
		if n == d.pageN {
			return fmt.Errorf("more entries than the %d pages", d.pageN)
		}
		offset, err := d.uvarint()
		if err != nil {
			return err
		}
		size, err := d.uvarint()
		if err != nil {
			return err
		}
		if pgno > math.MaxUint32 || offset > math.MaxInt64 || size > math.MaxInt64 {
			return fmt.Errorf("entry %d out of range", n)
		}
		hashFrame(seen, uint32(pgno), int64(offset), int64(size))
	}
	if seen.Sum64() != d.frames.Sum64() {
		return errors.New("entries do not name the page frames at their offsets and sizes")
	}
	var b [8]byte
	consumed := d.off - start
	if err := d.readFull(b[:], "page index size"); err != nil {
		return err
	}
	d.hash.Write(b[:])
	if got := binary.BigEndian.Uint64(b[:]); got != uint64(consumed) {
		return fmt.Errorf("size field says %d bytes, the index has %d", got, consumed)
	}
	return nil
}

// uvarint reads one varint of the page index, hashing its bytes.
func (d *LTXReader) uvarint() (uint64, error) {
	var buf [binary.MaxVarintLen64]byte
	for i := range buf {
		c, err := d.r.ReadByte()
		if err != nil {
			return 0, d.readErr(err, "page index")
		}
		d.off++
		buf[i] = c
		if c < 0x80 {
			d.hash.Write(buf[:i+1])
			x, n := binary.Uvarint(buf[:i+1])
			if n <= 0 {
				return 0, errors.New("varint overflows 64 bits")
			}
			return x, nil
		}
	}
	return 0, errors.New("varint overflows 64 bits")
}

// readFull fills b (whose size the caller bounded) from the file.
func (d *LTXReader) readFull(b []byte, what string) error {
	n, err := io.ReadFull(d.r, b)
	d.off += int64(n)
	if err != nil {
		return d.readErr(err, what)
	}
	return nil
}

func (d *LTXReader) readErr(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated: the file ends at offset %d, in its %s: %w", d.off, what, errTruncated)
	}
	return fmt.Errorf("read %s at offset %d: %w", what, d.off, err)
}

// errTruncated marks an LTX file that ends too early.
var errTruncated = errors.New("unexpected end of file")

func hashFrame(h hash.Hash64, pgno uint32, offset, size int64) {
	var b [20]byte
	binary.BigEndian.PutUint32(b[0:], pgno)
	binary.BigEndian.PutUint64(b[4:], uint64(offset))
	binary.BigEndian.PutUint64(b[12:], uint64(size))
	h.Write(b[:])
}

// xxh32 is XXH32 with seed 0, the checksum of LZ4 frames.
func xxh32(b []byte) uint32 {
	const (
		p1 uint32 = 2654435761
		p2 uint32 = 2246822519
		p3 uint32 = 3266489917
		p4 uint32 = 668265263
		p5 uint32 = 374761393
	)
	rotl := func(x uint32, r uint) uint32 { return x<<r | x>>(32-r) }
	round := func(acc, in uint32) uint32 { return rotl(acc+in*p2, 13) * p1 }
	n := len(b)
	var h uint32
	if n >= 16 {
		var seed uint32 // LZ4 uses seed 0; a variable lets p1 wrap below it
		v1, v2, v3, v4 := seed+p1+p2, seed+p2, seed, seed-p1
		for len(b) >= 16 {
			v1 = round(v1, binary.LittleEndian.Uint32(b[0:]))
			v2 = round(v2, binary.LittleEndian.Uint32(b[4:]))
			v3 = round(v3, binary.LittleEndian.Uint32(b[8:]))
			v4 = round(v4, binary.LittleEndian.Uint32(b[12:]))
			b = b[16:]
		}
		h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
	} else {
		h = p5 // + seed 0
	}
	h += uint32(n)
	for ; len(b) >= 4; b = b[4:] {
		h = rotl(h+binary.LittleEndian.Uint32(b)*p3, 17) * p4
	}
	for _, c := range b {
		h = rotl(h+uint32(c)*p5, 11) * p1
	}
	h ^= h >> 15
	h *= p2
	h ^= h >> 13
	h *= p3
	h ^= h >> 16
	return h
}
