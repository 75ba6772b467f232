package faults_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/faultproxy"
)

// watchArgs are the "walsync watch" options of the storage and crash
// scenarios: quick syncs, and compaction and snapshots within seconds so
// that faults also hit their uploads, downloads and deletes.
var watchArgs = []string{"--sync-interval", "200ms", "--levels", "1s,3s", "--snapshot-interval", "4s", "--l0-retention", "2s"}

// outageLogged matches what walsync logs about a storage failure: the
// engine's error with its retry, or the S3 client's retry warning.
const outageLogged = `replication failed; will retry|WARN retrying S3 request|level=WARN msg="retrying S3 request"`

// storageFault is one kind of storage failure, injected for a while.
type storageFault struct {
	name string
	// viaSwitch puts the TCP switch, not the fault proxy, in front.
	viaSwitch bool
	// inject runs the fault until it returns; the application writes
	// meanwhile.
	inject func(t *testing.T, f *faultEnv)
	// logged is what the log must show during or after the fault.
	logged string
	// direct: the fault is made on the server itself, not by the proxy.
	direct bool
	// args replace watchArgs.
	args []string
	// catchUp bounds the wait for walsync to catch up (default 2 min).
	catchUp time.Duration
	// statusShows: the outage lasts long enough that the status endpoint
	// must report the failing database while it lasts.
	statusShows bool
}

type faultEnv struct {
	tg    *target // direct
	proxy *faultproxy.Proxy
	sw    *tcpSwitch
	p     *proc
	a     *app
	r     *row
}

// bursts arms fn every interval for d.
func bursts(d, interval time.Duration, fn func()) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		fn()
		time.Sleep(interval)
	}
}

func isOp(ops ...string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		op := faultproxy.Operation(r)
		for _, o := range ops {
			if op == o {
				return true
			}
		}
		return false
	}
}

func storageFaults() []storageFault {
	window := pick(4*time.Second, 20*time.Second)
	return []storageFault{
		{
			name: "HTTP 500 InternalError bursts",
			inject: func(t *testing.T, f *faultEnv) {
				// 8 in a row outlast the S3 client's 5 retries: the engine
				// sees failed syncs too.
				bursts(window, time.Second, func() { f.proxy.FailNext(8, 500, "InternalError") })
			},
			logged: outageLogged,
		},
		{
			name: "HTTP 503 SlowDown bursts",
			inject: func(t *testing.T, f *faultEnv) {
				bursts(window, 700*time.Millisecond, func() { f.proxy.FailNext(6, 503, "SlowDown") })
			},
			logged: outageLogged,
		},
		{
			name: "connection reset mid-upload",
			inject: func(t *testing.T, f *faultEnv) {
				f.proxy.SetFilter(isOp("PutObject", "UploadPart"))
				bursts(window, 500*time.Millisecond, func() { f.proxy.DropNextMidBody(3) })
			},
			logged: outageLogged,
		},
		{
			name: "connection reset mid-download",
			inject: func(t *testing.T, f *faultEnv) {
				// Compaction downloads L0 files; a restart reads headers;
				// a restore through the proxy downloads everything.
				f.proxy.SetFilter(isOp("GetObject"))
				bursts(window/2, 300*time.Millisecond, func() { f.proxy.DropNextResponseMidBody(2) })
				f.p.stopClean(t)
				f.p = startWatch(t, f.tg.via(f.proxy.URL()), nil, append([]string{f.a.path}, watchArgs...)...)
				bursts(window/2, 300*time.Millisecond, func() { f.proxy.DropNextResponseMidBody(2) })
				f.proxy.DropNextResponseMidBody(3)
				out := filepath.Join(t.TempDir(), "through-proxy.db")
				stdout, stderr, code := cli(t, f.tg.via(f.proxy.URL()), nil, "restore", f.a.name, "-o", out)
				if code != 0 {
					if _, err := os.Stat(out); err == nil {
						t.Errorf("a failed restore left its output file %s", out)
					}
					t.Fatalf("restore with downloads cut short: exit %d\n%s%s", code, stdout, stderr)
				}
				if _, err := f.a.wl.Verify(out); err != nil {
					t.Fatalf("restore with downloads cut short: %v", err)
				}
				f.r.restored()
			},
			logged: outageLogged,
		},
		{
			name: "slow responses and a stalled request",
			inject: func(t *testing.T, f *faultEnv) {
				f.proxy.Delay(1500 * time.Millisecond)
				time.Sleep(window)
				f.proxy.Delay(0)
				if isLong() {
					// One upload whose response does not come for longer
					// than the S3 client's 60 s response timeout.
					var armed atomic.Bool
					var stalled atomic.Pointer[string]
					var retriedAfter atomic.Int64
					var stalledAt time.Time
					armed.Store(true)
					f.proxy.SetFilter(func(r *http.Request) bool {
						if faultproxy.Operation(r) != "PutObject" {
							return false
						}
						if armed.CompareAndSwap(true, false) {
							key := r.URL.Path
							stalledAt = time.Now()
							stalled.Store(&key)
							return true
						}
						if k := stalled.Load(); k != nil && *k == r.URL.Path {
							retriedAfter.CompareAndSwap(0, int64(time.Since(stalledAt)))
						}
						return false
					})
					f.proxy.Delay(65 * time.Second)
					// The same object is sent again once the client gave
					// up waiting for the stalled response.
					waitFor(t, 3*time.Minute, "the stalled upload to be retried", func() bool { return retriedAfter.Load() > 0 })
					if d := time.Duration(retriedAfter.Load()); d < 55*time.Second {
						t.Fatalf("the stalled upload was sent again after %v, before the 60 s response timeout", d)
					}
					f.proxy.Delay(0)
					f.r.note("an upload stalled for 65 s timed out after the client's 60 s response timeout and was retried")
				}
			},
			// Slowness alone need not be an error; the stall in the long
			// version is checked above.
		},
		{
			name:      "server stopped and restarted",
			viaSwitch: true,
			inject: func(t *testing.T, f *faultEnv) {
				d := pick(10*time.Second, 30*time.Second)
				f.sw.down()
				time.Sleep(d)
				f.sw.up(t)
				f.r.note("storage unreachable (connections refused and reset) for %v", d)
			},
			logged:      `replication failed; will retry`,
			statusShows: true,
		},
		{
			name: "bucket deleted while running, then re-created",
			inject: func(t *testing.T, f *faultEnv) {
				// walsync keeps uploading while rb --force empties the
				// bucket, so the delete can find it not empty: try again.
				for attempt := 1; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					out, err := f.tg.srv.AWSCommand(ctx, f.tg.srv.Endpoint, "s3", "rb", "s3://"+f.tg.bucket, "--force").CombinedOutput()
					cancel()
					if err == nil {
						break
					}
					if attempt == 10 || !strings.Contains(string(out), "BucketNotEmpty") {
						t.Fatalf("delete bucket %s: %v\n%s", f.tg.bucket, err, out)
					}
				}
				f.p.waitLog(t, `NoSuchBucket`, time.Minute)
				time.Sleep(window / 2)
				f.p.mustBeAlive(t)
				f.tg.srv.AWS(t, "s3api", "create-bucket", "--bucket", f.tg.bucket)
			},
			logged: `bucket \\?"` + "[a-z0-9-]+" + `\\?" does not exist`,
			direct: true,
			// The default snapshot interval (24 h): a snapshot written
			// soon after the bucket comes back would hide whether walsync
			// itself notices that the replica lost its files.
			args:        []string{"--sync-interval", "200ms", "--levels", "1s,3s", "--l0-retention", "2s"},
			catchUp:     25 * time.Second,
			statusShows: true,
		},
		{
			name: "credentials rotated (session token expired, key refused), then valid again",
			inject: func(t *testing.T, f *faultEnv) {
				f.proxy.FailNext(1<<30, 400, "ExpiredToken")
				f.p.waitLog(t, `session token is expired or invalid`, time.Minute)
				time.Sleep(window / 2)
				f.proxy.FailNext(1<<30, 403, "InvalidAccessKeyId")
				f.p.waitLog(t, `check the access key ID and secret`, time.Minute)
				time.Sleep(window / 2)
				f.proxy.FailNext(0, 0, "")
			},
			logged:      `access to bucket`,
			statusShows: true,
		},
	}
}

// TestStorageFaults runs each storage fault against a running walsync
// that replicates an application's writes to the real S3 server through
// the fault proxy (or the TCP switch). walsync must keep running, report
// the outage in its log, catch up once the fault ends (a restore of the
// latest state, taken while it still runs, holds every committed
// transaction), stop cleanly, and leave nothing in the bucket but
// well-formed LTX objects that verify.
func TestStorageFaults(t *testing.T) {
	for _, f := range storageFaults() {
		t.Run(strings.ReplaceAll(f.name, " ", "_"), func(t *testing.T) {
			r := scenario(t, "storage: "+f.name)
			for i := 0; i < runs(1, 3); i++ {
				r.run()
				runStorageFault(t, r, f)
				if t.Failed() {
					return
				}
			}
		})
	}
}

func runStorageFault(t *testing.T, r *row, sf storageFault) {
	tg := s3Target(t)
	f := &faultEnv{tg: tg, r: r}
	var wt *target
	if sf.viaSwitch {
		f.sw = newSwitch(t, strings.TrimPrefix(tg.srv.Endpoint, "http://"))
		wt = tg.via(f.sw.URL())
	} else {
		proxy, err := faultproxy.New(tg.srv.Endpoint)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(proxy.Close)
		f.proxy = proxy
		wt = tg.via(proxy.URL())
	}
	f.a = newApp(t, t.TempDir(), "app", defaultApp)
	f.a.start()
	defer f.a.stop(t)
	args := watchArgs
	if sf.args != nil {
		args = sf.args
	}
	port := freePort(t)
	f.p = startWatch(t, wt, nil, append([]string{f.a.path, "--addr", ":" + port}, args...)...)
	// Healthy first: the first snapshot is in the bucket.
	f.p.waitLog(t, `writing the first full image \(L0\)`, time.Minute)
	waitFor(t, time.Minute, "the first upload", func() bool {
		_, _, code := cli(t, tg, nil, "restore", f.a.name, "--dry-run")
		return code == 0
	})

	before := f.a.wl.Total()
	sampler := sampleStatus(port)
	sf.inject(t, f)
	seen := sampler.stop()
	if t.Failed() {
		return
	}
	if sf.statusShows && seen.failing == 0 {
		t.Errorf("the status endpoint never reported the failing database during the outage (%d samples)", seen.samples)
	}
	if seen.failing > 0 {
		r.note("/status showed failing=%d during the fault (%d samples)", seen.failing, seen.samples)
	}
	injected := 0
	if f.proxy != nil {
		injected = f.proxy.Injected()
		f.proxy.Reset()
	}
	during := f.a.wl.Total() - before
	f.p.mustBeAlive(t)
	if during == 0 {
		t.Fatalf("the application committed nothing during the fault: walsync must not block it")
	}
	if f.proxy != nil && injected == 0 && sf.logged != "" && !sf.direct {
		t.Fatalf("the proxy injected no fault")
	}
	if sf.logged != "" {
		if !regexp.MustCompile(sf.logged).MatchString(f.p.log.String()) {
			t.Fatalf("walsync's log does not report the outage (want %q):\n%s", sf.logged, tail(f.p.log.String(), 4000))
		}
	}
	// Writes go on after the fault, then the application stops.
	time.Sleep(time.Second)
	f.a.stop(t)
	catchUp := sf.catchUp
	if catchUp == 0 {
		catchUp = 2 * time.Minute
	}
	waitCaughtUp(t, r, tg, f.a, catchUp)
	if strings.Contains(f.p.log.String(), "replication failed; will retry") &&
		!strings.Contains(f.p.log.String(), "replication recovered") {
		t.Errorf("walsync logged failures but never that replication recovered:\n%s", tail(f.p.log.String(), 4000))
	}
	f.p.stopClean(t)
	finalCheck(t, r, tg, f.a)
	log := f.p.log.String()
	t.Logf("%d transactions (%d during the fault), %d faults injected; the log has %d failed syncs and %d S3 retries",
		f.a.wl.Total(), during, injected, strings.Count(log, "replication failed; will retry"), strings.Count(log, "retrying S3 request"))
}

type statusSeen struct {
	samples, failing int
	err              string
}

type statusSampler struct {
	quit chan struct{}
	done chan statusSeen
}

// sampleStatus polls walsync's /status every 100 ms until stop, and keeps
// the most failing databases it saw and an error it reported.
func sampleStatus(port string) *statusSampler {
	s := &statusSampler{quit: make(chan struct{}), done: make(chan statusSeen, 1)}
	go func() {
		var seen statusSeen
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-s.quit:
				s.done <- seen
				return
			case <-time.After(100 * time.Millisecond):
			}
			resp, err := client.Get("http://127.0.0.1:" + port + "/status")
			if err != nil {
				continue
			}
			var st struct {
				Failing int `json:"failing"`
				DBs     []struct {
					Error string `json:"error"`
				} `json:"dbs"`
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err != nil {
				continue
			}
			seen.samples++
			if st.Failing > seen.failing {
				seen.failing = st.Failing
			}
			for _, d := range st.DBs {
				if d.Error != "" {
					seen.err = d.Error
				}
			}
		}
	}()
	return s
}

func (s *statusSampler) stop() statusSeen {
	close(s.quit)
	return <-s.done
}

// waitFor polls cond until it holds; it fails the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
