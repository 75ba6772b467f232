// Package fswatch watches directories with one inotify instance for the
// whole process: one watch per directory, however many databases it holds.
package fswatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
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

const mask = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_CREATE | unix.IN_DELETE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// New starts an inotify instance.
func New() (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	return &Watcher{f: os.NewFile(uintptr(fd), "inotify"), dirs: map[int]string{}, wds: map[string]int{}}, nil
}

// Add watches dir; adding a watched directory again does nothing.
func (w *Watcher) Add(dir string) error {
	dir = filepath.Clean(dir)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.wds[dir]; ok {
		return nil
	}
	wd, err := unix.InotifyAddWatch(int(w.f.Fd()), dir, mask)
	if errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("watch %s: %w", dir, ErrLimit)
	}
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	w.dirs[wd], w.wds[dir] = dir, wd
	return nil
}

// Remove stops watching dir.
func (w *Watcher) Remove(dir string) {
	dir = filepath.Clean(dir)
	w.mu.Lock()
	defer w.mu.Unlock()
	if wd, ok := w.wds[dir]; ok {
		_, _ = unix.InotifyRmWatch(int(w.f.Fd()), uint32(wd))
		delete(w.wds, dir)
		delete(w.dirs, wd)
	}
}

// Len returns the number of watched directories.
func (w *Watcher) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.wds)
}

// Run reads events and hands each to fn until ctx ends; then it closes the
// watcher. fn runs on Run's goroutine and must not block for long.
func (w *Watcher) Run(ctx context.Context, fn func(Event)) error {
	stop := context.AfterFunc(ctx, func() { w.f.Close() })
	defer stop()
	buf := make([]byte, 64*1024)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read inotify events: %w", err)
		}
		w.dispatch(buf[:n], fn)
	}
}

func (w *Watcher) dispatch(b []byte, fn func(Event)) {
	for len(b) >= unix.SizeofInotifyEvent {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(raw.Len)
		if end > len(b) {
			return
		}
		name := string(b[unix.SizeofInotifyEvent:end])
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		b = b[end:]
		if raw.Mask&unix.IN_Q_OVERFLOW != 0 {
			fn(Event{Op: Overflow})
			continue
		}
		w.mu.Lock()
		dir, ok := w.dirs[int(raw.Wd)]
		if ok && raw.Mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
			delete(w.dirs, int(raw.Wd))
			delete(w.wds, dir)
		}
		w.mu.Unlock()
		if !ok {
			continue
		}
		ev := Event{Dir: dir, Name: name, IsDir: raw.Mask&unix.IN_ISDIR != 0}
		switch m := raw.Mask; {
		case m&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
			ev.Op, ev.Name = DirGone, ""
		case m&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			ev.Op = Create
		case m&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
			ev.Op = Remove
		case m&unix.IN_MODIFY != 0:
			ev.Op = Write
		default:
			ev.Op = Touch
		}
		fn(ev)
	}
}
