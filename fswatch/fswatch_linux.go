package fswatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
