package restore

import (
	"bufio"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
)

// Options for Restore.
type Options struct {
	Client storage.Client // the database's replica
	Output string         // the database file to create
	Target Target
	Force  bool // replace an existing output
	Logger *slog.Logger
}

// Result says what was restored.
type Result struct {
	TXID      ltx.TXID
	Files     int
	Pages     uint32 // database size in pages
	Timestamp time.Time
}

// Restore writes the database at opts.Target to opts.Output: into a temp
// file beside it, verified file by file as it is read, then checked with
// PRAGMA integrity_check, fsynced and renamed. On any error nothing is left
// at opts.Output, and a database it was to replace (opts.Force) is left as
// it was, with its -wal and -shm: they are set aside only right before the
// final rename and put back if it fails (place.go). A database a process
// has open is not replaced; restores racing to one output take turns, and
// without Force only one succeeds. Temp files of killed restores to the
// same output are removed first.
func Restore(ctx context.Context, opts Options) (res Result, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	out, err := filepath.Abs(opts.Output)
	if err != nil {
		return res, err
	}
	if err := checkDir(filepath.Dir(out)); err != nil {
		return res, err
	}
	// Before reading the replica: what killed restores left is cleared up
	// (it may free the space this restore needs), and an output that
	// cannot be restored to is refused without the wait.
	unlock, err := lockDir(ctx, filepath.Dir(out), opts.Logger)
	if err != nil {
		return res, err
	}
	err = recoverAsides(out, opts.Logger)
	unlock()
	if err != nil {
		return res, err
	}
	removeStaleTemps(out, opts.Logger)
	if err := checkOutput(out, opts.Force); err != nil {
		return res, err
	}
	plan, err := Plan(ctx, opts.Client, opts.Target)
	if err != nil {
		return res, fmt.Errorf("restore %s to %s: %w", opts.Client, opts.Target, err)
	}

	tmp, forget, err := createTemp(out)
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
		tmp.Close() // after the remove: the flock says a live restore owns it
		forget()
	}()

	var hdr ltx.Header
	for i, fi := range plan {
		h, err := applyFile(ctx, opts.Client, fi, tmp, i == 0)
		if err != nil {
			return res, fmt.Errorf("apply %s/%s: %w", opts.Client, fi, err)
		}
		if i > 0 && h.PageSize != hdr.PageSize {
			return res, fmt.Errorf("%s has page size %d, earlier files %d", fi, h.PageSize, hdr.PageSize)
		}
		hdr = h
	}
	if err := tmp.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
		return res, err
	}
	if err := tmp.Sync(); err != nil {
		return res, fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := integrityCheck(tmp.Name()); err != nil {
		return res, fmt.Errorf("restored database failed its integrity check, nothing was written to %s: %w", out, err)
	}
	if err := commit(ctx, tmp, out, opts.Force, opts.Logger); err != nil {
		return res, err
	}
	return Result{TXID: hdr.MaxTXID, Files: len(plan), Pages: hdr.Commit, Timestamp: time.UnixMilli(hdr.Timestamp).UTC()}, nil
}

// applyFile writes fi's pages into f. The client verifies the whole file
// (SHA-256, LTX checksums) before handing out a byte.
func applyFile(ctx context.Context, c storage.Client, fi *storage.FileInfo, f *os.File, first bool) (ltx.Header, error) {
	rc, err := c.OpenLTXFile(ctx, fi.Level, fi.MinTXID, fi.MaxTXID)
	if err != nil {
		return ltx.Header{}, err
	}
	defer rc.Close()
	dec := ltx.NewDecoder(bufio.NewReaderSize(rc, 64<<10))
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Header{}, err
	}
	hdr := dec.Header()
	if first && !hdr.IsSnapshot() {
		return hdr, errors.New("the first file is not a snapshot")
	}
	data := make([]byte, hdr.PageSize)
	var ph ltx.PageHeader
	for {
		if err := ctx.Err(); err != nil {
			return hdr, err
		}
		if err := dec.DecodePage(&ph, data); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return hdr, err
		}
		if _, err := f.WriteAt(data, int64(ph.Pgno-1)*int64(hdr.PageSize)); err != nil {
			return hdr, err
		}
	}
	if err := dec.Close(); err != nil {
		return hdr, err
	}
	// A smaller commit means the database shrank (VACUUM).
	if err := f.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
		return hdr, err
	}
	return hdr, nil
}

// integrityCheck runs PRAGMA integrity_check on a closed database file,
// read-only and without creating -wal or -shm files.
func integrityCheck(path string) error {
	dsn := (&url.URL{Scheme: "file", Path: path}).String() + "?mode=ro&immutable=1"
	c, err := (&sqlite3.SQLiteDriver{}).Open(dsn)
	if err != nil {
		return err
	}
	defer c.Close()
	rows, err := c.(*sqlite3.SQLiteConn).Query("PRAGMA integrity_check", nil)
	if err != nil {
		return err
	}
	defer rows.Close()
	var msgs []string
	dv := make([]driver.Value, 1)
	for {
		if err := rows.Next(dv); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return err
		}
		s, _ := dv[0].(string)
		if b, ok := dv[0].([]byte); ok {
			s = string(b)
		}
		msgs = append(msgs, s)
	}
	if len(msgs) == 1 && msgs[0] == "ok" {
		return nil
	}
	return fmt.Errorf("integrity_check: %v", msgs)
}
