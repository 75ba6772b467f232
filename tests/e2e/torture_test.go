package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/internal/workload"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/s3"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// tortureDuration is bounded for CI; WALSYNC_TORTURE=5m runs longer.
func tortureDuration(t *testing.T, def time.Duration) time.Duration {
	if s := os.Getenv("WALSYNC_TORTURE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("WALSYNC_TORTURE=%q: %v", s, err)
		}
		return d
	}
	return def
}

func s3Client(t *testing.T, prefix string) storage.Client {
	t.Helper()
	srv := testenv.S3(t)
	c, err := s3.New(s3.Config{
		Bucket: srv.NewBucket(t), Prefix: prefix, Endpoint: srv.Endpoint, Region: srv.Region,
		Credentials: &s3.Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type sample struct {
	txid ltx.TXID
	at   time.Time // a time after the sync finished
}

// TestTorture runs writers in this process and in a sqlite3 process with
// random transactions, rollbacks, VACUUM and checkpoints of every mode,
// while walsync syncs; then restores the latest state and a sample of
// earlier TXIDs and times and checks each row by row against the record.
func TestTorture(t *testing.T) {
	for _, backend := range []string{"file", "s3"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			var client storage.Client
			if backend == "file" {
				client = file.New(filepath.Join(dir, "replica"))
			} else {
				client = s3Client(t, "torture/app")
			}
			runTorture(t, dir, client, tortureDuration(t, 12*time.Second), 4096)
		})
	}
}

// TestPageSizes runs a short torture for every page size SQLite supports.
func TestPageSizes(t *testing.T) {
	for _, ps := range []int{512, 1024, 2048, 8192, 16384, 32768, 65536} {
		t.Run(fmt.Sprint(ps), func(t *testing.T) {
			dir := t.TempDir()
			runTorture(t, dir, file.New(filepath.Join(dir, "replica")), 2*time.Second, ps)
		})
	}
}

func runTorture(t *testing.T, dir string, client storage.Client, d time.Duration, pageSize int) {
	ctx := context.Background()
	path := filepath.Join(dir, "app.db")
	if err := workload.Create(path, pageSize); err != nil {
		t.Fatal(err)
	}
	wl := workload.New(workload.Options{
		Path: path, Writers: 2, External: true, Checkpoints: true, Vacuum: true,
		Seed: rand.Uint64(), Pace: 3 * time.Millisecond, MaxBlob: 1 << 20,
	})
	var sealMu sync.Mutex
	var seals []time.Duration
	onSeal := func(d time.Duration) { sealMu.Lock(); seals = append(seals, d); sealMu.Unlock() }
	defer func() {
		// The time an application's writer may wait for walsync: measured,
		// not asserted (machines are noisy).
		sealMu.Lock()
		defer sealMu.Unlock()
		if len(seals) == 0 {
			return
		}
		slices.Sort(seals)
		q := func(f float64) time.Duration { return seals[min(len(seals)-1, int(f*float64(len(seals))))] }
		t.Logf("seal (write lock held) over %d seals: p50 %s, p99 %s, max %s", len(seals), q(0.50), q(0.99), seals[len(seals)-1])
	}()
	db, err := capture.Open(ctx, capture.Options{Path: path, Client: client, CheckpointPages: 200, BusyTimeout: 10 * time.Second, OnSeal: onSeal})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)

	wctx, stop := context.WithTimeout(ctx, d)
	defer stop()
	werr := make(chan error, 1)
	go func() { werr <- wl.Run(wctx) }()

	var samples []sample
	snapshots := 0
	r := rand.New(rand.NewPCG(1, 2))
	for wctx.Err() == nil {
		time.Sleep(time.Duration(20+r.IntN(150)) * time.Millisecond)
		var st capture.Stats
		if r.IntN(40) == 0 {
			st, err = db.Snapshot(ctx)
			snapshots++
		} else {
			st, err = db.Sync(ctx)
		}
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		if st.Snapshot && st.Reason != "" && st.TXID > 1 {
			t.Logf("resync snapshot at TXID %s: %s", st.TXID, st.Reason)
		}
		samples = append(samples, sample{txid: st.TXID, at: time.Now()})
		time.Sleep(2 * time.Millisecond) // timestamps are in milliseconds
	}
	if err := <-werr; err != nil {
		t.Fatalf("workload: %v", err)
	}
	st, err := db.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	final := st.TXID
	t.Logf("%d transactions committed by %d writers, %d syncs, %d snapshots, final TXID %s",
		wl.Total(), len(wl.Committed()), len(samples), snapshots, final)

	// The latest state holds every committed transaction.
	out := filepath.Join(dir, "latest.db")
	res, err := restore.Restore(ctx, restore.Options{Client: client, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if res.TXID != final {
		t.Fatalf("latest restore reached TXID %s, want %s", res.TXID, final)
	}
	got, err := wl.Verify(out)
	if err != nil {
		t.Fatalf("latest restore: %v", err)
	}
	for w, n := range wl.Committed() {
		if got[w] != n {
			t.Fatalf("writer %d committed %d transactions, the restore holds %d", w, n, got[w])
		}
	}

	// A sample of earlier points, by TXID and by time.
	for i := 0; i < 6 && len(samples) > 0; i++ {
		s := samples[r.IntN(len(samples))]
		out := filepath.Join(dir, fmt.Sprintf("txid-%d.db", i))
		res, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Target: restore.Target{TXID: s.txid}})
		if err != nil {
			t.Fatalf("restore TXID %s: %v", s.txid, err)
		}
		if res.TXID != s.txid {
			t.Fatalf("restore to TXID %s gave %s", s.txid, res.TXID)
		}
		if _, err := wl.Verify(out); err != nil {
			t.Fatalf("restore TXID %s: %v", s.txid, err)
		}
		out = filepath.Join(dir, fmt.Sprintf("time-%d.db", i))
		res, err = restore.Restore(ctx, restore.Options{Client: client, Output: out, Target: restore.Target{Time: s.at}})
		if err != nil {
			t.Fatalf("restore time %s: %v", s.at, err)
		}
		if res.TXID < s.txid || res.Timestamp.After(s.at) {
			t.Fatalf("restore at %s gave TXID %s of %s; TXID %s was synced before that time", s.at, res.TXID, res.Timestamp, s.txid)
		}
		if _, err := wl.Verify(out); err != nil {
			t.Fatalf("restore time %s: %v", s.at, err)
		}
	}
	checkContiguous(t, client)
}

// checkContiguous asserts that level 0 has no duplicate or overlapping TXIDs
// and no gaps.
func checkContiguous(t *testing.T, c storage.Client) {
	t.Helper()
	it, err := c.LTXFiles(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	files, err := storage.Collect(it)
	if err != nil {
		t.Fatal(err)
	}
	var prev ltx.TXID
	for _, fi := range files {
		if fi.MinTXID != prev+1 {
			t.Fatalf("level 0 goes from TXID %s to %s: gap, duplicate or overlap", prev, fi)
		}
		prev = fi.MaxTXID
	}
	if len(files) == 0 {
		t.Fatal(errors.New("level 0 is empty"))
	}
}
