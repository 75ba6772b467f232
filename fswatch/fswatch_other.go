//go:build !linux

package fswatch

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// New fails where there is no inotify: the engine then finds changes by
// its stat sweep alone (--sweep-interval). kqueue would need an open fd per
// watched directory, which the fd budget of many databases cannot spare.
func New() (*Watcher, error) {
	return nil, fmt.Errorf("file events on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// Add fails: New never returns a Watcher here.
func (w *Watcher) Add(dir string) error {
	return fmt.Errorf("watch %s: %w", dir, errors.ErrUnsupported)
}

// Remove does nothing: nothing is watched.
func (w *Watcher) Remove(dir string) {}

// Run returns at once: there are no events to read.
func (w *Watcher) Run(ctx context.Context, fn func(Event)) error {
	return fmt.Errorf("file events on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
