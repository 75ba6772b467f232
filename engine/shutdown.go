package engine

// Stopping: a last sync of everything open or changed, then the state file.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// finalSync ships what is left when stopping: every open database, and
// every released one that changed (looked at once more, in case an event
// is still in flight), with Workers at a time, then closes them.
func (eng *Engine) finalSync(ctx context.Context) error {
	eng.drainEvents()
	now := time.Now()
	var todo []*entry
	for _, e := range eng.entries {
		if e.removed {
			if e.db != nil {
				todo = append(todo, e)
			}
			continue
		}
		if e.refused != "" {
			if e.db != nil {
				todo = append(todo, e) // closed, not synced
			}
			continue // never a byte to another database's or process's replica
		}
		if e.db != nil {
			eng.poll(e, now)
		} else if e.coldChanged() {
			e.dirty = true
		}
		if e.db != nil || e.dirty && e.cold != nil {
			todo = append(todo, e)
		}
	}
	var mu sync.Mutex
	var errs []error
	next := make(chan *entry)
	wg := startWorkers(eng.opts.Workers, next, func(e *entry) {
		if err := eng.syncAndClose(ctx, e); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	})
	for _, e := range todo {
		next <- e
	}
	close(next)
	wg.Wait()
	if eng.opts.StateFile != "" {
		if err := eng.saveState(); err != nil {
			eng.log.Warn("could not save state; the next start reads every replica", "error", err)
		}
	}
	return errors.Join(errs...)
}

// syncAndClose ships e's last changes, then releases it with a state
// file, or closes it. Workers run it in parallel, the scheduler stopped.
func (eng *Engine) syncAndClose(ctx context.Context, e *entry) error {
	db := e.db
	if db == nil {
		var err error
		if db, err = eng.open(ctx, e, e.cold); err != nil {
			return fmt.Errorf("final sync of %s: %w", e.Path, err)
		}
	}
	var errs []error
	refused := e.refused != ""
	if (e.dirty || e.db == nil) && !e.removed && !refused {
		if e.resync != "" {
			db.Resync(e.resync) // as a sync job does: asked for while it was open
		}
		if _, err := db.Sync(ctx); err != nil {
			errs = append(errs, fmt.Errorf("final sync of %s: %w", e.Path, err))
		}
	}
	// With a state file, release it the way idle databases are released,
	// so the next start can resume from the state.
	e.db, e.cold = nil, nil
	if eng.opts.StateFile != "" && len(errs) == 0 && !e.removed && !refused {
		if st, err := db.Cool(ctx, true); err == nil {
			e.cold, e.dirty = st, false
			return nil
		}
	}
	if err := db.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close %s: %w", e.Path, err))
	}
	if len(errs) > 0 {
		e.fails.n++
	}
	return errors.Join(errs...)
}
