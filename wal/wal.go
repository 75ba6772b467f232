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
	"sync"
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

// Scan reads frames after pos from r and returns the position after the
// last valid commit frame, and records in idx (if not nil) the pages written
// in between with the frame that last wrote each. Frames are valid only if
// their salts match the header's and the checksum chain holds; everything
// after the last valid commit frame (a transaction in flight, or frames of
// an older generation) is ignored. It fails with ErrOverwritten if a
// committed frame changed generation while it was being read.
func Scan(r io.ReaderAt, pos Position, idx *FrameIndex) (Position, error) {
	h := pos.Header
	fr := newFrameReader(r, h)
	defer fr.release()
	be := h.BigEndian()
	s1, s2 := pos.Checksum1, pos.Checksum2
	last := pos
	for n := pos.Frame + 1; ; n++ {
		b, err := fr.frame(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return last, nil
			}
			return last, err
		}
		fh := ParseFrameHeader(b)
		if !fh.of(h) {
			return last, nil
		}
		s1, s2 = Checksum(be, s1, s2, b[:8])
		s1, s2 = Checksum(be, s1, s2, b[FrameHeaderSize:])
		if s1 != fh.Checksum1 || s2 != fh.Checksum2 {
			return last, nil
		}
		if fh.Commit == 0 {
			continue
		}
		if idx != nil {
			// The transaction's page numbers are read again rather than
			// kept while it is scanned: one commit can hold every page
			// of the database.
			switch err := fr.pages(last.Frame+1, n, nil); {
			case errors.Is(err, ErrOverwritten):
				return last, nil
			case err != nil:
				return last, err
			}
			if err := fr.pages(last.Frame+1, n, idx.Set); err != nil {
				return last, err
			}
		}
		last = Position{Header: h, Frame: n, Checksum1: s1, Checksum2: s2, Commit: fh.Commit}
	}
}

// of reports whether the frame belongs to h's generation.
func (fh FrameHeader) of(h Header) bool {
	return fh.Salt1 == h.Salt1 && fh.Salt2 == h.Salt2 && fh.Pgno != 0
}

// scanBufSize is how much of the WAL one read takes: a WAL holding a whole
// database is read in a few thousand calls, not one per frame.
const scanBufSize = 256 << 10

var scanBufs = sync.Pool{New: func() any { b := make([]byte, scanBufSize); return &b }}

// frameReader reads frames through a window of whole frames.
type frameReader struct {
	r     io.ReaderAt
	h     Header
	fsz   int64
	buf   *[]byte
	first int64 // frame number of the window's first frame
	count int64 // whole frames in the window
}

func newFrameReader(r io.ReaderAt, h Header) *frameReader {
	fr := &frameReader{r: r, h: h, fsz: h.FrameSize()}
	if fr.fsz <= scanBufSize {
		fr.buf = scanBufs.Get().(*[]byte)
	} else {
		b := make([]byte, fr.fsz)
		fr.buf = &b
	}
	return fr
}

func (fr *frameReader) release() {
	if len(*fr.buf) == scanBufSize {
		scanBufs.Put(fr.buf)
	}
	fr.buf = nil
}

// frame returns frame n's bytes, valid until the next call; io.EOF when
// the file ends before the frame does.
func (fr *frameReader) frame(n int64) ([]byte, error) {
	if n < fr.first || n >= fr.first+fr.count {
		buf := *fr.buf
		want := int64(len(buf)) / fr.fsz * fr.fsz
		got, err := fr.r.ReadAt(buf[:want], fr.h.FrameOffset(n))
		fr.first, fr.count = n, int64(got)/fr.fsz
		if fr.count == 0 {
			if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("read WAL frame %d: %w", n, err)
		}
	}
	off := (n - fr.first) * fr.fsz
	return (*fr.buf)[off : off+fr.fsz], nil
}

// pages reads frames a..b again and passes each page number to set (nil:
// only check): ErrOverwritten if one no longer belongs to the generation.
func (fr *frameReader) pages(a, b int64, set func(pg uint32, n int64) error) error {
	for k := a; k <= b; k++ {
		f, err := fr.frame(k)
		if errors.Is(err, io.EOF) {
			return ErrOverwritten // truncated after a restart
		}
		if err != nil {
			return err
		}
		fh := ParseFrameHeader(f)
		if !fh.of(fr.h) {
			return ErrOverwritten
		}
		if set != nil {
			if err := set(fh.Pgno, k); err != nil {
				return err
			}
		}
	}
	return nil
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
	if fh := ParseFrameHeader(hb[:]); !fh.of(h) || fh.Pgno != pgno {
		return ErrOverwritten
	}
	return nil
}

// ErrOverwritten means a frame was replaced by a newer WAL generation, or
// cut off when the WAL was truncated after a restart.
var ErrOverwritten = errors.New("WAL frame was overwritten by a newer generation")
