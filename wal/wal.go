// Package wal reads SQLite write-ahead logs: the header, frames, the
// cumulative checksum chain and commit boundaries. It does no locking and
// makes no policy; the capture package decides when reading is safe.
//
// Format: https://sqlite.org/fileformat.html#the_write_ahead_log
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Sizes of the on-disk structures.
const (
	HeaderSize      = 32
	FrameHeaderSize = 24
)

// Magic numbers: the low bit selects big-endian checksums.
const (
	MagicLE = 0x377f0682
	MagicBE = 0x377f0683
)

// Version is the only WAL format version SQLite writes.
const Version = 3007000

// Header is a WAL file header.
type Header struct {
	Magic         uint32
	Version       uint32
	PageSize      uint32
	CheckpointSeq uint32
	Salt1         uint32
	Salt2         uint32
	Checksum1     uint32
	Checksum2     uint32
}

// ErrNoHeader means the WAL is empty or shorter than a header.
var ErrNoHeader = errors.New("WAL has no header")

// ParseHeader decodes and validates a WAL header, including its checksum.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrNoHeader
	}
	h := Header{
		Magic:         binary.BigEndian.Uint32(b[0:]),
		Version:       binary.BigEndian.Uint32(b[4:]),
		PageSize:      binary.BigEndian.Uint32(b[8:]),
		CheckpointSeq: binary.BigEndian.Uint32(b[12:]),
		Salt1:         binary.BigEndian.Uint32(b[16:]),
		Salt2:         binary.BigEndian.Uint32(b[20:]),
		Checksum1:     binary.BigEndian.Uint32(b[24:]),
		Checksum2:     binary.BigEndian.Uint32(b[28:]),
	}
	if h.Magic != MagicLE && h.Magic != MagicBE {
		return h, fmt.Errorf("invalid WAL magic %#x", h.Magic)
	}
	if h.Version != Version {
		return h, fmt.Errorf("unsupported WAL version %d", h.Version)
	}
	if !ValidPageSize(h.PageSize) {
		return h, fmt.Errorf("invalid WAL page size %d", h.PageSize)
	}
	if c1, c2 := Checksum(h.BigEndian(), 0, 0, b[:24]); c1 != h.Checksum1 || c2 != h.Checksum2 {
		return h, errors.New("WAL header checksum mismatch")
	}
	return h, nil
}

// BigEndian reports whether frame checksums use big-endian words.
func (h Header) BigEndian() bool { return h.Magic&1 == 1 }

// FrameSize returns the size of one frame, header included.
func (h Header) FrameSize() int64 { return FrameHeaderSize + int64(h.PageSize) }

// FrameOffset returns the file offset of frame n (1-based).
func (h Header) FrameOffset(n int64) int64 { return HeaderSize + (n-1)*h.FrameSize() }

// SameGeneration reports whether o is the same WAL generation as h.
func (h Header) SameGeneration(o Header) bool {
	return h.Salt1 == o.Salt1 && h.Salt2 == o.Salt2 && h.PageSize == o.PageSize
}

// ValidPageSize reports whether n is a page size SQLite can use.
func ValidPageSize(n uint32) bool { return n >= 512 && n <= 65536 && n&(n-1) == 0 }

// Checksum extends the checksum (s1, s2) over b, whose length must be a
// multiple of 8, as SQLite's walChecksumBytes does.
func Checksum(bigEndian bool, s1, s2 uint32, b []byte) (uint32, uint32) {
	var order binary.ByteOrder = binary.LittleEndian
	if bigEndian {
		order = binary.BigEndian
	}
	for i := 0; i+8 <= len(b); i += 8 {
		s1 += order.Uint32(b[i:]) + s2
		s2 += order.Uint32(b[i+4:]) + s1
	}
	return s1, s2
}

// FrameHeader is the 24-byte header before each page in the WAL.
type FrameHeader struct {
	Pgno      uint32
	Commit    uint32 // database size in pages after this frame's transaction; 0 unless a commit frame
	Salt1     uint32
	Salt2     uint32
	Checksum1 uint32
	Checksum2 uint32
}

// ParseFrameHeader decodes a frame header without validating it.
func ParseFrameHeader(b []byte) FrameHeader {
	return FrameHeader{
		Pgno:      binary.BigEndian.Uint32(b[0:]),
		Commit:    binary.BigEndian.Uint32(b[4:]),
		Salt1:     binary.BigEndian.Uint32(b[8:]),
		Salt2:     binary.BigEndian.Uint32(b[12:]),
		Checksum1: binary.BigEndian.Uint32(b[16:]),
		Checksum2: binary.BigEndian.Uint32(b[20:]),
	}
}

// Position is a point in a WAL generation just after a commit frame: the
// frame count and the running checksum there. The zero frame count with the
// header's checksum is the start of a generation.
type Position struct {
	Header    Header
	Frame     int64 // frames 1..Frame are valid and end on a commit
	Checksum1 uint32
	Checksum2 uint32
	Commit    uint32 // database size in pages after frame Frame; 0 if Frame == 0
}

// Start returns the position at the start of h's generation.
func Start(h Header) Position {
	return Position{Header: h, Checksum1: h.Checksum1, Checksum2: h.Checksum2}
}

// Offset returns the file offset just past the position.
func (p Position) Offset() int64 { return p.Header.FrameOffset(p.Frame + 1) }

// Txn is one committed transaction: frames First..Last (inclusive).
type Txn struct {
	First, Last int64
	Commit      uint32
}

// Scan reads frames after pos from r and returns the position after the
// last valid commit frame, and the pages written in between (page number to
// the frame that last wrote it). Frames are valid only if their salts match
// the header's and the checksum chain holds; everything after the last
// valid commit frame (a transaction in flight, or frames of an older
// generation) is ignored. buf must be at least one frame long.
func Scan(r io.ReaderAt, pos Position, buf []byte, pages map[uint32]int64) (Position, error) {
	h := pos.Header
	fsz := h.FrameSize()
	if int64(len(buf)) < fsz {
		return pos, fmt.Errorf("scan buffer of %d bytes is smaller than a frame (%d)", len(buf), fsz)
	}
	buf = buf[:fsz]
	be := h.BigEndian()
	s1, s2 := pos.Checksum1, pos.Checksum2
	last := pos
	var pending []uint32 // pages of the transaction not yet committed
	var pendingFrames []int64
	for n := pos.Frame + 1; ; n++ {
		if _, err := r.ReadAt(buf, h.FrameOffset(n)); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return last, nil
			}
			return last, fmt.Errorf("read WAL frame %d: %w", n, err)
		}
		fh := ParseFrameHeader(buf)
		if fh.Salt1 != h.Salt1 || fh.Salt2 != h.Salt2 || fh.Pgno == 0 {
			return last, nil
		}
		s1, s2 = Checksum(be, s1, s2, buf[:8])
		s1, s2 = Checksum(be, s1, s2, buf[FrameHeaderSize:])
		if s1 != fh.Checksum1 || s2 != fh.Checksum2 {
			return last, nil
		}
		pending = append(pending, fh.Pgno)
		pendingFrames = append(pendingFrames, n)
		if fh.Commit != 0 {
			if pages != nil {
				for i, pg := range pending {
					pages[pg] = pendingFrames[i]
				}
			}
			pending, pendingFrames = pending[:0], pendingFrames[:0]
			last = Position{Header: h, Frame: n, Checksum1: s1, Checksum2: s2, Commit: fh.Commit}
		}
	}
}

// ReadFramePage reads the page of frame n into data and checks that the
// frame still belongs to h's generation and holds pgno. It reads the page
// before the header: SQLite writes a frame's header before its page, so a
// header still of this generation after the page was read proves the page
// was not being overwritten by a newer generation.
func ReadFramePage(r io.ReaderAt, h Header, n int64, pgno uint32, data []byte) error {
	off := h.FrameOffset(n)
	if _, err := r.ReadAt(data[:h.PageSize], off+FrameHeaderSize); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ErrOverwritten // the WAL was truncated after a restart
		}
		return fmt.Errorf("read WAL frame %d: %w", n, err)
	}
	var hb [FrameHeaderSize]byte
	if _, err := r.ReadAt(hb[:], off); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ErrOverwritten
		}
		return fmt.Errorf("read WAL frame %d header: %w", n, err)
	}
	fh := ParseFrameHeader(hb[:])
	if fh.Salt1 != h.Salt1 || fh.Salt2 != h.Salt2 || fh.Pgno != pgno {
		return ErrOverwritten
	}
	return nil
}

// ErrOverwritten means a frame was replaced by a newer WAL generation, or
// cut off when the WAL was truncated after a restart.
var ErrOverwritten = errors.New("WAL frame was overwritten by a newer generation")
