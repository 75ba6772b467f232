// Package fswatch watches directories with one inotify instance for the
// whole process: one watch per directory, however many databases it holds.
// On other systems (macOS) New fails and callers find changes by stat
// sweeps alone (fswatch_other.go).
package fswatch

import (
	"errors"
	"os"
	"sync"
)

// Op is what happened to a name in a watched directory.
type Op uint8

// Ops reported by a Watcher.
const (
	Write    Op = 1 << iota // data written
	Touch                   // closed after being open for writing, or attributes changed: maybe nothing new
	Create                  // created, or renamed into the directory
	Remove                  // deleted, or renamed out of the directory
	Overflow                // events were lost: look at everything again
	DirGone                 // the watched directory itself was removed
)

// Event is one change. Name is empty for Overflow and DirGone.
type Event struct {
	Dir   string
	Name  string
	Op    Op
	IsDir bool
}

// ErrLimit means the kernel's watch limit (fs.inotify.max_user_watches) is
// reached; callers fall back to stat sweeps for that directory.
var ErrLimit = errors.New("inotify watch limit reached (raise fs.inotify.max_user_watches)")

// Watcher is a set of watched directories.
type Watcher struct {
	f    *os.File
	mu   sync.Mutex
	dirs map[int]string // watch descriptor -> directory
	wds  map[string]int
}

// Len returns the number of watched directories.
func (w *Watcher) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.wds)
}
