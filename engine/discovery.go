package engine

// Discovery glue: file events (one inotify watch per directory), the stat
// sweep that backs them up, and scans of Sources for new databases. It
// decides what changed; lifecycle.go decides what that does.

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/walsync/walsync/discover"
	"github.com/walsync/walsync/fswatch"
)

// watch starts the inotify reader, unless file events are off or
// unavailable; it stops with ctx. Events queue for the scheduler; when the
// queue is full they are dropped and counted as an overflow, which looks
// at every database.
func (eng *Engine) watch(ctx context.Context) {
	eng.events = make(chan fswatch.Event, 4096)
	if eng.opts.NoFileEvents {
		return
	}
	w, err := fswatch.New()
	if err != nil {
		eng.log.Warn("no file events; changes are found by stat sweeps only", "every", eng.opts.SweepInterval, "error", err)
		return
	}
	eng.watcher = w
	go func() {
		err := w.Run(ctx, func(ev fswatch.Event) {
			select {
			case eng.events <- ev:
			default:
				eng.overflow.Store(true)
			}
		})
		if err != nil {
			eng.log.Error("file events stopped; changes are found by stat sweeps only", "error", err)
		}
	}()
}

// watchDir adds an inotify watch; at the kernel's limit, sweeps cover it.
func (eng *Engine) watchDir(dir string) {
	if eng.watcher == nil {
		return
	}
	if err := eng.watcher.Add(dir); err != nil {
		if eng.watchErr == nil {
			eng.log.Warn("cannot watch every directory; the rest are found by stat sweeps (slower to notice changes)",
				"every", eng.opts.SweepInterval, "watched", eng.watcher.Len(), "error", err)
		}
		eng.watchErr = err
	}
}

// rescan looks for databases in every source: at start, after lost events,
// and on a slow schedule in case the file system gives no events.
func (eng *Engine) rescan() {
	every := 10 * eng.opts.SweepInterval
	if eng.watcher == nil || eng.watchErr != nil {
		every = eng.opts.SweepInterval
	}
	eng.rescanAt = time.Now().Add(every)
	for i := range eng.opts.Sources {
		eng.scanSource(&eng.opts.Sources[i], eng.opts.Sources[i].Dir)
	}
}

func (eng *Engine) scanSource(src *Source, dir string) {
	sub := src.Source
	sub.Dir = dir
	known := func(p string) bool { _, ok := eng.byPath[p]; return ok }
	dbs, dirs, skipped, err := sub.Scan(known)
	if err != nil {
		eng.log.Error("cannot scan directory for databases; will retry", "dir", dir, "error", err)
		return
	}
	for _, err := range skipped {
		eng.log.Warn("skipped unreadable path", "error", err)
	}
	for _, d := range dirs {
		eng.watchDir(d)
	}
	for _, p := range dbs {
		if _, ok := eng.byPath[p]; ok {
			continue
		}
		eng.discovered(src, p)
	}
}

func (eng *Engine) discovered(src *Source, p string) {
	name, ok := src.Match(p)
	if !ok {
		return
	}
	if e := eng.add(Database{Path: p, Client: src.Client.Sub(name), Name: name}, src); e.refused == "" {
		eng.log.Info("replicating", "db", p, "name", name, "replica", e.Client.String())
	}
}

// drainEvents takes in what the watcher has queued, without blocking, and
// reports whether any of it changed what there is to do.
func (eng *Engine) drainEvents() bool {
	changed := false
	if eng.overflow.Swap(false) {
		changed = eng.handleEvent(fswatch.Event{Op: fswatch.Overflow})
	}
	for {
		select {
		case ev := <-eng.events:
			if eng.handleEvent(ev) {
				changed = true
			}
		default:
			return changed
		}
	}
}

// handleEvent reports whether the event changed what there is to do.
// Writes to hot databases are left to polling: they come with every
// transaction, and the sync interval bounds the lag anyway.
func (eng *Engine) handleEvent(ev fswatch.Event) bool {
	now := time.Now()
	switch ev.Op {
	case fswatch.Overflow:
		eng.log.Warn("file events were lost; checking every database")
		for _, e := range eng.entries {
			if e.coldChanged() {
				eng.markDirty(e, now)
			}
		}
		eng.rescan()
		return true
	case fswatch.DirGone:
		return false
	}
	p := filepath.Join(ev.Dir, ev.Name)
	dbPath := strings.TrimSuffix(p, "-wal")
	if e, ok := eng.byPath[dbPath]; ok {
		if e.waiting {
			eng.fileMoved(e, now)
			return !e.waiting
		}
		switch {
		case p == dbPath && (ev.Op == fswatch.Create || ev.Op == fswatch.Remove):
			eng.fileMoved(e, now)
			return true
		case e.db != nil && !e.busy:
			return false // polled
		case ev.Op == fswatch.Touch && (e.busy || e.cold == nil || !e.cold.Changed(e.Path)):
			// SQLite closing a WAL it opened read-write, walsync's own
			// connections included: no data was written.
			return false
		}
		eng.markDirty(e, now)
		return true
	}
	if p != dbPath || ev.Op == fswatch.Remove {
		return false
	}
	for i := range eng.opts.Sources {
		src := &eng.opts.Sources[i]
		if !src.WatchesDir(ev.Dir) {
			continue
		}
		if ev.IsDir {
			if ev.Op == fswatch.Create && src.Recursive {
				n := len(eng.entries)
				eng.scanSource(src, p)
				return len(eng.entries) != n
			}
			continue
		}
		// The path is no database of ours, so opening it cannot drop locks.
		if _, ok := src.Match(p); ok && discover.IsSQLite(p) {
			eng.discovered(src, p)
			return true
		}
	}
	return false
}

// awaitFile takes a failed open of a database whose file does not exist
// or is still empty (a path given before the application created it, one
// being created, or a file deleted while released): one WARN, then no
// retry, so no ERROR per back-off step, until a file event or the sweep
// sees the file written (fileMoved). It reports whether that was the
// failure.
func (eng *Engine) awaitFile(e *entry, err error) bool {
	if e.db != nil || err == nil || !absent(e.Path) {
		return false
	}
	if !e.waiting {
		if _, serr := os.Stat(e.Path); serr == nil {
			eng.log.Warn("database file is empty, so it is not a SQLite database yet; waiting for it to be written", "db", e.Path)
		} else {
			eng.log.Warn("database file does not exist; waiting for it to be created", "db", e.Path)
		}
		e.waiting = true
	}
	e.dirty = false
	return true
}

// absent reports whether path does not exist or is empty: SQLite creates
// the file, then writes its header.
func absent(path string) bool {
	fi, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist) || err == nil && fi.Size() == 0
}

// fileMoved handles a database path created, deleted or renamed over.
func (eng *Engine) fileMoved(e *entry, now time.Time) {
	if e.waiting && absent(e.Path) {
		return // not written yet
	}
	fi, err := os.Stat(e.Path)
	if err != nil {
		if e.source != nil {
			eng.log.Info("database removed or renamed; releasing it (its replica stays)", "db", e.Path)
			e.removed = true
			return
		}
		eng.log.Warn("database file is gone; will keep trying", "db", e.Path)
		eng.markDirty(e, now)
		return
	}
	if e.removed {
		e.removed = false // back before it was forgotten
		eng.log.Info("database is back", "db", e.Path)
	}
	if e.waiting {
		e.waiting = false
		eng.log.Info("database file appeared; replicating it", "db", e.Path)
	}
	if ino := fi.Sys().(*syscall.Stat_t).Ino; ino != e.ino {
		if e.ino != 0 {
			eng.log.Warn("database file was replaced by another file (new inode); replicating it as a new state of the same database with a full snapshot", "db", e.Path)
		}
		e.ino = ino
	}
	eng.markDirty(e, now)
}

// sweep stats a share of the cold databases each poll, so that every one is
// looked at once per SweepInterval, and rescans sources when due.
func (eng *Engine) sweep(now time.Time) {
	if n := len(eng.entries); n > 0 {
		per := int(int64(n)*int64(eng.opts.PollInterval)/int64(eng.opts.SweepInterval)) + 1
		for i := 0; i < per && i < n; i++ {
			eng.sweepPos = (eng.sweepPos + 1) % n
			e := eng.entries[eng.sweepPos]
			switch {
			case e.coldChanged():
				eng.markDirty(e, now)
			case e.waiting && !e.busy && !e.dirty:
				eng.fileMoved(e, now) // in case its creation's event was missed
			}
		}
	}
	if len(eng.opts.Sources) > 0 && now.After(eng.rescanAt) {
		eng.rescan()
	}
}
