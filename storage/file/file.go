// Package file is the local-directory replica backend: files are laid out as
// Litestream v0.5 lays them out, <root>/ltx/<level>/<min>-<max>.ltx.
//
// A file's SHA-256 is kept in the extended attribute user.walsync.sha256. On a
// filesystem without user xattrs it goes into a sidecar file
// <min>-<max>.ltx.sha256 instead; Litestream's file client skips both (it
// lists only names that parse as LTX files and reads only file contents).
package file

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/superfly/ltx"
	"golang.org/x/sys/unix"

	"github.com/walsync/walsync/internal/fsx"
	"github.com/walsync/walsync/storage"
)

// XattrSHA256 is the extended attribute that holds a file's hex SHA-256.
const XattrSHA256 = "user.walsync.sha256"

// SidecarSuffix is appended to an LTX file's name for the SHA-256 sidecar
// used where extended attributes are not supported.
const SidecarSuffix = ".sha256"

// Client is a replica in a local directory.
type Client struct {
	root string
}

var _ storage.Client = (*Client)(nil)

// New returns a client for the replica rooted at dir. Nothing is created
// until the first write.
func New(dir string) *Client { return &Client{root: filepath.Clean(dir)} }

// Root returns the replica's directory.
func (c *Client) Root() string { return c.root }

// Identity implements storage.Identifier: the replica's directory with
// symbolic links resolved as far as it exists, so that two paths to one
// directory are known as one replica.
func (c *Client) Identity() string {
	dir, rest := c.root, ""
	for {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			return (&url.URL{Scheme: "file", Path: filepath.Join(real, rest)}).String()
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return c.String()
		}
		dir, rest = parent, filepath.Join(filepath.Base(dir), rest)
	}
}

// String implements storage.Client.
func (c *Client) String() string { return (&url.URL{Scheme: "file", Path: c.root}).String() }

// Sub implements storage.Client.
func (c *Client) Sub(name string) storage.Client {
	return &Client{root: filepath.Join(c.root, filepath.FromSlash(name))}
}

// HasFiles implements storage.EmptyChecker: whether any level directory
// holds an entry.
func (c *Client) HasFiles(ctx context.Context) (bool, error) {
	levels, err := os.ReadDir(filepath.Join(c.root, "ltx"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	for _, l := range levels {
		if has, err := dirHasEntry(filepath.Join(c.root, "ltx", l.Name())); err != nil || has {
			return has, err
		}
	}
	return false, nil
}

// dirHasEntry reports whether dir holds any entry, reading one: a level
// directory may hold any number.
func dirHasEntry(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	defer f.Close()
	ents, err := f.ReadDir(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return len(ents) > 0, nil
}

// LevelDir returns the directory of one level.
func (c *Client) LevelDir(level int) string {
	return filepath.Join(c.root, "ltx", strconv.Itoa(level))
}

// Path returns the path of one LTX file.
func (c *Client) Path(level int, minTXID, maxTXID ltx.TXID) string {
	return filepath.Join(c.LevelDir(level), ltx.FormatFilename(minTXID, maxTXID))
}

// WriteLTXFile implements storage.Client.
func (c *Client) WriteLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, r io.Reader) (*storage.FileInfo, error) {
	if err := checkArgs(level, minTXID, maxTXID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path := c.Path(level, minTXID, maxTXID)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create replica directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	committed := false
	defer func() {
		tmp.Close()
		if !committed {
			os.Remove(tmp.Name())
		}
	}()

	sp, err := storage.SpoolLTX(tmp, r, minTXID, maxTXID)
	if err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	sidecar := false
	if err := unix.Fsetxattr(int(tmp.Fd()), XattrSHA256, []byte(sp.SHA256), 0); err != nil {
		if !errors.Is(err, unix.ENOTSUP) {
			return nil, fmt.Errorf("set %s on %s: %w", XattrSHA256, tmp.Name(), err)
		}
		sidecar = true
	}
	ts := sp.Timestamp()
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	// Litestream takes a file's creation time from its mtime.
	if err := os.Chtimes(tmp.Name(), ts, ts); err != nil {
		return nil, err
	}
	// Never over an existing file: another writer's, or our own earlier
	// write of the same bytes (storage.ResolveExisting decides which).
	if err := fsx.RenameNoReplace(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return storage.ResolveExisting(ctx, c, slog.Default(), path, level, minTXID, maxTXID, sp.SHA256, existing(path))
	} else if err != nil {
		return nil, fmt.Errorf("rename into place: %w", err)
	}
	committed = true
	// The sidecar goes in only once the file is ours: written before, it
	// could replace the sidecar of another writer's file. Until it is in
	// place (or if this process dies first) the file is read like
	// Litestream's, verified by its LTX checksums alone.
	if sidecar {
		if err := writeSidecar(path+SidecarSuffix, sp.SHA256); err != nil {
			return nil, err
		}
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return &storage.FileInfo{Level: level, MinTXID: minTXID, MaxTXID: maxTXID, Size: sp.Size, CreatedAt: ts, SHA256: sp.SHA256}, nil
}

// OpenLTXFile implements storage.Client.
func (c *Client) OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID) (io.ReadCloser, error) {
	if err := checkArgs(level, minTXID, maxTXID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path := c.Path(level, minTXID, maxTXID)
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	want, err := readSHA256(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := storage.VerifyFile(f, path, want, minTXID, maxTXID); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenLTXRange implements storage.Client.
func (c *Client) OpenLTXRange(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	if err := checkArgs(level, minTXID, maxTXID); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("negative offset %d", offset)
	}
	f, err := open(c.Path(level, minTXID, maxTXID))
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	if size > 0 {
		return storage.LimitReadCloser(f, size), nil
	}
	return f, nil
}

// LTXFiles implements storage.Client.
func (c *Client) LTXFiles(ctx context.Context, level int, after ltx.TXID) (storage.FileIterator, error) {
	if err := storage.ValidateLevel(level); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	names, err := sortedNames(c.LevelDir(level), after)
	if err != nil {
		return nil, err
	}
	return &dirIterator{c: c, level: level, names: names}, nil
}

// txidRange is an LTX file name, parsed.
type txidRange struct{ min, max ltx.TXID }

// sortedNames returns, sorted, the LTX file names of dir whose MinTXID is
// greater than after. A directory must be read whole to be sorted; only
// the parsed names are held (16 bytes each), and dirIterator stats each
// file when it reaches it, so a directory stuffed with objects costs the
// consumer what it keeps (storage.Collect bounds that), not a FileInfo
// per object.
func sortedNames(dir string, after ltx.TXID) ([]txidRange, error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	defer f.Close()
	var names []txidRange
	walked := 0
	for {
		batch, err := f.ReadDir(1024)
		if walked += len(batch); walked > storage.ScanLimit() {
			return nil, fmt.Errorf("list %s: %w", dir, storage.ListingTooLong())
		}
		for _, e := range batch {
			minTXID, maxTXID, perr := ltx.ParseFilename(e.Name())
			if perr == nil && minTXID > after && e.Type().IsRegular() {
				names = append(names, txidRange{minTXID, maxTXID})
			}
		}
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
	}
	slices.SortFunc(names, func(a, b txidRange) int {
		return cmp.Or(cmp.Compare(a.min, b.min), cmp.Compare(a.max, b.max))
	})
	return names, nil
}

// dirIterator walks sorted names, statting each file as it is reached.
type dirIterator struct {
	c     *Client
	level int
	names []txidRange
	item  *storage.FileInfo
	err   error
}

func (it *dirIterator) Next() bool {
	it.item = nil
	for it.err == nil && len(it.names) > 0 {
		n := it.names[0]
		it.names = it.names[1:]
		path := it.c.Path(it.level, n.min, n.max)
		fi, err := os.Lstat(path)
		if errors.Is(err, os.ErrNotExist) || (err == nil && !fi.Mode().IsRegular()) {
			continue // deleted (or replaced) while listing
		} else if err != nil {
			it.err = fmt.Errorf("list %s: %w", path, err)
			return false
		}
		it.item = &storage.FileInfo{
			Level: it.level, MinTXID: n.min, MaxTXID: n.max,
			Size: fi.Size(), CreatedAt: fi.ModTime().UTC(),
		}
		return true
	}
	return false
}

func (it *dirIterator) Item() *storage.FileInfo { return it.item }
func (it *dirIterator) Err() error              { return it.err }
func (it *dirIterator) Close() error            { it.names = nil; return nil }

// DeleteLTXFiles implements storage.Client.
func (c *Client) DeleteLTXFiles(ctx context.Context, files []*storage.FileInfo) error {
	dirs := map[string]bool{}
	for _, fi := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := checkArgs(fi.Level, fi.MinTXID, fi.MaxTXID); err != nil {
			return err
		}
		path := c.Path(fi.Level, fi.MinTXID, fi.MaxTXID)
		// The sidecar first: a file left without one is read like
		// Litestream's; a sidecar left without its file would be stale
		// for the next file of that name.
		if err := os.Remove(path + SidecarSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", path+SidecarSuffix, err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", path, err)
		}
		dirs[filepath.Dir(path)] = true
	}
	for dir := range dirs {
		if err := syncDir(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func checkArgs(level int, minTXID, maxTXID ltx.TXID) error {
	if err := storage.ValidateLevel(level); err != nil {
		return err
	}
	return storage.ValidateRange(minTXID, maxTXID)
}

func open(path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open %s: %w", path, storage.ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}

// readSHA256 returns the file's recorded SHA-256, or "" when it has none
// (a file written by Litestream).
func readSHA256(f *os.File, path string) (string, error) {
	buf := make([]byte, 64)
	n, err := unix.Fgetxattr(int(f.Fd()), XattrSHA256, buf)
	switch {
	case err == nil:
		return validSHA256(string(buf[:n]), path)
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
		b, err := readSidecar(path + SidecarSuffix)
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		} else if err != nil {
			return "", err
		}
		return validSHA256(strings.TrimSpace(string(b)), path)
	case errors.Is(err, unix.ERANGE):
		return "", &storage.CorruptError{Object: path, Reason: "the " + XattrSHA256 + " attribute is not a SHA-256"}
	default:
		return "", fmt.Errorf("read %s of %s: %w", XattrSHA256, path, err)
	}
}

// readSidecar reads a SHA-256 sidecar, at most 128 bytes of it: it lies in
// the replica, where a hostile one could be of any size (a valid one is 65).
func readSidecar(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 128))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func validSHA256(s, path string) (string, error) {
	if len(s) != 64 || strings.Trim(s, "0123456789abcdef") != "" {
		return "", &storage.CorruptError{Object: path, Reason: fmt.Sprintf("recorded SHA-256 %q is malformed", s)}
	}
	return s, nil
}

// writeSidecar puts the SHA-256 sidecar of a file this process just
// created in place, whole or not at all: a temp file of its own (two
// writers never share one), fsynced, renamed over any stale sidecar left by
// a deleted file of the same name.
func writeSidecar(path, sum string) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	_, err = f.WriteString(sum + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// existing describes the file at path, found where a write meant to create
// it. Its SHA-256 is computed from its bytes: a recorded one may not be in
// place yet (a sidecar follows the file).
func existing(path string) storage.Existing {
	ex := storage.Existing{Size: -1}
	f, err := os.Open(path)
	if err != nil {
		return ex
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		ex.Size, ex.CreatedAt = fi.Size(), fi.ModTime().UTC()
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err == nil {
		ex.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	return ex
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// ListReplicas implements storage.ReplicaLister: every directory below the
// root that has an ltx directory. Directories are read in batches, at most
// storage.ScanLimit entries in all, and at most storage.MaxListedFiles
// replicas are named: a root stuffed with files or directories costs a
// bounded walk, not memory for every entry.
func (c *Client) ListReplicas(ctx context.Context) ([]string, error) {
	var names []string
	walked := 0
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		f, err := os.Open(dir)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		var subdirs []string
		err = func() error {
			defer f.Close() // before the subdirectories: one fd at a time, however deep
			for {
				batch, err := f.ReadDir(1024)
				if walked += len(batch); walked > storage.ScanLimit() {
					return fmt.Errorf("list the databases under %s: more than %d entries; give a narrower -b directory", c.root, storage.ScanLimit())
				}
				for _, e := range batch {
					if !e.IsDir() {
						continue
					}
					if e.Name() == "ltx" {
						if len(names) == storage.MaxListedFiles {
							return fmt.Errorf("list the databases under %s: more than %d databases, the most walsync lists at once; give a narrower -b directory", c.root, storage.MaxListedFiles)
						}
						names = append(names, rel)
						continue
					}
					subdirs = append(subdirs, e.Name())
				}
				if errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}()
		if err != nil {
			return err
		}
		for _, sd := range subdirs {
			if err := walk(filepath.Join(dir, sd), path.Join(rel, sd)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(c.root, ""); err != nil {
		return nil, err
	}
	for i, n := range names {
		if n == "" {
			names[i] = "."
		}
	}
	slices.Sort(names)
	return names, nil
}
