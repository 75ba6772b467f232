package engine_test

// Storage clients that fail or wait on cue.

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
)

// snapListFails fails every listing of the snapshot level once armed:
// retention lists snapshots first, syncs never do.
type snapListFails struct {
	storage.Client
	armed *atomic.Bool
	fails *atomic.Int64
}

func (c snapListFails) Sub(name string) storage.Client {
	return snapListFails{Client: c.Client.Sub(name), armed: c.armed, fails: c.fails}
}

func (c snapListFails) LTXFiles(ctx context.Context, level int, after ltx.TXID) (storage.FileIterator, error) {
	if level == storage.SnapshotLevel && c.armed.Load() {
		c.fails.Add(1)
		return nil, errors.New("injected: cannot list snapshots")
	}
	return c.Client.LTXFiles(ctx, level, after)
}

// gated holds the first listing made once armed until release is closed.
type gated struct {
	storage.Client
	armed   *atomic.Bool
	waiting chan struct{} // closed when that listing waits
	release chan struct{}
}

func (c gated) Sub(name string) storage.Client {
	return gated{Client: c.Client.Sub(name), armed: c.armed, waiting: c.waiting, release: c.release}
}

func (c gated) LTXFiles(ctx context.Context, level int, after ltx.TXID) (storage.FileIterator, error) {
	if c.armed.CompareAndSwap(true, false) {
		close(c.waiting)
		<-c.release
	}
	return c.Client.LTXFiles(ctx, level, after)
}
