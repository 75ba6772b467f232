package restore

import (
	"context"
	"database/sql/driver"
	"encoding/binary"
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
	if err := checkSize(tmp, hdr.Commit); err != nil {
		return res, err
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
// (SHA-256, LTX checksums) before handing out a byte, and storage.ApplyLTX
// decodes it again with every size bounded before it is used, in memory
// independent of the database's size.
func applyFile(ctx context.Context, c storage.Client, fi *storage.FileInfo, f *os.File, first bool) (ltx.Header, error) {
	if first && fi.MinTXID != 1 {
		return ltx.Header{}, errors.New("the first file is not a snapshot")
	}
	rc, err := c.OpenLTXFile(ctx, fi.Level, fi.MinTXID, fi.MaxTXID)
	if err != nil {
		return ltx.Header{}, err
	}
	defer rc.Close()
	return storage.ApplyLTX(ctx, rc, c.String()+"/"+fi.String(), f)
}

// checkSize compares the restored size with what the database's own header
// says: SQLite keeps the page count at offset 28 exact whenever the
// version-valid-for number equals the change counter. A replica claiming
// more (a hostile Commit of 4 billion pages) would otherwise become a
// sparse file of terabytes.
func checkSize(f *os.File, commit uint32) error {
	b := make([]byte, 100)
	if _, err := f.ReadAt(b, 0); err != nil {
		return fmt.Errorf("read the restored database's header: %w", err)
	}
	if binary.BigEndian.Uint32(b[92:]) != binary.BigEndian.Uint32(b[24:]) {
		return nil // written by an old SQLite: the header's count is not kept
	}
	if n := binary.BigEndian.Uint32(b[28:]); n != commit {
		return fmt.Errorf("the replica's last file says the database has %d pages, the database's own header %d: the replica is corrupt or was tampered with", commit, n)
	}
	return nil
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
