package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/superfly/ltx"
)

// Spooled is an LTX file copied to local disk and verified.
type Spooled struct {
	File   *os.File // positioned at offset 0
	Size   int64
	SHA256 string // hex
	Header ltx.Header
}

// Timestamp returns the LTX header's timestamp.
func (s *Spooled) Timestamp() time.Time { return time.UnixMilli(s.Header.Timestamp).UTC() }

// SpoolLTX copies r into f (an empty file opened for reading and writing)
// while hashing it and verifying its LTX checksums in the same pass, and
// checks that the header's TXID range is (minTXID, maxTXID). On success f
// is positioned at 0.
func SpoolLTX(f *os.File, r io.Reader, minTXID, maxTXID ltx.TXID) (*Spooled, error) {
	return inspectInto(f, io.TeeReader(r, f), minTXID, maxTXID)
}

// InspectLTX hashes and verifies an LTX file already on local disk, from
// its start, without copying it. On success f is positioned at 0.
func InspectLTX(f *os.File, minTXID, maxTXID ltx.TXID) (*Spooled, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return inspectInto(f, f, minTXID, maxTXID)
}

// inspectInto inspects r, whose bytes are f's, and rewinds f.
func inspectInto(f *os.File, r io.Reader, minTXID, maxTXID ltx.TXID) (*Spooled, error) {
	sp, err := inspect(r, minTXID, maxTXID)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	sp.File = f
	return sp, nil
}

// inspect reads r to its end once: SHA-256, size and full LTX verification.
func inspect(r io.Reader, minTXID, maxTXID ltx.TXID) (*Spooled, error) {
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, h)}
	hdr, err := VerifyLTX(cr, minTXID, maxTXID)
	if err != nil {
		return nil, fmt.Errorf("refusing to store an invalid LTX file %s: %w", ltx.FormatFilename(minTXID, maxTXID), err)
	}
	return &Spooled{Size: cr.n, SHA256: hex.EncodeToString(h.Sum(nil)), Header: hdr}, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// CreateUnlinkedTemp creates a temp file in dir ("" = the OS default) and
// removes its name at once, so the space is freed however the process ends.
// A missing dir (a staging directory on a tmpfs emptied by a reboot or a
// cleaner) is created again rather than failing every sync until restart.
func CreateUnlinkedTemp(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "walsync-*.tmp")
	if errors.Is(err, fs.ErrNotExist) {
		d := dir
		if d == "" {
			d = os.TempDir()
		}
		if merr := os.MkdirAll(d, 0o700); merr == nil {
			f, err = os.CreateTemp(dir, "walsync-*.tmp")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create temp file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink temp file: %w", err)
	}
	return f, nil
}

// VerifyFile checks f from its start against wantSHA256 (hex; skipped when
// empty) and the LTX checksums, and that it holds (minTXID, maxTXID). object
// names it in the error. On success f is positioned at 0.
func VerifyFile(f *os.File, object, wantSHA256 string, minTXID, maxTXID ltx.TXID) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if wantSHA256 != "" {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return fmt.Errorf("read %s: %w", object, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != wantSHA256 {
			return &CorruptError{Object: object, Reason: fmt.Sprintf("SHA-256 is %s, the object's metadata says %s", got, wantSHA256)}
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	if _, err := VerifyLTX(f, minTXID, maxTXID); err != nil {
		return &CorruptError{Object: object, Reason: err.Error()}
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// VerifyLTX reads a whole LTX file from r, checking every page, the page
// index, the trailer and the file checksum, the rules of LTXReader (page
// numbers within Commit, a snapshot holding every page 1..Commit), and that
// the header's TXID range is (minTXID, maxTXID). Its memory is bounded by
// the page size, whatever the bytes claim, and it never panics on hostile
// input.
func VerifyLTX(r io.Reader, minTXID, maxTXID ltx.TXID) (hdr ltx.Header, err error) {
	err = recoverLTX(func() error {
		d := NewLTXReader(r)
		var err error
		if hdr, err = d.ReadHeader(); err != nil {
			return err
		}
		if hdr.MinTXID != minTXID || hdr.MaxTXID != maxTXID {
			return fmt.Errorf("LTX header holds TXIDs %s-%s, expected %s-%s", hdr.MinTXID, hdr.MaxTXID, minTXID, maxTXID)
		}
		_, err = d.Close()
		return err
	})
	if err != nil {
		return hdr, fmt.Errorf("LTX verification failed: %w", err)
	}
	return hdr, nil
}

// recoverLTX runs fn, turning a panic into an error: decoding replica
// bytes must fail the object, never crash the daemon. (superfly/ltx
// v0.5.x's Decoder has panicked on truncated files; LTXReader should not,
// and this keeps a bug in it from becoming a crash.)
func recoverLTX(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed LTX file: %v", p)
		}
	}()
	return fn()
}

// WriterAtTruncater is the file ApplyLTX writes pages into.
type WriterAtTruncater interface {
	io.WriterAt
	Truncate(size int64) error
}

// ApplyLTX writes the pages of the LTX file read from r into f at their
// offsets and truncates f to the header's Commit, decoding with LTXReader
// (memory bounded by the page size, every rule VerifyLTX checks, panics
// recovered). object names the file in errors, which are *CorruptError when
// the bytes are at fault. Pages are written as they are read and the file
// checksum is checked at the end, so on error f holds a partial state and
// must be discarded. ctx is checked between pages.
func ApplyLTX(ctx context.Context, r io.Reader, object string, f WriterAtTruncater) (hdr ltx.Header, err error) {
	var ioErr error // a failure of f or ctx, not of the bytes
	err = recoverLTX(func() error {
		d := NewLTXReader(r)
		var err error
		if hdr, err = d.ReadHeader(); err != nil {
			return err
		}
		for {
			if ioErr = ctx.Err(); ioErr != nil {
				return ioErr
			}
			pgno, data, err := d.Next()
			if err == io.EOF {
				break
			} else if err != nil {
				return err
			}
			if _, ioErr = f.WriteAt(data, int64(pgno-1)*int64(hdr.PageSize)); ioErr != nil {
				return ioErr
			}
		}
		if _, err := d.Close(); err != nil {
			return err
		}
		// A smaller commit means the database shrank (VACUUM).
		ioErr = f.Truncate(int64(hdr.Commit) * int64(hdr.PageSize))
		return ioErr
	})
	switch {
	case err == nil:
		return hdr, nil
	case ioErr != nil:
		return hdr, fmt.Errorf("apply %s: %w", object, err)
	default:
		return hdr, &CorruptError{Object: object, Reason: err.Error()}
	}
}

// LimitReadCloser reads at most n bytes of rc; closing it closes rc.
func LimitReadCloser(rc io.ReadCloser, n int64) io.ReadCloser {
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, n), rc}
}
