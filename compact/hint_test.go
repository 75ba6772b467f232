package compact_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
)

// listCounter records the (level, after) of every listing.
type listCounter struct {
	storage.Client
	mu    sync.Mutex
	calls [][2]uint64
}

func (l *listCounter) LTXFiles(ctx context.Context, level int, after ltx.TXID) (storage.FileIterator, error) {
	l.mu.Lock()
	l.calls = append(l.calls, [2]uint64{uint64(level), uint64(after)})
	l.mu.Unlock()
	return l.Client.LTXFiles(ctx, level, after)
}

// TestCompactLastOutputHint: with the previous output as a hint the
// destination level is listed from it on, not in full; a stale hint falls
// back to a full listing and still finds the right place.
func TestCompactLastOutputHint(t *testing.T) {
	ctx := context.Background()
	c := &listCounter{Client: file.New(t.TempDir())}
	ts := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	put := func(txid ltx.TXID) {
		b := storagetest.LTX(t, txid, txid, 2, 512, ts.Add(time.Duration(txid)*time.Second), false)
		if _, err := c.WriteLTXFile(ctx, 0, txid, txid, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	for i := ltx.TXID(1); i <= 6; i++ {
		put(i)
	}
	first, err := compact.Compact(ctx, c, 1, compact.Options{})
	if err != nil || first == nil || first.MaxTXID != 6 {
		t.Fatalf("first compaction: %v %v", first, err)
	}
	for i := ltx.TXID(7); i <= 9; i++ {
		put(i)
	}
	second, err := compact.Compact(ctx, c, 1, compact.Options{LastOutput: first})
	if err != nil || second == nil || second.MinTXID != 7 || second.MaxTXID != 9 {
		t.Fatalf("hinted compaction: %v %v", second, err)
	}
	put(10)
	put(11)
	c.calls = nil
	third, err := compact.Compact(ctx, c, 1, compact.Options{LastOutput: second})
	if err != nil || third == nil || third.MinTXID != 10 || third.MaxTXID != 11 {
		t.Fatalf("hinted compaction: %v %v", third, err)
	}
	for _, call := range c.calls {
		if call[0] == 1 && call[1] == 0 {
			t.Fatalf("the destination was listed in full despite the hint: %v", c.calls)
		}
	}
	put(12)
	// A hint past the level's end means files walsync wrote are gone (the
	// replica was emptied or re-created): that is reported, never
	// compacted over silently.
	stale := &storage.FileInfo{Level: 1, MinTXID: 50, MaxTXID: 60}
	if fi, err := compact.Compact(ctx, c, 1, compact.Options{LastOutput: stale}); !errors.Is(err, compact.ErrReplicaLost) {
		t.Fatalf("compaction with a hint past the level's end: %v %v, want ErrReplicaLost", fi, err)
	}
	fourth, err := compact.Compact(ctx, c, 1, compact.Options{})
	if err != nil || fourth == nil || fourth.MinTXID != 12 || fourth.MaxTXID != 12 {
		t.Fatalf("compaction without the hint: %v %v", fourth, err)
	}
}
