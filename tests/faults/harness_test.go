package faults_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/internal/workload"
)

// ---------------------------------------------------------------- binary

// ------------------------------------------------- captured output, secrets

// captured is everything walsync printed in this suite, searched for
// credentials at the end (scanAllForSecrets).
var captured struct {
	sync.Mutex
	outs    []*capture
	secrets map[string]string // secret -> what it is
}

type capture struct {
	name string
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *capture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func newCapture(name string) *capture {
	c := &capture{name: name}
	captured.Lock()
	captured.outs = append(captured.outs, c)
	captured.Unlock()
	return c
}

func capturedCount() int {
	captured.Lock()
	defer captured.Unlock()
	return len(captured.outs)
}

// addSecret registers a credential that must never be printed.
func addSecret(secret, what string) {
	if len(secret) < 8 {
		return
	}
	captured.Lock()
	defer captured.Unlock()
	if captured.secrets == nil {
		captured.secrets = map[string]string{}
	}
	captured.secrets[secret] = what
}

// findSecrets returns where any registered secret occurs in s.
func findSecrets(name, s string) []string {
	captured.Lock()
	secrets := make(map[string]string, len(captured.secrets))
	for k, v := range captured.secrets {
		secrets[k] = v
	}
	captured.Unlock()
	var leaks []string
	for secret, what := range secrets {
		if i := strings.Index(s, secret); i >= 0 {
			lo, hi := max(0, i-120), min(len(s), i+len(secret)+40)
			leaks = append(leaks, fmt.Sprintf("%s printed %s: …%s…", name, what, strings.ReplaceAll(s[lo:hi], secret, "<SECRET>")))
		}
	}
	return leaks
}

func scanAllForSecrets() []string {
	captured.Lock()
	outs := append([]*capture(nil), captured.outs...)
	captured.Unlock()
	var leaks []string
	for _, c := range outs {
		leaks = append(leaks, findSecrets(c.name, c.String())...)
	}
	return leaks
}

// --------------------------------------------------------------- targets

// target is a replica walsync writes to, and how to reach it.
type target struct {
	url  string
	args []string // --endpoint …
	env  []string // credentials
	// S3 only
	srv    *testenv.S3Server
	bucket string
	prefix string
	// file only
	dir string
}

func fileTarget(t *testing.T) *target {
	dir := filepath.Join(t.TempDir(), "replica")
	return &target{url: dir, dir: dir}
}

// s3Target is a new bucket on the shared S3 server, reached directly.
func s3Target(t *testing.T) *target {
	t.Helper()
	srv := testenv.S3(t)
	addSecret(srv.SecretKey, "the S3 secret access key")
	bucket := srv.NewBucket(t)
	return &target{
		url:    "s3://" + bucket + "/backups",
		args:   []string{"--endpoint", srv.Endpoint, "--force-path-style", "true"},
		env:    s3Env(srv.AccessKey, srv.SecretKey),
		srv:    srv,
		bucket: bucket,
		prefix: "backups",
	}
}

func s3Env(id, secret string) []string {
	return []string{"AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_REGION=" + testenv.Region}
}

// via returns the same replica reached through endpoint (a proxy).
func (tg *target) via(endpoint string) *target {
	c := *tg
	c.args = []string{"--endpoint", endpoint, "--force-path-style", "true"}
	return &c
}

// withEnv returns the same replica with other environment variables
// (credentials) for walsync.
func (tg *target) withEnv(env []string) *target {
	c := *tg
	c.env = env
	return &c
}

// baseEnv is the environment walsync runs with: ours without AWS settings
// or proxies, so that nothing from the machine leaks in.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "AWS_"), strings.HasPrefix(k, "LITESTREAM_"),
			strings.EqualFold(k, "HTTP_PROXY"), strings.EqualFold(k, "HTTPS_PROXY"),
			strings.EqualFold(k, "ALL_PROXY"), strings.EqualFold(k, "NO_PROXY"), k == "GOTRACEBACK":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
}

// --------------------------------------------------------------- commands

// cli runs a walsync command to completion and returns its stdout, stderr
// and exit code. Its output is kept for the secret scan.
func cli(t *testing.T, tg *target, extraEnv []string, args ...string) (string, string, int) {
	t.Helper()
	if tg != nil {
		args = append(append(args, "-b", tg.url), tg.args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.WalsyncBinary(t), args...)
	cmd.Env = baseEnv()
	if tg != nil {
		cmd.Env = append(cmd.Env, tg.env...)
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	name := fmt.Sprintf("%s: walsync %s", t.Name(), strings.Join(args, " "))
	outC, errC := newCapture(name+" (stdout)"), newCapture(name+" (stderr)")
	cmd.Stdout, cmd.Stderr = outC, errC
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("walsync %v: %v", args, err)
	}
	return outC.String(), errC.String(), code
}

// proc is a running "walsync watch".
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  *capture
	done chan struct{}
	err  error
}

// startWatch starts "walsync watch" with args (databases and options) on
// tg, with extraEnv added. It is killed when the test ends.
func startWatch(t *testing.T, tg *target, extraEnv []string, args ...string) *proc {
	t.Helper()
	return startWatchCmd(t, tg, extraEnv, nil, args...)
}

// startWatchCmd is startWatch under a wrapper command that execs walsync
// (e.g. prlimit … --), so that the process is walsync's.
func startWatchCmd(t *testing.T, tg *target, extraEnv []string, wrapper []string, args ...string) *proc {
	t.Helper()
	all := append([]string{"watch"}, args...)
	all = append(append(all, "-b", tg.url), tg.args...)
	return startProc(t, append(append([]string(nil), tg.env...), extraEnv...), wrapper, all...)
}

// startWatchRaw starts walsync with exactly args (no replica added).
func startWatchRaw(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startProc(t, env, nil, args...)
}

func startProc(t *testing.T, env []string, wrapper []string, all ...string) *proc {
	t.Helper()
	argv := append(append(append([]string(nil), wrapper...), testenv.WalsyncBinary(t)), all...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(baseEnv(), env...)
	p := &proc{t: t, cmd: cmd, log: newCapture(t.Name() + ": walsync " + strings.Join(all, " ")), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start walsync: %v", err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("walsync (pid %d) log:\n%s", cmd.Process.Pid, tail(p.log.String(), 6000))
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process.
func (p *proc) kill() {
	if p.alive() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// stop sends SIGTERM and waits (the engine's final sync is bounded by 30 s).
// It returns the process's exit error, nil for a clean exit.
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	if p.alive() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(90 * time.Second):
		p.kill()
		t.Fatalf("walsync watch did not exit within 90 s of SIGTERM")
	}
	return p.err
}

// stopClean stops walsync and fails the test unless it exits 0.
func (p *proc) stopClean(t *testing.T) {
	t.Helper()
	if err := p.stop(t); err != nil {
		t.Fatalf("walsync watch did not exit cleanly on SIGTERM: %v\n%s", err, tail(p.log.String(), 4000))
	}
}

// waitLog waits until the log matches re; it fails the test after d.
func (p *proc) waitLog(t *testing.T, re string, d time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	for {
		if m := rx.FindString(p.log.String()); m != "" {
			return m
		}
		if !p.alive() {
			t.Fatalf("walsync exited (%v) before logging %q:\n%s", p.err, re, tail(p.log.String(), 4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("walsync did not log %q within %v:\n%s", re, d, tail(p.log.String(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mustBeAlive fails the test if walsync exited.
func (p *proc) mustBeAlive(t *testing.T) {
	t.Helper()
	if !p.alive() {
		t.Fatalf("walsync exited (%v); it must keep running:\n%s", p.err, tail(p.log.String(), 4000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ---------------------------------------------------------------- workload

// app is the application: a workload writing a database.
type app struct {
	path   string
	name   string // the replica name walsync derives: <parent>/<base>
	wl     *workload.Workload
	cancel context.CancelFunc
	done   chan error
}

type appOpts struct {
	writers  int
	external bool
	maxBlob  int
	pace     time.Duration
	vacuum   bool
	ckpt     bool
}

var defaultApp = appOpts{writers: 2, external: true, maxBlob: 64 << 10, pace: 4 * time.Millisecond, ckpt: true, vacuum: true}

// newApp creates dir/<sub>/app.db (replica name "<sub>/app").
func newApp(t *testing.T, dir, sub string, o appOpts) *app {
	t.Helper()
	return newAppFile(t, dir, sub, "app.db", o)
}

// newAppFile creates dir/<sub>/<file> (replica name "<sub>/<file without
// extension>").
func newAppFile(t *testing.T, dir, sub, file string, o appOpts) *app {
	t.Helper()
	path := filepath.Join(dir, sub, file)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := workload.Create(path, 4096); err != nil {
		t.Fatal(err)
	}
	wl := workload.New(workload.Options{
		Path: path, Writers: o.writers, External: o.external, MaxBlob: o.maxBlob,
		Checkpoints: o.ckpt, Vacuum: o.vacuum, Seed: rand.Uint64(), Pace: o.pace,
	})
	return &app{path: path, name: sub + "/" + strings.TrimSuffix(file, filepath.Ext(file)), wl: wl}
}

// start runs the writers until stop.
func (a *app) start() {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan error, 1)
	go func() { a.done <- a.wl.Run(ctx) }()
}

// stop ends the writers and fails the test if they met an error.
func (a *app) stop(t *testing.T) {
	t.Helper()
	if a.cancel == nil {
		return
	}
	a.cancel()
	err := <-a.done
	a.cancel = nil
	if err != nil {
		t.Fatalf("the application's writers failed: %v", err)
	}
}

// runFor writes for d, then stops.
func (a *app) runFor(t *testing.T, d time.Duration) {
	t.Helper()
	a.start()
	time.Sleep(d)
	a.stop(t)
}

// ------------------------------------------------------------- restores

// restoreCheck restores name's latest state from tg into a new file and
// checks it against the workload's record. It returns the transactions
// missing from the restore (0: complete) or an error when the restore fails
// or the restored database is wrong.
func restoreCheck(t *testing.T, tg *target, a *app) (lost int64, path string, err error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored.db")
	stdout, stderr, code := cli(t, tg, nil, "restore", a.name, "-o", out)
	if code != 0 {
		return 0, "", fmt.Errorf("walsync restore %s: exit %d: %s%s", a.name, code, stdout, stderr)
	}
	got, err := a.wl.Verify(out)
	if err != nil {
		return 0, out, fmt.Errorf("restored %s: %w", a.name, err)
	}
	for w, n := range a.wl.Committed() {
		if got[w] < n {
			lost += n - got[w]
		}
	}
	return lost, out, nil
}

// waitCaughtUp polls restores of the latest state until one holds every
// committed transaction (walsync caught up while still running). It records
// the written, lost and verified counts in r and fails the test after d.
func waitCaughtUp(t *testing.T, r *row, tg *target, a *app, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var lost int64
	var err error
	for {
		lost, _, err = restoreCheck(t, tg, a)
		if err == nil && lost == 0 {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	r.wrote(a.wl.Total())
	if err != nil {
		// Nothing is restorable: every committed transaction is lost.
		r.lost(a.wl.Total())
		t.Fatalf("walsync did not catch up within %v: %v", d, err)
	}
	r.restored()
	r.lost(lost)
	if lost > 0 {
		t.Fatalf("walsync did not catch up within %v: %d of %d committed transactions are missing from the latest restore", d, lost, a.wl.Total())
	}
}

// finalCheck is run after walsync stopped: the latest restore holds every
// committed transaction, "walsync verify --restore" finds no problem, and
// for S3 the bucket holds nothing but well-formed LTX objects.
func finalCheck(t *testing.T, r *row, tg *target, a *app) {
	t.Helper()
	lost, _, err := restoreCheck(t, tg, a)
	if err != nil {
		t.Fatal(err)
	}
	r.restored()
	if lost > 0 {
		r.lost(lost)
		t.Fatalf("%d of %d committed transactions are missing from the final restore", lost, a.wl.Total())
	}
	verifyReplica(t, tg, a.name)
	r.restored() // verify --restore restores and integrity-checks too
	if _, tmps := checkObjects(t, tg); tmps > 0 {
		r.note("%d temp files of interrupted writes left in the replica directory (never listed or restored)", tmps)
	}
}

// verifyJSON is the part of "walsync verify --json" the suite reads.
type verifyJSON struct {
	OK        bool `json:"ok"`
	Databases []struct {
		Name     string `json:"name"`
		OK       bool   `json:"ok"`
		Error    string `json:"error"`
		Problems []struct {
			Object  string `json:"object"`
			Kind    string `json:"kind"`
			Message string `json:"message"`
		} `json:"problems"`
	} `json:"databases"`
}

// verifyReplica runs "walsync verify NAME --restore --json" and fails the
// test on any problem.
func verifyReplica(t *testing.T, tg *target, name string) {
	t.Helper()
	out, stderr, code := cli(t, tg, nil, "verify", name, "--restore", "--json")
	var v verifyJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 || !v.OK {
		t.Fatalf("walsync verify %s --restore: exit %d (%v)\n%s%s", name, code, err, out, stderr)
	}
}

var ltxName = regexp.MustCompile(`^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$`)

// checkObjects lists the whole bucket with the aws CLI (an independent
// client) and fails on anything but LTX objects, on overlapping TXID ranges
// within a level below 9, and on unfinished multipart uploads. For a file
// replica it fails on stray files other than LTX files and SHA-256 sidecars;
// temp files of interrupted writes are counted and returned.
func checkObjects(t *testing.T, tg *target) (objects, tmps int) {
	t.Helper()
	type rng struct{ min, max uint64 }
	byLevel := map[string]map[int][]rng{} // db -> level -> ranges
	add := func(key, db string, level int, name string) {
		m := ltxName.FindStringSubmatch(name)
		if m == nil || level < 0 || level > 9 {
			t.Errorf("%s is not an LTX file of Litestream's layout", key)
			return
		}
		var a, b uint64
		fmt.Sscanf(m[1], "%x", &a)
		fmt.Sscanf(m[2], "%x", &b)
		if byLevel[db] == nil {
			byLevel[db] = map[int][]rng{}
		}
		byLevel[db][level] = append(byLevel[db][level], rng{a, b})
		objects++
	}
	if tg.srv != nil {
		out := tg.srv.AWS(t, "s3api", "list-objects-v2", "--bucket", tg.bucket, "--output", "json")
		var l struct{ Contents []struct{ Key string } }
		if len(bytes.TrimSpace(out)) > 0 {
			if err := json.Unmarshal(out, &l); err != nil {
				t.Fatalf("list-objects-v2: %v\n%s", err, out)
			}
		}
		for _, o := range l.Contents {
			rel, ok := strings.CutPrefix(o.Key, tg.prefix+"/")
			parts := strings.Split(rel, "/")
			if !ok || len(parts) < 3 {
				t.Errorf("stray object %q in the bucket", o.Key)
				continue
			}
			var level int
			if _, err := fmt.Sscanf(parts[len(parts)-2], "%04x", &level); err != nil || len(parts[len(parts)-2]) != 4 {
				t.Errorf("object %q is not in a level directory", o.Key)
				continue
			}
			add(o.Key, strings.Join(parts[:len(parts)-2], "/"), level, parts[len(parts)-1])
		}
		out = tg.srv.AWS(t, "s3api", "list-multipart-uploads", "--bucket", tg.bucket, "--output", "json")
		if bytes.Contains(out, []byte(`"UploadId"`)) {
			t.Errorf("unfinished multipart uploads are left in the bucket:\n%s", out)
		}
	} else {
		filepath.WalkDir(tg.dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(tg.dir, p)
			parts := strings.Split(filepath.ToSlash(rel), "/")
			if len(parts) < 4 || parts[len(parts)-3] != "ltx" {
				t.Errorf("stray file %s in the replica", p)
				return nil
			}
			name := parts[len(parts)-1]
			switch {
			case strings.HasSuffix(name, ".ltx.sha256"):
			case strings.HasSuffix(name, ".tmp"):
				tmps++
			default:
				level, err := strconv.Atoi(parts[len(parts)-2])
				if err != nil {
					t.Errorf("stray file %s in the replica", p)
					return nil
				}
				add(p, strings.Join(parts[:len(parts)-3], "/"), level, name)
			}
			return nil
		})
	}
	for db, levels := range byLevel {
		for level, rs := range levels {
			if level == 9 {
				continue // snapshots all start at TXID 1
			}
			slices.SortFunc(rs, func(a, b rng) int { return cmp.Compare(a.min, b.min) })
			for i := 1; i < len(rs); i++ {
				if rs[i].min <= rs[i-1].max {
					t.Errorf("%s L%d: TXID ranges %d-%d and %d-%d overlap (duplicate data a restore could pick)", db, level, rs[i-1].min, rs[i-1].max, rs[i].min, rs[i].max)
				}
			}
		}
	}
	return objects, tmps
}
