package restore_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
)

// counted counts the storage calls a restore plan makes.
type counted struct {
	storage.Client
	lists, ranges, opens atomic.Int64
}

func (c *counted) LTXFiles(ctx context.Context, level int, after ltx.TXID) (storage.FileIterator, error) {
	c.lists.Add(1)
	return c.Client.LTXFiles(ctx, level, after)
}

func (c *counted) OpenLTXRange(ctx context.Context, level int, a, b ltx.TXID, off, n int64) (io.ReadCloser, error) {
	c.ranges.Add(1)
	return c.Client.OpenLTXRange(ctx, level, a, b, off, n)
}

func (c *counted) OpenLTXFile(ctx context.Context, level int, a, b ltx.TXID) (io.ReadCloser, error) {
	c.opens.Add(1)
	return c.Client.OpenLTXFile(ctx, level, a, b)
}

// TestTimestampPlanScales: on a replica of 12,000 L0 files and 400 L1
// files, choosing the plan for a time reads a logarithmic number of
// headers, one listing per level, and no object in full.
func TestTimestampPlanScales(t *testing.T) {
	const n = 12000
	dir := t.TempDir()
	fc := file.New(dir)
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	put := func(level int, minTX, maxTX ltx.TXID) {
		ts := base.Add(time.Duration(maxTX) * time.Second)
		b := storagetest.LTX(t, minTX, maxTX, 1, 512, ts, false)
		p := fc.Path(level, minTX, maxTX)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, ts, ts)
	}
	for i := ltx.TXID(1); i <= n; i++ {
		put(0, i, i)
	}
	for i := ltx.TXID(1); i <= n; i += 30 {
		put(1, i, i+29)
	}
	c := &counted{Client: fc}
	ctx := context.Background()
	target := base.Add(7777*time.Second + 500*time.Millisecond)
	start := time.Now()
	plan, err := restore.Plan(ctx, c, restore.Target{Time: target})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan[len(plan)-1].MaxTXID; got != 7777 {
		t.Fatalf("plan for %s reaches TXID %d, want 7777", target, got)
	}
	if len(plan) > 7777/30+30 {
		t.Fatalf("plan has %d files: compacted L1 files were not used", len(plan))
	}
	lists, ranges, opens := c.lists.Load(), c.ranges.Load(), c.opens.Load()
	// S3 lists 1,000 keys a request: what these listings would cost there.
	s3Lists := (n+999)/1000 + (n/30+999)/1000 + 8
	t.Logf("plan for a time on %d files: %d files in the plan, %d level listings (%d S3 LIST requests), %d header reads, %d full reads, %s",
		n+n/30, len(plan), lists, s3Lists, ranges, opens, time.Since(start).Round(time.Millisecond))
	if lists != storage.MaxLevel+1 {
		t.Fatalf("%d listings, want one per level", lists)
	}
	if ranges > 2*14+4 { // log2(12,400) < 14
		t.Fatalf("%d header reads for a binary search over %d files", ranges, n+n/30)
	}
	if opens != 0 {
		t.Fatalf("planning read %d whole objects", opens)
	}
}
