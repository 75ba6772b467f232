package faults_test

import (
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/faultproxy"
)

// crashArgs make every phase come round within seconds of a start: syncs
// every 100 ms, L1 after 1 s, L2 after 2 s, a snapshot 1 s after the first
// upload, retention after each snapshot and every second, L0 kept 1 s after
// L1 covers it, snapshots kept 2 s.
var crashArgs = []string{"--sync-interval", "100ms", "--levels", "1s,2s", "--snapshot-interval", "1s",
	"--l0-retention", "1s", "--snapshot-retention", "2s", "--compact-interval", "1s"}

// crashPhase selects the requests during which walsync is killed.
type crashPhase struct {
	name  string
	match func(r *http.Request) bool
}

func keyLevel(r *http.Request) string {
	// Path-style: /bucket/backups/<db>/<level %04x>/<min>-<max>.ltx
	parts := strings.Split(r.URL.Path, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2]
}

var crashPhases = []crashPhase{
	{"sync (L0 upload)", func(r *http.Request) bool {
		return faultproxy.Operation(r) == "PutObject" && keyLevel(r) == "0000"
	}},
	{"snapshot (L9 upload)", func(r *http.Request) bool {
		return faultproxy.Operation(r) == "PutObject" && keyLevel(r) == "0009"
	}},
	{"compaction (L1/L2 download or upload)", func(r *http.Request) bool {
		op, l := faultproxy.Operation(r), keyLevel(r)
		return op == "PutObject" && (l == "0001" || l == "0002") ||
			op == "GetObject" && r.Header.Get("Range") == "" && (l == "0000" || l == "0001")
	}},
	{"retention (DeleteObjects)", func(r *http.Request) bool {
		return faultproxy.Operation(r) == "DeleteObjects"
	}},
}

// TestCrashDuringPhase kills walsync with SIGKILL while a request of one
// phase (sync, snapshot, compaction, retention) is in flight to S3, after a
// random 0-40 ms, many times, while the application writes; then a last run
// must catch up: the latest restore holds every committed transaction, and
// verify finds every object sound and the history continuous.
func TestCrashDuringPhase(t *testing.T) {
	for _, ph := range crashPhases {
		t.Run(strings.Fields(ph.name)[0], func(t *testing.T) {
			r := scenario(t, "crash: kill -9 during "+ph.name)
			tg := s3Target(t)
			proxy, err := faultproxy.New(tg.srv.Endpoint)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(proxy.Close)
			wt := tg.via(proxy.URL())

			var current atomic.Pointer[proc]
			var armed atomic.Bool
			var hits atomic.Int64
			proxy.SetFilter(func(req *http.Request) bool {
				if ph.match(req) && armed.CompareAndSwap(true, false) {
					hits.Add(1)
					p := current.Load()
					d := time.Duration(rand.IntN(40)) * time.Millisecond
					time.AfterFunc(d, func() { _ = syscall.Kill(p.pid(), syscall.SIGKILL) })
				}
				return false
			})

			a := newApp(t, t.TempDir(), "app", defaultApp)
			a.start()
			defer a.stop(t)
			n := runs(2, 25)
			for i := 0; i < n; i++ {
				r.run()
				p := startWatch(t, wt, nil, append([]string{a.path}, crashArgs...)...)
				current.Store(p)
				armed.Store(true)
				select {
				case <-p.done:
				case <-time.After(10 * time.Second):
					armed.Store(false)
					p.kill()
					t.Logf("run %d: the phase did not come within 10 s; killed at a random point", i+1)
				}
				if p.err == nil || !strings.Contains(p.err.Error(), "killed") {
					t.Fatalf("run %d: walsync exited by itself (%v):\n%s", i+1, p.err, tail(p.log.String(), 4000))
				}
			}
			if hits.Load() == 0 {
				t.Fatalf("no kill hit the %s phase in %d runs", ph.name, n)
			}
			r.note("%d of %d kills landed in the phase", hits.Load(), n)
			proxy.SetFilter(nil)
			time.Sleep(500 * time.Millisecond)
			a.stop(t)
			p := startWatch(t, wt, nil, append([]string{a.path}, crashArgs...)...)
			waitCaughtUp(t, r, tg, a, 2*time.Minute)
			p.stopClean(t)
			finalCheck(t, r, tg, a)
			t.Logf("%d runs, %d kills in the phase, %d transactions", n, hits.Load(), a.wl.Total())
		})
	}
}

// TestCrashRandomWithStagingLoss stops walsync at random moments, by kill -9
// or cleanly, with a file replica and its local state (--state-file, which
// a clean stop writes) and staging (TMPDIR) in one local directory, and
// between runs, as a power loss or a cleaner might, removes that directory,
// truncates the state file, fills it with garbage, or leaves truncated
// spool leftovers. Each restart must resume and the final replica be
// complete.
func TestCrashRandomWithStagingLoss(t *testing.T) {
	r := scenario(t, "crash: kill -9 or stop at random + local state/staging dir removed or truncated")
	tg := fileTarget(t)
	local := filepath.Join(t.TempDir(), "local")
	state := filepath.Join(local, "walsync.state")
	a := newApp(t, t.TempDir(), "app", defaultApp)
	a.start()
	defer a.stop(t)
	n := runs(6, 30)
	args := append([]string{a.path, "--state-file", state}, crashArgs...)
	var mutations []string
	for i := 0; i < n; i++ {
		r.run()
		p := startWatch(t, tg, []string{"TMPDIR=" + local}, args...)
		time.Sleep(time.Duration(300+rand.IntN(1700)) * time.Millisecond)
		if i%2 == 0 {
			p.kill()
		} else {
			p.stop(t) // writes the state file
		}
		switch i % 6 {
		case 0, 3: // removed: the directory does not exist at the restart
			os.RemoveAll(local)
			mutations = append(mutations, "removed")
		case 1: // the state file truncated
			if b, err := os.ReadFile(state); err == nil {
				os.WriteFile(state, b[:len(b)/2], 0o600)
				mutations = append(mutations, "state truncated")
			}
		case 2: // leftovers of a crash, cut short
			os.MkdirAll(local, 0o755)
			os.WriteFile(filepath.Join(local, "walsync-123.tmp"), nil, 0o644)
			os.WriteFile(filepath.Join(local, "walsync-456.tmp"), []byte("LTX\x01 cut short"), 0o644)
			mutations = append(mutations, "spool leftovers")
		case 5: // the state file replaced by garbage
			if _, err := os.Stat(state); err == nil {
				os.WriteFile(state, []byte("\x00\xffgarbage{\"version\":1,"), 0o600)
				mutations = append(mutations, "state garbage")
			}
		}
	}
	r.note("between runs: %s", strings.Join(mutations, ", "))
	a.stop(t)
	os.RemoveAll(local)
	p := startWatch(t, tg, []string{"TMPDIR=" + local}, args...)
	waitCaughtUp(t, r, tg, a, time.Minute)
	p.stopClean(t)
	finalCheck(t, r, tg, a)
}

// TestStaleStateFile: the state file is deleted when a run reads it, but a
// power loss can undo an unlink that was never made durable (or a rolled
// back disk snapshot can bring the file back). Run 1 stops cleanly and
// writes the state file; run 2 reads (deletes) it, replicates more and is
// killed; the state file of run 1 comes back. Run 3 must not trust it
// blindly: the replica must end complete and consistent, with no TXID
// written twice with different contents.
func TestStaleStateFile(t *testing.T) {
	r := scenario(t, "crash: power loss brings back a stale state file")
	for i := 0; i < runs(1, 5); i++ {
		r.run()
		staleState(t, r)
		if t.Failed() {
			return
		}
	}
}

func staleState(t *testing.T, r *row) {
	tg := fileTarget(t)
	state := filepath.Join(t.TempDir(), "walsync.state")
	a := newApp(t, t.TempDir(), "app", defaultApp)
	args := []string{a.path, "--state-file", state, "--sync-interval", "100ms", "--levels", "1s", "--idle-timeout", "1s"}
	a.runFor(t, time.Second)
	p := startWatch(t, tg, nil, args...)
	waitCaughtUp(t, r, tg, a, time.Minute)
	time.Sleep(2 * time.Second) // idle: released, its state kept
	p.stopClean(t)
	saved, err := os.ReadFile(state)
	if err != nil {
		t.Fatalf("no state file after a clean stop: %v", err)
	}
	// Run 2: more writes (checkpoints restart the WAL), then a crash.
	a.start()
	p = startWatch(t, tg, nil, args...)
	p.waitLog(t, `resumed from the state file`, time.Minute)
	time.Sleep(2 * time.Second)
	a.stop(t)
	waitCaughtUp(t, r, tg, a, time.Minute)
	p.kill()
	before := restoreLatestTXID(t, tg, a.name)
	// The unlink is undone.
	if err := os.WriteFile(state, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	a.start()
	p = startWatch(t, tg, nil, args...)
	time.Sleep(2 * time.Second)
	a.stop(t)
	waitCaughtUp(t, r, tg, a, 20*time.Second)
	p.stopClean(t)
	if after := restoreLatestTXID(t, tg, a.name); after < before {
		t.Errorf("the replica went back from TXID %d to %d", before, after)
	}
	finalCheck(t, r, tg, a)
}
