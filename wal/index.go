package wal

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"os"
	"slices"
)

// Sizes of a FrameIndex. A sync of a few transactions stays in the map;
// a WAL that holds a whole database (a first snapshot, a bulk load, a
// VACUUM) moves to dense chunks of frame numbers, at most
// maxResidentChunks of them in memory and the rest in a spill file.
const (
	smallMax          = 8192
	chunkLen          = 1024 // entries: 4 KiB, one file-system block when spilled
	chunkBytes        = chunkLen * 4
	maxResidentChunks = 256 // 1 MiB resident, whatever the database size
)

type chunk struct {
	frames [chunkLen]uint32 // 0: no frame holds the page
	ref    bool             // used since the clock hand last passed
	dirty  bool             // differs from its copy in the spill file
}

// FrameIndex maps page numbers to the last frame that wrote them. Its
// memory is bounded whatever the number of pages: past a few thousand
// entries it holds dense chunks, and past maxResidentChunks it spills the
// least recently used ones to a file from Spill. Close releases that file.
type FrameIndex struct {
	// Spill creates the unlinked file spilled chunks go to; nil keeps
	// every chunk in memory.
	Spill func() (*os.File, error)

	small    map[uint32]uint32
	resident map[uint32]*chunk
	spilled  []uint64 // bit per chunk number: a copy is in the spill file
	file     *os.File
	max      uint32   // the highest page number set
	ring     []uint32 // resident chunk numbers, in the clock's order
	hand     int
	free     *chunk // the last evicted chunk, reused for the next load
}

// NewFrameIndex returns an empty index that spills to files from spill.
func NewFrameIndex(spill func() (*os.File, error)) *FrameIndex {
	return &FrameIndex{Spill: spill}
}

// Set records that frame n is the last to write page pg.
func (x *FrameIndex) Set(pg uint32, n int64) error {
	if n <= 0 || n > 1<<32-1 {
		return fmt.Errorf("WAL frame number %d out of range", n)
	}
	x.max = max(x.max, pg)
	if x.resident == nil {
		if x.small == nil {
			x.small = map[uint32]uint32{}
		}
		if _, ok := x.small[pg]; ok || len(x.small) < smallMax {
			x.small[pg] = uint32(n)
			return nil
		}
		if err := x.toChunks(); err != nil {
			return err
		}
	}
	c, err := x.chunk(pg/chunkLen, true)
	if err != nil {
		return err
	}
	c.frames[pg%chunkLen] = uint32(n)
	c.dirty = true
	return nil
}

// Max returns the highest page number set, 0 when empty.
func (x *FrameIndex) Max() uint32 { return x.max }

// Get returns the last frame that wrote pg, or false.
func (x *FrameIndex) Get(pg uint32) (int64, bool, error) {
	if x.resident == nil {
		n, ok := x.small[pg]
		return int64(n), ok, nil
	}
	c, err := x.chunk(pg/chunkLen, false)
	if err != nil || c == nil {
		return 0, false, err
	}
	n := c.frames[pg%chunkLen]
	return int64(n), n != 0, nil
}

// Range calls fn for every indexed page up to max, in ascending order.
func (x *FrameIndex) Range(max uint32, fn func(pg uint32, n int64) error) error {
	if x.resident == nil {
		pgs := make([]uint32, 0, len(x.small))
		for pg := range x.small {
			if pg <= max {
				pgs = append(pgs, pg)
			}
		}
		slices.Sort(pgs)
		for _, pg := range pgs {
			if err := fn(pg, int64(x.small[pg])); err != nil {
				return err
			}
		}
		return nil
	}
	// Chunk numbers first: fn may evict and reload chunks as it goes.
	cns := make([]uint32, 0, len(x.resident))
	for cn := range x.resident {
		cns = append(cns, cn)
	}
	for i, w := range x.spilled {
		for ; w != 0; w &= w - 1 {
			if cn := uint32(i*64 + bits.TrailingZeros64(w)); x.resident[cn] == nil {
				cns = append(cns, cn)
			}
		}
	}
	slices.Sort(cns)
	for _, cn := range cns {
		if cn > max/chunkLen {
			break
		}
		c, err := x.chunk(cn, false)
		if err != nil {
			return err
		}
		frames := c.frames // copied: fn may evict c
		for i, n := range frames {
			if pg := cn*chunkLen + uint32(i); n != 0 && pg <= max {
				if err := fn(pg, int64(n)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Close releases the spill file.
func (x *FrameIndex) Close() error {
	x.small, x.resident, x.spilled, x.ring, x.free = nil, nil, nil, nil, nil
	if x.file == nil {
		return nil
	}
	err := x.file.Close()
	x.file = nil
	return err
}

func (x *FrameIndex) toChunks() error {
	x.resident = map[uint32]*chunk{}
	small := x.small
	x.small = nil
	for pg, n := range small {
		c, err := x.chunk(pg/chunkLen, true)
		if err != nil {
			return err
		}
		c.frames[pg%chunkLen] = n
		c.dirty = true
	}
	return nil
}

func (x *FrameIndex) isSpilled(cn uint32) bool {
	i := int(cn / 64)
	return i < len(x.spilled) && x.spilled[i]&(1<<(cn%64)) != 0
}

// chunk returns chunk cn, loading it from the spill file or (with create)
// starting an empty one; nil when it holds nothing and create is false.
func (x *FrameIndex) chunk(cn uint32, create bool) (*chunk, error) {
	if c := x.resident[cn]; c != nil {
		c.ref = true
		return c, nil
	}
	spilled := x.isSpilled(cn)
	if !spilled && !create {
		return nil, nil
	}
	slot, err := x.makeRoom()
	if err != nil {
		return nil, err
	}
	c := x.free
	x.free = nil
	if c == nil {
		c = new(chunk)
	} else {
		*c = chunk{}
	}
	if spilled {
		if err := x.readChunk(cn, c); err != nil {
			return nil, err
		}
	}
	c.ref = true
	x.resident[cn] = c
	if slot < 0 {
		x.ring = append(x.ring, cn)
	} else {
		x.ring[slot] = cn
	}
	return c, nil
}

// makeRoom evicts a chunk not used since the clock hand last passed when
// memory is full, and returns its slot in the ring (-1: no eviction).
func (x *FrameIndex) makeRoom() (int, error) {
	if len(x.ring) < maxResidentChunks || x.Spill == nil {
		return -1, nil // room left, or unbounded by the caller's choice
	}
	for {
		slot := x.hand
		x.hand = (x.hand + 1) % len(x.ring)
		cn := x.ring[slot]
		c := x.resident[cn]
		if c.ref {
			c.ref = false
			continue
		}
		if c.dirty {
			if err := x.writeChunk(cn, c); err != nil {
				return 0, err
			}
		}
		delete(x.resident, cn)
		x.free = c
		return slot, nil
	}
}

func (x *FrameIndex) writeChunk(cn uint32, c *chunk) error {
	if x.file == nil {
		f, err := x.Spill()
		if err != nil {
			return fmt.Errorf("spill WAL frame index: %w", err)
		}
		x.file = f
	}
	var b [chunkBytes]byte
	for i, n := range c.frames {
		binary.LittleEndian.PutUint32(b[i*4:], n)
	}
	if _, err := x.file.WriteAt(b[:], int64(cn)*chunkBytes); err != nil {
		return fmt.Errorf("spill WAL frame index: %w", err)
	}
	if i := int(cn / 64); i >= len(x.spilled) {
		x.spilled = slices.Grow(x.spilled, i+1-len(x.spilled))[:i+1]
	}
	x.spilled[cn/64] |= 1 << (cn % 64)
	c.dirty = false
	return nil
}

func (x *FrameIndex) readChunk(cn uint32, c *chunk) error {
	var b [chunkBytes]byte
	if _, err := x.file.ReadAt(b[:], int64(cn)*chunkBytes); err != nil {
		return fmt.Errorf("read spilled WAL frame index: %w", err)
	}
	for i := range c.frames {
		c.frames[i] = binary.LittleEndian.Uint32(b[i*4:])
	}
	return nil
}
