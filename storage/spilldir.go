package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// spillDirs maps a temp dir to this process's spill directory in it.
var spillDirs sync.Map

// SpillDir returns this process's directory in tempDir ("" = the OS
// default) for files a library creates by name and removes when done (the
// ltx encoder's page-index spill): walsync-<pid>.spill. A process killed
// with -9 cannot remove its files, so the first call in tempDir removes the
// directories of processes that no longer run.
func SpillDir(tempDir string) (string, error) {
	if tempDir == "" {
		tempDir = os.TempDir()
	}
	if d, ok := spillDirs.Load(tempDir); ok {
		// Made again if a cleaner emptied the temp dir meanwhile.
		if err := os.MkdirAll(d.(string), 0o700); err != nil {
			return "", fmt.Errorf("create spill directory: %w", err)
		}
		return d.(string), nil
	}
	dir := filepath.Join(tempDir, fmt.Sprintf("walsync-%d.spill", os.Getpid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create spill directory: %w", err)
	}
	if _, loaded := spillDirs.LoadOrStore(tempDir, dir); !loaded {
		removeStaleSpillDirs(tempDir)
	}
	return dir, nil
}

// staleAfter is how long a spill directory and its files must have been
// untouched before they are removed: a pid that is gone here may be a live
// process in another PID namespace sharing the temp dir.
const staleAfter = 10 * time.Minute

// removeStaleSpillDirs removes walsync-<pid>.spill directories in tempDir
// whose process is gone and which nothing has touched for staleAfter.
func removeStaleSpillDirs(tempDir string) {
	matches, _ := filepath.Glob(filepath.Join(tempDir, "walsync-*.spill"))
	for _, m := range matches {
		s := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), "walsync-"), ".spill")
		pid, err := strconv.Atoi(s)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) && untouchedSince(m, time.Now().Add(-staleAfter)) {
			os.RemoveAll(m)
		}
	}
}

// untouchedSince reports whether dir and every file in it were last
// modified before t.
func untouchedSince(dir string, t time.Time) bool {
	fi, err := os.Stat(dir)
	if err != nil || fi.ModTime().After(t) {
		return false
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.ModTime().After(t) {
			return false
		}
	}
	return true
}
