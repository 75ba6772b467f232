// Package discover finds SQLite databases in directories, the way
// Litestream's directory mode does: files whose base name matches a glob
// pattern and whose header says SQLite, named by their path relative to
// the directory.
package discover

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultPattern is the glob used when a source gives none.
const DefaultPattern = "*.db"

// Source is a directory to find databases in.
type Source struct {
	Dir       string
	Pattern   string // glob on the base name; empty: DefaultPattern
	Recursive bool   // also look in subdirectories, at any depth
}

// Normalize cleans Dir to an absolute path and fills in the pattern, and
// checks the pattern is a valid glob.
func (s Source) Normalize() (Source, error) {
	abs, err := filepath.Abs(s.Dir)
	if err != nil {
		return s, err
	}
	s.Dir = abs
	if s.Pattern == "" {
		s.Pattern = DefaultPattern
	}
	if _, err := filepath.Match(s.Pattern, "x"); err != nil {
		return s, fmt.Errorf("invalid pattern %q for %s: %w", s.Pattern, s.Dir, err)
	}
	return s, nil
}

// Match reports whether path would be one of the source's databases (by
// name only) and returns its name: the path relative to Dir, with forward
// slashes.
func (s Source) Match(path string) (string, bool) {
	rel, err := filepath.Rel(s.Dir, path)
	if err != nil || rel == "." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || rel == ".." {
		return "", false
	}
	if !s.Recursive && strings.ContainsRune(rel, filepath.Separator) {
		return "", false
	}
	base := filepath.Base(path)
	for _, sfx := range []string{"-wal", "-shm", "-journal"} {
		if strings.HasSuffix(base, sfx) {
			return "", false
		}
	}
	if ok, _ := filepath.Match(s.Pattern, base); !ok {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// WatchesDir reports whether dir's entries belong to the source.
func (s Source) WatchesDir(dir string) bool {
	if dir == s.Dir {
		return true
	}
	rel, err := filepath.Rel(s.Dir, dir)
	return s.Recursive && err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// Scan lists the source's databases (by header) and the directories it
// covers (Dir, and every subdirectory when Recursive). Unreadable
// subdirectories are skipped and reported in skipped. Paths for which known
// returns true are listed without being opened: a process that has a
// database open with SQLite must never open and close another fd on it
// (closing any fd drops the process's POSIX locks on the file).
func (s Source) Scan(known func(string) bool) (dbs, dirs []string, skipped []error, err error) {
	fi, err := os.Stat(s.Dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("directory %s: %w", s.Dir, err)
	}
	if !fi.IsDir() {
		return nil, nil, nil, fmt.Errorf("%s is not a directory", s.Dir)
	}
	err = filepath.WalkDir(s.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == s.Dir {
				return err
			}
			skipped = append(skipped, err)
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if p != s.Dir && !s.Recursive {
				return filepath.SkipDir
			}
			dirs = append(dirs, p)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if _, ok := s.Match(p); ok && (known != nil && known(p) || IsSQLite(p)) {
			dbs = append(dbs, p)
		}
		return nil
	})
	if err != nil {
		return nil, nil, skipped, fmt.Errorf("scan %s: %w", s.Dir, err)
	}
	return dbs, dirs, skipped, nil
}

// IsSQLite reports whether path is a regular file starting with SQLite's
// header. A file being created (still empty) is not, yet. It opens and
// closes the file: never call it on a database this process has open with
// SQLite.
func IsSQLite(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 16)
	if _, err := io.ReadFull(f, b); err != nil {
		return false
	}
	return string(b) == "SQLite format 3\x00"
}
