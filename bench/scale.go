package main

// Scale mode (--scale-mode; run.sh --scale): the cases of issue 4. Each
// case runs both replicators at the same time, each on its own copy of a
// tenant tree <root>/tN/app.db (created in WAL mode from one template file
// before the tools start) and its own replica: for S3 its own versitygw
// behind its own counting proxy, for "file" its own directory. Litestream
// runs in directory mode in one process (dir, pattern, recursive, watch);
// walsync gets --dir when it has the flag, else every path explicitly.
//
// A case is "NxP%" (N databases, P% of them writing 1 commit/s) or "idleN"
// (N databases, nothing writes after start-up; requests are counted in a
// window after the tools settled). Every case:
//
//  1. starts both tools and, right after, writes one row ("watch sentinel")
//     into a sample of databases spread over the tree; the time until every
//     sentinel is in the replica is "all watched";
//  2. writes for --duration (lag probed on a sample of writers) or, for an
//     idle case, waits --settle and counts requests for --idle;
//  3. stops the tools, restores a sample of databases (all of them when
//     N <= 10) with each tool's own restore command, runs PRAGMA
//     integrity_check and compares every row with the source database and
//     the writer's record. A tool whose restores fail gets no numbers.

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walsync/walsync/internal/s3server"
)

type scaleCase struct {
	label   string
	n       int
	writers int
	pct     float64
	idle    bool
}

func parseScaleCases(s string) ([]scaleCase, error) {
	var cs []scaleCase
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(p, "idle"); ok {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("invalid case %q: want idleN, e.g. idle1000", p)
			}
			cs = append(cs, scaleCase{label: p, n: n, idle: true})
			continue
		}
		a, b, ok := strings.Cut(p, "x")
		n, err1 := strconv.Atoi(a)
		pct, err2 := strconv.ParseFloat(strings.TrimSuffix(b, "%"), 64)
		if !ok || err1 != nil || err2 != nil || n < 1 || pct <= 0 || pct > 100 {
			return nil, fmt.Errorf("invalid case %q: want NxP%%, e.g. 1000x10%%, or idleN", p)
		}
		w := max(int(math.Ceil(float64(n)*pct/100-1e-9)), 1)
		cs = append(cs, scaleCase{label: p, n: n, writers: w, pct: pct})
	}
	if len(cs) == 0 {
		return nil, errors.New("no cases")
	}
	return cs, nil
}

func (sc scaleCase) String() string {
	if sc.idle {
		return fmt.Sprintf("%d DBs idle", sc.n)
	}
	return fmt.Sprintf("%d DBs, %g%% writing (%d writers, 1 commit/s each, ~1 KiB)", sc.n, sc.pct, sc.writers)
}

type scaleOpts struct {
	cases        []scaleCase
	replicas     []string
	idle         time.Duration
	settle       time.Duration
	startTimeout time.Duration
	statusEvery  time.Duration
	watchSample  int
	restoreExtra int
	walsyncDir   string // auto, yes, no
}

// walsyncFeatures are the watch flags of the walsync binary under test.
type walsyncFeatures struct {
	dir, pattern, recursive, addr bool
}

func probeWalsync(bin string) walsyncFeatures {
	out, _ := exec.Command(bin, "watch", "-h").CombinedOutput()
	s := string(out)
	has := func(f string) bool { return strings.Contains(s, "\n  -"+f+" ") || strings.Contains(s, "\n  -"+f+"\n") }
	return walsyncFeatures{dir: has("dir"), pattern: has("pattern"), recursive: has("recursive"), addr: has("addr")}
}

// --- replica views ----------------------------------------------------------

// replicaView reads a tool's replica (not through the counting proxy).
type replicaView interface {
	// l0 returns the L0 keys of a database after the key after, in order.
	l0(ctx context.Context, name, after string) ([]string, error)
	// all returns every LTX key of a database.
	all(ctx context.Context, name string) ([]string, error)
	get(ctx context.Context, key string) ([]byte, error)
	// names returns the databases with at least one LTX file.
	names(ctx context.Context) (map[string]int, error)
}

type s3View struct {
	c      *s3.Client
	bucket string
}

func (v s3View) list(ctx context.Context, prefix, after string) ([]string, error) {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(v.bucket), Prefix: aws.String(prefix)}
	if after != "" {
		in.StartAfter = aws.String(after)
	}
	var keys []string
	p := s3.NewListObjectsV2Paginator(v.c, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range out.Contents {
			if k := aws.ToString(o.Key); strings.HasSuffix(k, ".ltx") {
				keys = append(keys, k)
			}
		}
	}
	return keys, nil
}

func (v s3View) l0(ctx context.Context, name, after string) ([]string, error) {
	return v.list(ctx, name+"/0000/", after)
}
func (v s3View) all(ctx context.Context, name string) ([]string, error) {
	return v.list(ctx, name+"/", "")
}
func (v s3View) get(ctx context.Context, key string) ([]byte, error) {
	return getObject(ctx, v.c, v.bucket, key)
}
func (v s3View) names(ctx context.Context) (map[string]int, error) {
	keys, err := v.list(ctx, "", "")
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	for _, k := range keys {
		m[path.Dir(path.Dir(k))]++ // name/NNNN/file.ltx
	}
	return m, nil
}

// fileView reads a file replica: <root>/<name>/ltx/<level>/<file>.ltx.
type fileView struct{ root string }

func (v fileView) l0(_ context.Context, name, after string) ([]string, error) {
	dir := path.Join(name, "ltx", "0")
	ents, err := os.ReadDir(filepath.Join(v.root, filepath.FromSlash(dir)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var keys []string
	for _, e := range ents {
		if k := dir + "/" + e.Name(); strings.HasSuffix(k, ".ltx") && k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

func (v fileView) walk(sub string, f func(rel string, d fs.DirEntry)) error {
	base := filepath.Join(v.root, filepath.FromSlash(sub))
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(v.root, p)
		f(filepath.ToSlash(rel), d)
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (v fileView) all(_ context.Context, name string) ([]string, error) {
	var keys []string
	err := v.walk(path.Join(name, "ltx"), func(rel string, d fs.DirEntry) {
		if !d.IsDir() && strings.HasSuffix(rel, ".ltx") {
			keys = append(keys, rel)
		}
	})
	return keys, err
}
func (v fileView) get(_ context.Context, key string) ([]byte, error) {
	return os.ReadFile(filepath.Join(v.root, filepath.FromSlash(key)))
}
func (v fileView) names(context.Context) (map[string]int, error) {
	m := map[string]int{}
	err := v.walk("", func(rel string, d fs.DirEntry) {
		if d.IsDir() || !strings.HasSuffix(rel, ".ltx") {
			return
		}
		if i := strings.LastIndex(rel, "/ltx/"); i > 0 {
			m[rel[:i]]++
		}
	})
	return m, err
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func (v fileView) tree() map[string]fileStamp {
	m := map[string]fileStamp{}
	_ = v.walk("", func(rel string, d fs.DirEntry) {
		if d.IsDir() {
			return
		}
		if info, err := d.Info(); err == nil {
			m[rel] = fileStamp{info.Size(), info.ModTime()}
		}
	})
	return m
}

func diffTrees(a, b map[string]fileStamp) (added, changed, removed int) {
	for k, s := range b {
		if o, ok := a[k]; !ok {
			added++
		} else if o != s {
			changed++
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			removed++
		}
	}
	return added, changed, removed
}

// --- one tool in one case ---------------------------------------------------

type scaleTenant struct {
	i      int
	name   string // replica name for this tool
	rel    string // tN/app.db
	path   string
	conn   *database // open connection: writers and the watch sample
	writer bool

	// watch sentinel
	watch     bool
	sentinel  string
	committed time.Time
	seenAt    time.Time
	seenKeys  map[string]bool
}

type reqSnap struct {
	total int64
	kinds map[string]int64
	errs  int64
}

func snapProxy(p *countingProxy) reqSnap {
	if p == nil {
		return reqSnap{}
	}
	t, k, e := p.snapshot()
	var n int64
	for _, v := range e {
		n += v
	}
	return reqSnap{total: t, kinds: k, errs: n}
}

func (a reqSnap) minus(b reqSnap) reqSnap {
	d := reqSnap{total: a.total - b.total, kinds: map[string]int64{}, errs: a.errs - b.errs}
	for k, v := range a.kinds {
		if v != b.kinds[k] {
			d.kinds[k] = v - b.kinds[k]
		}
	}
	return d
}

// kind groups the proxy's request kinds into the table's.
func (a reqSnap) kind(k string) int64 {
	switch k {
	case "PUT", "GET", "LIST", "HEAD":
		return a.kinds[k]
	case "DELETE":
		return a.kinds["DELETE"] + a.kinds["DELETE(multi)"]
	}
	var n int64
	for kk, v := range a.kinds {
		switch kk {
		case "PUT", "GET", "LIST", "HEAD", "DELETE", "DELETE(multi)":
		default:
			n += v
		}
	}
	return n
}

type gorSample struct {
	at time.Duration
	n  int
}

// walsyncStatus is the part of walsync's /status (engine.Status) used here.
type walsyncStatus struct {
	Databases  int    `json:"databases"`
	Hot        int    `json:"hot"`
	Cold       int    `json:"cold"`
	HotSet     int    `json:"hot_set"`
	Watched    int    `json:"watched_dirs"`
	SweepOnly  string `json:"sweep_only"`
	Failing    int    `json:"failing"`
	MaxLag     string `json:"max_lag"`
	Goroutines *int   `json:"goroutines"`
	DBs        []struct {
		State    string `json:"state"`
		LastSync string `json:"last_sync"`
		Error    string `json:"error"`
	} `json:"dbs"`
}

type statusSample struct {
	at                      time.Duration
	dbs, hot, cold, failing int
	synced                  int // databases with a last sync
	maxLag                  time.Duration
}

type scaleTool struct {
	name, kind string
	c          *config
	o          *scaleOpts
	sc         scaleCase
	feat       walsyncFeatures

	outDir, work, root, replicaRoot string

	srv    *s3server.Server
	s3c    *s3.Client
	bucket string
	proxy  *countingProxy
	view   replicaView

	tenants  []*scaleTenant
	writers  []*database // idx 0..W-1, for runWriter
	lagDBs   []*database
	watchT   []*scaleTenant
	restoreT []*scaleTenant
	dirMode  bool
	mode     string
	scrape   string // status (walsync) or metrics (litestream) URL

	rep     *s3server.Process
	logPath string
	started time.Time
	fdLimit string

	failures, notes, logLines []string
	startErr                  string

	mu           sync.Mutex
	samples      []procSample
	gors         []gorSample
	statusDBs    int
	statusAllAt  time.Duration // "databases" reached N
	syncedAllAt  time.Duration // every database has a last sync
	statuses     []statusSample
	sweepOnly    string
	statusErrs   []string
	lastScrape   []byte
	scrapes      int
	scrapeErr    string
	stopSampling chan struct{}
	samplerDone  chan struct{}

	watchAll  time.Duration // -1: not all seen
	watchSeen int
	readyAt   time.Duration
	cpuReady  float64

	phaseFrom, phaseTo       time.Duration
	cpuPhaseFrom, cpuPhaseTo float64
	reqReady, reqPhaseFrom   reqSnap
	reqPhaseTo, reqEnd       reqSnap
	idleMinutes              []int64
	treeAdded, treeChanged   int
	treeRemoved              int
	treeChecked              bool

	lags            []time.Duration
	unseen, probed  int
	commits         int
	writeErrs       int
	commitLat       []time.Duration
	cpuTotal        float64
	shutdown        time.Duration
	exitStatus      string
	dbsReplicated   int
	restored        int
	restoreOK       int
	restoreTime     time.Duration
	logErrors       int
	logWarns        int
	tooManyOpenFile int
}

func (t *scaleTool) fail(format string, a ...any) {
	t.failures = append(t.failures, fmt.Sprintf(format, a...))
}
func (t *scaleTool) note(format string, a ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, a...))
}
func (t *scaleTool) running() bool { return t.rep != nil && t.startErr == "" && len(t.failures) == 0 }
func (t *scaleTool) since() time.Duration {
	return time.Since(t.started)
}

// spread returns k indexes of 0..n-1 evenly spread, the first at offset.
func spread(n, k, offset int) []int {
	if k >= n {
		return sampleIndexes(n, n)
	}
	idx := make([]int, k)
	for i := range idx {
		idx[i] = (i*n/k + offset) % n
	}
	return idx
}

func (t *scaleTool) setup(ctx context.Context) error {
	var err error
	t.work, err = os.MkdirTemp(t.c.tmpDir, fmt.Sprintf("walsync-bench-scale-%s-%s-", t.name, t.kind))
	if err != nil {
		return err
	}
	if t.c.keep {
		t.note("work dir kept: %s", t.work)
	}
	switch t.kind {
	case "s3":
		if t.srv, err = s3server.Start(s3server.Options{Bin: t.c.versitygw, Dir: filepath.Join(t.work, "s3")}); err != nil {
			return fmt.Errorf("versitygw: %w", err)
		}
		t.s3c = newS3Client(t.srv)
		t.bucket = fmt.Sprintf("bench-scale-%s-%s", t.name, randomHex(3))
		if err := createBucket(ctx, t.s3c, t.bucket); err != nil {
			return fmt.Errorf("create bucket: %w", err)
		}
		if t.proxy, err = startProxy(t.srv.Endpoint); err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
		t.view = s3View{t.s3c, t.bucket}
	case "file":
		t.replicaRoot = filepath.Join(t.work, "replica")
		if err := os.MkdirAll(t.replicaRoot, 0o755); err != nil {
			return err
		}
		t.view = fileView{t.replicaRoot}
	}

	// Names: Litestream's directory mode and walsync --dir use the path
	// relative to the root; walsync's explicit paths parent/base-without-ext.
	switch {
	case t.name == "litestream":
		t.dirMode = true
		t.mode = "one process, dir + pattern *.db + recursive + watch"
	case t.o.walsyncDir == "yes" || (t.o.walsyncDir == "auto" && t.feat.dir):
		t.dirMode = true
		t.mode = "watch --dir --pattern *.db"
		if t.feat.recursive {
			t.mode += " --recursive"
		}
	default:
		t.mode = fmt.Sprintf("watch with %d explicit paths", t.sc.n)
	}

	// The tenant tree: one template database, copied.
	t.root = filepath.Join(t.work, "db")
	tmpl := filepath.Join(t.work, "template.db")
	if err := makeTemplate(tmpl); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	b, err := os.ReadFile(tmpl)
	if err != nil {
		return err
	}
	t0 := time.Now()
	n := t.sc.n
	t.tenants = make([]*scaleTenant, n)
	for i := range n {
		rel := fmt.Sprintf("t%d/app.db", i+1)
		p := filepath.Join(t.root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		name := rel
		if !t.dirMode {
			name = fmt.Sprintf("t%d/app", i+1)
		}
		t.tenants[i] = &scaleTenant{i: i, name: name, rel: rel, path: p}
	}
	logf("%s/%s %s: created %d databases in %v", t.name, t.kind, t.sc.label, n, time.Since(t0).Round(time.Millisecond))

	// Writers, lag sample, watch sample, restore sample.
	for j, i := range spread(n, t.sc.writers, 0) {
		tn := t.tenants[i]
		tn.writer = true
		d := &database{idx: j, name: tn.name, path: tn.path, pending: map[string]*sentinel{}}
		tn.conn = d
		t.writers = append(t.writers, d)
	}
	for _, j := range sampleIndexes(len(t.writers), t.c.sampleMax) {
		t.writers[j].sampled = true
		t.lagDBs = append(t.lagDBs, t.writers[j])
	}
	// The watch sample sits between writers where it can (the middle of
	// each stretch), so that it mostly measures databases nobody wrote to.
	k := min(t.o.watchSample, n)
	off := 0
	if k < n {
		off = n / (2 * k)
	}
	for _, i := range spread(n, k, off) {
		tn := t.tenants[i]
		tn.watch = true
		tn.seenKeys = map[string]bool{}
		if tn.conn == nil {
			tn.conn = &database{idx: -1, name: tn.name, path: tn.path, pending: map[string]*sentinel{}}
		}
		t.watchT = append(t.watchT, tn)
	}
	restore := map[int]bool{}
	if n <= 10 {
		for i := range n {
			restore[i] = true
		}
	} else {
		for _, d := range t.lagDBs {
			restore[t.tenantOf(d).i] = true
		}
		for _, tn := range t.watchT {
			restore[tn.i] = true
		}
		// Plus some nobody touched after the copy (offset 1 misses the writers).
		for _, i := range spread(n, t.o.restoreExtra, 1) {
			restore[i] = true
		}
	}
	for i := range n {
		if restore[i] {
			t.restoreT = append(t.restoreT, t.tenants[i])
		}
	}
	// Open the connections the application would hold.
	for _, tn := range t.tenants {
		if tn.conn == nil {
			continue
		}
		db, err := sql.Open("sqlite3", openDSN(tn.path))
		if err != nil {
			return err
		}
		db.SetMaxOpenConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
		var mode string
		if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			db.Close()
			return fmt.Errorf("%s: journal_mode %q (%v)", tn.path, mode, err)
		}
		tn.conn.db = db
	}
	return nil
}

func (t *scaleTool) tenantOf(d *database) *scaleTenant {
	for _, tn := range t.tenants {
		if tn.conn == d {
			return tn
		}
	}
	return nil
}

func makeTemplate(p string) error {
	db, err := sql.Open("sqlite3", openDSN(p))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`CREATE TABLE events(id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, sentinel TEXT NOT NULL, at INTEGER NOT NULL, payload BLOB NOT NULL)`,
		`INSERT INTO events(seq, sentinel, at, payload) VALUES (0, 'init', 0, zeroblob(1024))`,
		`PRAGMA wal_checkpoint(TRUNCATE)`,
	} {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		return fmt.Errorf("journal_mode %q (%v)", mode, err)
	}
	return db.Close()
}

func (t *scaleTool) litestreamConfig() (string, error) {
	port, err := s3server.FreePort()
	if err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	t.scrape = "http://" + addr + "/metrics"
	var b strings.Builder
	b.WriteString("# generated by walsync bench --scale\n")
	fmt.Fprintf(&b, "addr: %q\n", addr)
	b.WriteString("dbs:\n")
	fmt.Fprintf(&b, "  - dir: %q\n", t.root)
	b.WriteString("    pattern: \"*.db\"\n    recursive: true\n    watch: true\n    replica:\n")
	switch t.kind {
	case "s3":
		b.WriteString("      type: s3\n")
		fmt.Fprintf(&b, "      bucket: %q\n", t.bucket)
		fmt.Fprintf(&b, "      endpoint: %q\n", t.proxy.URL)
		fmt.Fprintf(&b, "      s3server.Region: %q\n", s3server.Region)
		b.WriteString("      force-path-style: true\n")
	case "file":
		b.WriteString("      type: file\n")
		fmt.Fprintf(&b, "      path: %q\n", t.replicaRoot)
	}
	return b.String(), nil
}

func (t *scaleTool) replicaURL() string {
	if t.kind == "s3" {
		return "s3://" + t.bucket
	}
	return t.replicaRoot
}

func (t *scaleTool) env() []string {
	if t.srv != nil {
		return childEnv(t.srv)
	}
	return childEnv(&s3server.Server{AccessKey: "unused", SecretKey: "unused"})
}

// start launches the tool and writes the watch sentinels right after.
func (t *scaleTool) start() error {
	var cmd *exec.Cmd
	switch t.name {
	case "walsync":
		args := []string{"watch"}
		if t.dirMode {
			args = append(args, "--dir", t.root, "--pattern", "*.db")
			if t.feat.recursive {
				args = append(args, "--recursive")
			}
		}
		args = append(args, "-b", t.replicaURL())
		if t.kind == "s3" {
			args = append(args, "--endpoint", t.proxy.URL)
		}
		if t.feat.addr {
			port, err := s3server.FreePort()
			if err != nil {
				return err
			}
			args = append(args, "--addr", fmt.Sprintf("127.0.0.1:%d", port))
			t.scrape = fmt.Sprintf("http://127.0.0.1:%d/status", port)
		}
		shown := strings.Join(args, " ")
		if !t.dirMode {
			args = append(args, "--")
			for _, tn := range t.tenants {
				args = append(args, tn.rel) // relative to cmd.Dir: keeps argv short
			}
			shown += fmt.Sprintf(" -- t1/app.db ... t%d/app.db (cwd %s)", t.sc.n, t.root)
		}
		_ = os.WriteFile(filepath.Join(t.outDir, "command.txt"), []byte("walsync "+shown+"\n"), 0o644)
		cmd = exec.Command(t.c.walsync, args...)
		cmd.Dir = t.root
	case "litestream":
		cfg, err := t.litestreamConfig()
		if err != nil {
			return err
		}
		cfgPath := filepath.Join(t.work, "litestream.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return err
		}
		_ = os.WriteFile(filepath.Join(t.outDir, "litestream.yml"), []byte(cfg), 0o644)
		cmd = exec.Command(t.c.litestream, "replicate", "-config", cfgPath)
		cmd.Dir = t.work
	}
	cmd.Env = t.env()
	t.logPath = filepath.Join(t.outDir, t.name+".log")
	_ = os.Remove(t.logPath)
	t.started = time.Now()
	var err error
	if t.rep, err = s3server.StartProcess(cmd, t.logPath); err != nil {
		return err
	}
	t.fdLimit = fdLimit(t.rep.Pid())
	// Right after start: one row into each database of the watch sample.
	for _, tn := range t.watchT {
		tn.sentinel = fmt.Sprintf("WATCH-%s-%s", strings.ReplaceAll(tn.rel, "/", "-"), randomHex(6))
		_, err := tn.conn.db.Exec(`INSERT INTO events(seq, sentinel, at, payload) VALUES (-1, ?, ?, randomblob(1024))`, tn.sentinel, time.Now().UnixNano())
		if err != nil {
			return fmt.Errorf("watch sentinel %s: %w", tn.rel, err)
		}
		tn.committed = time.Now()
	}
	t.stopSampling = make(chan struct{})
	t.samplerDone = make(chan struct{})
	go t.sampler()
	return nil
}

func fdLimit(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(line)
			if len(f) >= 5 {
				return f[3] + " (hard " + f[4] + ")"
			}
		}
	}
	return "?"
}

// sampler reads /proc every second and the tool's status/metrics every
// statusEvery, until stopSampling is closed.
func (t *scaleTool) sampler() {
	defer close(t.samplerDone)
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	var lastScrape time.Time
	for {
		if s, err := sampleProc(t.rep.Pid()); err == nil {
			s.at = t.since()
			t.mu.Lock()
			t.samples = append(t.samples, s)
			t.mu.Unlock()
		}
		every := t.o.statusEvery
		t.mu.Lock()
		if t.name == "walsync" && t.statusAllAt == 0 && t.since() < t.o.startTimeout {
			every = time.Second // until all are discovered: time it closely
		}
		t.mu.Unlock()
		if t.scrape != "" && time.Since(lastScrape) >= every {
			lastScrape = time.Now()
			t.scrapeOnce(hc)
		}
		select {
		case <-t.stopSampling:
			return
		case <-tk.C:
		}
	}
}

func (t *scaleTool) scrapeOnce(hc *http.Client) {
	at := t.since()
	resp, err := hc.Get(t.scrape)
	if err != nil {
		t.mu.Lock()
		t.scrapeErr = err.Error()
		t.mu.Unlock()
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.mu.Lock()
		t.scrapeErr = fmt.Sprintf("%s: %d %v", t.scrape, resp.StatusCode, err)
		t.mu.Unlock()
		return
	}
	g := -1
	var st *statusSample
	if t.name == "litestream" {
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					g = int(f)
				}
			}
		}
	} else {
		var ws walsyncStatus
		if err := json.Unmarshal(b, &ws); err != nil {
			t.mu.Lock()
			t.scrapeErr = "status JSON: " + err.Error()
			t.mu.Unlock()
			return
		}
		if ws.Goroutines != nil {
			g = *ws.Goroutines
		}
		st = &statusSample{at: at, dbs: ws.Databases, hot: ws.Hot, cold: ws.Cold, failing: ws.Failing}
		st.maxLag, _ = time.ParseDuration(ws.MaxLag)
		var errs []string
		for _, d := range ws.DBs {
			if d.LastSync != "" {
				st.synced++
			}
			if d.Error != "" && len(errs) < 3 {
				errs = append(errs, d.Error)
			}
		}
		t.mu.Lock()
		t.sweepOnly = ws.SweepOnly
		for _, e := range errs {
			if len(t.statusErrs) < 5 && !contains(t.statusErrs, e) {
				t.statusErrs = append(t.statusErrs, e)
			}
		}
		t.mu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastScrape = b
	t.scrapes++
	if g >= 0 {
		t.gors = append(t.gors, gorSample{at: at, n: g})
	}
	if st != nil {
		t.statuses = append(t.statuses, *st)
		t.statusDBs = st.dbs
		if st.dbs >= t.sc.n && t.statusAllAt == 0 {
			t.statusAllAt = at
		}
		if st.synced >= t.sc.n && t.syncedAllAt == 0 {
			t.syncedAllAt = at
		}
	}
}

// waitReady polls the watch sample until every sentinel is in the replica,
// the tool exits or startTimeout passes.
func (t *scaleTool) waitReady(ctx context.Context) {
	t.watchAll = -1
	deadline := t.started.Add(t.o.startTimeout)
	for {
		if t.rep.Exited() {
			t.startErr = startError(t.logPath, t.rep.Err())
			logf("%s/%s %s: EXITED during start-up: %s", t.name, t.kind, t.sc.label, t.startErr)
			return
		}
		seen := 0
		var last time.Time
		for _, tn := range t.watchT {
			if tn.seenAt.IsZero() {
				t.probeWatch(ctx, tn)
			}
			if !tn.seenAt.IsZero() {
				seen++
				if tn.seenAt.After(last) {
					last = tn.seenAt
				}
			}
		}
		t.watchSeen = seen
		if seen == len(t.watchT) {
			t.watchAll = last.Sub(t.started)
			break
		}
		if time.Now().After(deadline) {
			t.note("start-up: only %d/%d databases of the watch sample replicated within %v", seen, len(t.watchT), t.o.startTimeout)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.readyAt = t.since()
	t.cpuReady = cpuNow(t.rep.Pid())
	t.reqReady = snapProxy(t.proxy)
	logf("%s/%s %s: ready after %v (watch sample %d/%d, all replicated after %v)", t.name, t.kind, t.sc.label,
		t.readyAt.Round(10*time.Millisecond), t.watchSeen, len(t.watchT), t.watchAll.Round(10*time.Millisecond))
}

func (t *scaleTool) probeWatch(ctx context.Context, tn *scaleTenant) {
	keys, err := t.view.all(ctx, tn.name)
	listedAt := time.Now()
	if err != nil {
		return
	}
	for _, k := range keys {
		if tn.seenKeys[k] {
			continue
		}
		data, err := t.view.get(ctx, k)
		if err != nil {
			continue // removed by compaction meanwhile, or not complete yet
		}
		pages, err := decodeLTXPages(data)
		if err != nil {
			continue
		}
		tn.seenKeys[k] = true
		if strings.Contains(string(pages), tn.sentinel) {
			tn.seenAt = listedAt
			return
		}
	}
}

func cpuNow(pid int) float64 {
	s, err := sampleProc(pid)
	if err != nil {
		return math.NaN()
	}
	return s.cpu
}

// startError is the line that says why a tool exited.
func startError(logPath string, waitErr error) string {
	b, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	pick := ""
	for _, l := range lines {
		ll := strings.ToLower(l)
		if strings.Contains(ll, "level=error") || strings.Contains(ll, "error") || strings.HasPrefix(ll, "panic") || strings.HasPrefix(ll, "fatal") {
			pick = l
			break
		}
	}
	if pick == "" && len(lines) > 0 {
		pick = lines[len(lines)-1]
	}
	if len(pick) > 400 {
		pick = pick[:400] + "..."
	}
	return fmt.Sprintf("exit %v: %s", waitErr, pick)
}

// probeL0 marks the writer sentinels found in new L0 files of d.
func probeL0(ctx context.Context, v replicaView, d *database) {
	keys, err := v.l0(ctx, d.name, d.lastKey)
	listedAt := time.Now()
	if err != nil {
		if ctx.Err() == nil {
			d.probeErr("list L0 of %s: %v", d.name, err)
		}
		return
	}
	for _, k := range keys {
		data, err := v.get(ctx, k)
		if err != nil {
			if ctx.Err() == nil {
				d.probeErr("get %s: %v", k, err)
			}
			return
		}
		pages, err := decodeLTXPages(data)
		if err != nil {
			d.probeErr("decode %s: %v", k, err)
			return // retried on the next pass
		}
		d.mu.Lock()
		d.objects++
		for val, s := range d.pending {
			if strings.Contains(string(pages), val) {
				s.seenAt = listedAt
				delete(d.pending, val)
			}
		}
		d.lastKey = k
		d.mu.Unlock()
	}
}

func runProbeView(ctx context.Context, v replicaView, dbs []*database, interval time.Duration) {
	var wg sync.WaitGroup
	for _, d := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := time.NewTicker(interval)
			defer tk.Stop()
			for {
				probeL0(ctx, v, d)
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
				}
			}
		}()
	}
	wg.Wait()
}

func (t *scaleTool) markPhase(from bool) {
	at, cpu, req := t.since(), cpuNow(t.rep.Pid()), snapProxy(t.proxy)
	if from {
		t.phaseFrom, t.cpuPhaseFrom, t.reqPhaseFrom = at, cpu, req
	} else {
		t.phaseTo, t.cpuPhaseTo, t.reqPhaseTo = at, cpu, req
	}
}

// write runs the writer on this tool's tree (lag probed on the sample).
func (t *scaleTool) write(ctx context.Context, d time.Duration) {
	for _, db := range t.lagDBs {
		probeL0(ctx, t.view, db) // skip what is in L0 already
	}
	probeCtx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	go func() { defer close(probeDone); runProbeView(probeCtx, t.view, t.lagDBs, t.c.probeEvery) }()
	t.markPhase(true)
	wctx, cancel := context.WithTimeout(ctx, d)
	runWriter(wctx, t.writers)
	cancel()
	logf("%s/%s %s: writer stopped; draining %v", t.name, t.kind, t.sc.label, t.c.drain)
	time.Sleep(t.c.drain)
	t.markPhase(false)
	stopProbe()
	<-probeDone
	for _, db := range t.writers {
		t.commits += db.commits
		t.writeErrs += len(db.writeErrs)
		t.commitLat = append(t.commitLat, db.commitLat...)
		for j, e := range db.writeErrs {
			if j < 3 {
				t.note("writer %s: %s", db.name, e)
			}
		}
	}
	if t.writeErrs > 0 {
		t.fail("%d writer commits failed", t.writeErrs)
	}
}

// stop sends SIGTERM and records what the process used.
func (t *scaleTool) stop() {
	if t.rep == nil {
		return
	}
	if t.stopSampling != nil {
		close(t.stopSampling)
		<-t.samplerDone
		t.stopSampling = nil
	}
	if t.rep.Exited() && t.startErr == "" {
		t.fail("%s died during the run (%v); log tail:\n%s", t.name, t.rep.Err(), s3server.Tail(t.logPath, 3000))
	}
	t0 := time.Now()
	alone := t.rep.Stop(60 * time.Second)
	t.shutdown = time.Since(t0)
	if !alone {
		t.fail("%s did not exit within 60 s of SIGTERM (killed)", t.name)
	}
	if st := t.rep.State(); st != nil {
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			t.cpuTotal = tv(ru.Utime) + tv(ru.Stime)
		}
		t.exitStatus = st.String()
		if !st.Success() && t.startErr == "" && alone {
			t.fail("%s exited with %s after SIGTERM; log tail:\n%s", t.name, st, s3server.Tail(t.logPath, 2000))
		}
	}
	t.reqEnd = snapProxy(t.proxy)
	logf("%s/%s %s: stopped in %v (%s)", t.name, t.kind, t.sc.label, t.shutdown.Round(time.Millisecond), t.exitStatus)
}

// finish collects lags, counts replicated databases, restores and verifies.
func (t *scaleTool) finish(ctx context.Context) {
	var rr runResult
	scanLog(&rr, t.logPath)
	t.logErrors, t.logWarns = rr.logErrors, rr.logWarns
	t.failures = append(t.failures, rr.failures...)
	t.logLines = rr.notes
	if b, err := os.ReadFile(t.logPath); err == nil {
		t.tooManyOpenFile = strings.Count(string(b), "too many open files")
	}
	if len(t.lastScrape) > 0 {
		ext := ".json"
		if t.name == "litestream" {
			ext = ".prom"
		}
		_ = os.WriteFile(filepath.Join(t.outDir, "last-scrape"+ext), t.lastScrape, 0o644)
	}
	if t.startErr != "" {
		return
	}

	// Lags: a last pass, then every sentinel of the probed writers.
	for _, d := range t.lagDBs {
		probeL0(ctx, t.view, d)
	}
	var outliers []string
	for _, d := range t.lagDBs {
		t.probed++
		d.mu.Lock()
		for _, s := range d.all {
			if s.committed.IsZero() {
				continue
			}
			if s.seenAt.IsZero() {
				t.unseen++
				continue
			}
			lag := max(s.seenAt.Sub(s.committed), 0)
			t.lags = append(t.lags, lag)
			if lag > 3*time.Second && len(outliers) < 5 {
				outliers = append(outliers, fmt.Sprintf("%s %s committed at +%.1fs: %v", d.name, s.value, s.committed.Sub(t.started).Seconds(), lag.Round(time.Millisecond)))
			}
		}
		for j, e := range d.probeErrs {
			if j < 2 {
				t.note("probe %s: %s", d.name, e)
			}
		}
		d.mu.Unlock()
	}
	for _, o := range outliers {
		t.note("lag outlier: %s", o)
	}
	if t.unseen > 0 {
		t.note("%d committed sentinels of the probed writers never appeared in an L0 file", t.unseen)
	}

	if names, err := t.view.names(ctx); err != nil {
		t.note("listing the replica: %v", err)
	} else {
		missing := []string{}
		for _, tn := range t.tenants {
			if names[tn.name] > 0 {
				t.dbsReplicated++
			} else if len(missing) < 5 {
				missing = append(missing, tn.name)
			}
		}
		if t.dbsReplicated < t.sc.n {
			t.fail("%d of %d databases have nothing in the replica (e.g. %s)", t.sc.n-t.dbsReplicated, t.sc.n, strings.Join(missing, ", "))
		}
	}
	t.restoreAll(ctx)
}

func (t *scaleTool) restoreAll(ctx context.Context) {
	dir := filepath.Join(t.work, "restore")
	_ = os.MkdirAll(dir, 0o755)
	logPath := filepath.Join(t.outDir, "restore.log")
	lf, _ := os.Create(logPath)
	if lf != nil {
		defer lf.Close()
	}
	var total time.Duration
	shown := 0
	bad := func(format string, a ...any) {
		if shown < 5 {
			t.fail(format, a...)
		} else if shown == 5 {
			t.fail("(further restore failures in %s)", logPath)
		}
		shown++
	}
	for _, tn := range t.restoreT {
		t.restored++
		out := filepath.Join(dir, strings.ReplaceAll(tn.rel, "/", "-"))
		var cmd *exec.Cmd
		switch t.name {
		case "walsync":
			args := []string{"restore", tn.name, "-o", out, "-b", t.replicaURL()}
			if t.kind == "s3" {
				args = append(args, "--endpoint", t.srv.Endpoint)
			}
			cmd = exec.Command(t.c.walsync, args...)
		case "litestream":
			u := "file://" + filepath.ToSlash(filepath.Join(t.replicaRoot, filepath.FromSlash(tn.name)))
			if t.kind == "s3" {
				u = fmt.Sprintf("s3://%s/%s?endpoint=%s&s3server.Region=%s&forcePathStyle=true", t.bucket, tn.name, t.srv.Endpoint, s3server.Region)
			}
			cmd = exec.Command(t.c.litestream, "restore", "-o", out, u)
		}
		cmd.Env = t.env()
		t0 := time.Now()
		outb, err := cmd.CombinedOutput()
		total += time.Since(t0)
		if lf != nil {
			fmt.Fprintf(lf, "$ %s\n%s\n(exit: %v)\n", strings.Join(cmd.Args, " "), strings.TrimSpace(string(outb)), err)
		}
		if err != nil {
			bad("%s restore %s: %v: %s", t.name, tn.name, err, lastLine(string(outb)))
			continue
		}
		if msg := t.verify(tn, out); msg != "" {
			if lf != nil {
				fmt.Fprintf(lf, "VERIFY FAILED: %s\n", msg)
			}
			bad("restored %s: %s", tn.name, msg)
			continue
		}
		if lf != nil {
			fmt.Fprintf(lf, "verified\n\n")
		}
		t.restoreOK++
	}
	if t.restored > 0 {
		t.restoreTime = total / time.Duration(t.restored)
	}
	logf("%s/%s %s: restores verified %d/%d", t.name, t.kind, t.sc.label, t.restoreOK, t.restored)
}

type dbContent struct {
	rows, maxSeq int64
	sum          string
}

func readContent(db *sql.DB) (dbContent, error) {
	var c dbContent
	rows, err := db.Query(`SELECT id, seq, sentinel, at, payload FROM events ORDER BY id`)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	h := sha256.New()
	c.maxSeq = math.MinInt64
	for rows.Next() {
		var id, seq, at int64
		var s string
		var p []byte
		if err := rows.Scan(&id, &seq, &s, &at, &p); err != nil {
			return c, err
		}
		fmt.Fprintf(h, "%d|%d|%s|%d|%d|", id, seq, s, at, len(p))
		h.Write(p)
		c.rows++
		c.maxSeq = max(c.maxSeq, seq)
	}
	c.sum = hex.EncodeToString(h.Sum(nil))
	return c, rows.Err()
}

// verify checks a restored database against the source and the writer's
// record; it returns "" when everything matches.
func (t *scaleTool) verify(tn *scaleTenant, restored string) string {
	db, err := sql.Open("sqlite3", "file:"+restored+"?mode=ro")
	if err != nil {
		return err.Error()
	}
	defer db.Close()
	var integ string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&integ); err != nil {
		return "integrity_check: " + err.Error()
	}
	if integ != "ok" {
		return "integrity_check: " + integ
	}
	got, err := readContent(db)
	if err != nil {
		return "reading: " + err.Error()
	}
	src := tn.conn
	var srcDB *sql.DB
	if src != nil {
		srcDB = src.db
	} else {
		srcDB, err = sql.Open("sqlite3", "file:"+tn.path+"?mode=ro")
		if err != nil {
			return "source: " + err.Error()
		}
		defer srcDB.Close()
	}
	want, err := readContent(srcDB)
	if err != nil {
		return "source: " + err.Error()
	}
	// The writer's record: the template row, the watch sentinel, commits.
	expect := int64(1)
	if tn.watch && !tn.committed.IsZero() {
		expect++
	}
	if src != nil {
		expect += int64(src.commits)
	}
	switch {
	case want.rows != expect:
		return fmt.Sprintf("source has %d rows, the writer recorded %d", want.rows, expect)
	case got.rows != want.rows || got.maxSeq != want.maxSeq:
		return fmt.Sprintf("%d rows (max seq %d), source has %d rows (max seq %d)", got.rows, got.maxSeq, want.rows, want.maxSeq)
	case got.sum != want.sum:
		return fmt.Sprintf("%d rows as in the source but different contents", got.rows)
	}
	return ""
}

func (t *scaleTool) cleanup() {
	for _, tn := range t.tenants {
		if tn.conn != nil && tn.conn.db != nil {
			tn.conn.db.Close()
		}
	}
	if t.rep != nil && !t.rep.Exited() {
		t.rep.Stop(10 * time.Second)
	}
	if t.proxy != nil {
		t.proxy.close()
	}
	if t.srv != nil {
		_ = t.srv.Stop()
		copyFile(t.srv.LogFile, filepath.Join(t.outDir, "versitygw.log"))
	}
	if t.work != "" && !t.c.keep {
		os.RemoveAll(t.work)
	}
}

// resources summarizes the samples: peak over the whole life, steady over
// the second half of the measured phase.
func (t *scaleTool) resources() (r resourceSummary, gPeak, gSteady float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var phase []procSample
	mid := t.phaseFrom + (t.phaseTo-t.phaseFrom)/2
	for _, s := range t.samples {
		r.rssPeakKB = max(r.rssPeakKB, s.rssKB)
		r.fdsPeak = max(r.fdsPeak, s.fds)
		r.threadsPeak = max(r.threadsPeak, s.threads)
		if s.at >= mid && s.at <= t.phaseTo {
			phase = append(phase, s)
		}
	}
	var rss, fds, thr []int64
	for _, s := range phase {
		rss = append(rss, s.rssKB)
		fds = append(fds, int64(s.fds))
		thr = append(thr, int64(s.threads))
	}
	r.samples = len(t.samples)
	r.rssSteadyKB = medianInt64(rss)
	r.fdsSteady = int(medianInt64(fds))
	r.threadsSteady = int(medianInt64(thr))
	gPeak, gSteady = math.NaN(), math.NaN()
	var gs []int64
	for _, g := range t.gors {
		if math.IsNaN(gPeak) || float64(g.n) > gPeak {
			gPeak = float64(g.n)
		}
		if g.at >= mid && g.at <= t.phaseTo {
			gs = append(gs, int64(g.n))
		}
	}
	if len(gs) > 0 {
		gSteady = float64(medianInt64(gs))
	}
	if len(phase) == 0 {
		r.rssSteadyKB, r.fdsSteady, r.threadsSteady = -1, -1, -1
	}
	return r, gPeak, gSteady
}

// --- the mode ---------------------------------------------------------------

func runScale(c *config, o *scaleOpts) bool {
	stamp := time.Now().Format("20060102-150405")
	runDir := filepath.Join(c.outDir, "scale-"+stamp)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		fatalf("%v", err)
	}
	report, err := os.Create(filepath.Join(runDir, "results.txt"))
	if err != nil {
		fatalf("%v", err)
	}
	defer report.Close()
	out := io.MultiWriter(os.Stdout, report)
	feat := probeWalsync(c.walsync)
	var rl syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	var labels []string
	for _, sc := range o.cases {
		labels = append(labels, sc.label)
	}
	fmt.Fprintf(out, "walsync vs Litestream v0.5.18 - scale - %s\n", time.Now().Format(time.RFC3339))
	fmt.Fprintf(out, "cases %s; replicas %s; writing cases %v (+%v drain); idle cases: settle %v, then count for %v; start-up timeout %v\n",
		strings.Join(labels, ","), strings.Join(o.replicas, ","), c.duration, c.drain, o.settle, o.idle, o.startTimeout)
	fmt.Fprintf(out, "both tools at the same time, each on its own copy of <root>/tN/app.db (WAL, one template copied) and its own replica (S3: own versitygw on 127.0.0.1 behind own counting proxy)\n")
	fmt.Fprintf(out, "walsync: --dir %v, --addr (status) %v; Litestream: directory mode in one process, metrics addr for go_goroutines; status/metrics scraped every %v\n",
		yesNo(feat.dir && o.walsyncDir != "no"), yesNo(feat.addr), o.statusEvery)
	fmt.Fprintf(out, "lag: %d writers probed per tool, L0 listed every %v; watch sample: %d DBs written right after start; restores: all DBs when N <= 10, else probed writers + watch sample + %d untouched\n",
		c.sampleMax, c.probeEvery, o.watchSample, o.restoreExtra)
	fmt.Fprintf(out, "host: %d CPUs (shared with other jobs); bench fd limit %d (hard %d), the tools' is printed per case; logs and raw data in %s\n\n",
		numCPU(), rl.Cur, rl.Max, runDir)

	ok := true
	for _, sc := range o.cases {
		for _, kind := range o.replicas {
			dir := filepath.Join(runDir, fmt.Sprintf("%s-%s", strings.ReplaceAll(sc.label, "%", "pct"), kind))
			tools := runScaleCase(c, o, feat, sc, kind, dir)
			printScaleCase(out, c.tools, tools, sc, kind, c, o)
			for _, t := range tools {
				if len(t.failures) > 0 && t.name == "walsync" {
					ok = false
				}
			}
			report.Sync()
		}
	}
	latest := filepath.Join(c.outDir, "latest-scale.txt")
	_ = os.Remove(latest)
	if b, err := os.ReadFile(filepath.Join(runDir, "results.txt")); err == nil {
		_ = os.WriteFile(latest, b, 0o644)
	}
	fmt.Fprintf(os.Stdout, "\nwrote %s and %s\n", filepath.Join(runDir, "results.txt"), latest)
	return ok
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// compressLarge gzips the files under dir larger than limit (a Litestream
// at its fd limit logs hundreds of MB).
func compressLarge(dir string, limit int64) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".gz") {
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() <= limit {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer in.Close()
		out, err := os.Create(p + ".gz")
		if err != nil {
			return nil
		}
		zw := gzip.NewWriter(out)
		_, err = io.Copy(zw, in)
		if err2 := zw.Close(); err == nil {
			err = err2
		}
		if err2 := out.Close(); err == nil {
			err = err2
		}
		if err != nil {
			os.Remove(p + ".gz")
			return nil
		}
		os.Remove(p)
		return nil
	})
}

func runScaleCase(c *config, o *scaleOpts, feat walsyncFeatures, sc scaleCase, kind, dir string) map[string]*scaleTool {
	ctx := context.Background()
	tools := map[string]*scaleTool{}
	var order []*scaleTool
	defer compressLarge(dir, 4<<20)
	for _, name := range c.tools {
		t := &scaleTool{name: name, kind: kind, c: c, o: o, sc: sc, feat: feat, outDir: filepath.Join(dir, name), watchAll: -1}
		_ = os.MkdirAll(t.outDir, 0o755)
		tools[name] = t
		order = append(order, t)
	}
	defer func() {
		for _, t := range order {
			t.cleanup()
		}
	}()
	logf("=== %s, %s replica: setting up", sc.label, kind)
	for _, t := range order {
		if err := t.setup(ctx); err != nil {
			t.fail("setup: %v", err)
			logf("%s/%s: setup failed: %v", t.name, kind, err)
		}
	}
	for _, t := range order {
		if len(t.failures) > 0 {
			continue
		}
		if err := t.start(); err != nil {
			t.fail("starting: %v", err)
		}
	}
	var wg sync.WaitGroup
	for _, t := range order {
		if t.rep == nil || len(t.failures) > 0 {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); t.waitReady(ctx) }()
	}
	wg.Wait()

	var live []*scaleTool
	for _, t := range order {
		if t.running() {
			live = append(live, t)
		}
	}
	if sc.idle {
		logf("=== %s, %s: settling %v, then counting for %v", sc.label, kind, o.settle, o.idle)
		time.Sleep(o.settle)
		trees := map[*scaleTool]map[string]fileStamp{}
		for _, t := range live {
			t.markPhase(true)
			if fv, ok := t.view.(fileView); ok {
				trees[t] = fv.tree()
			}
		}
		start := time.Now()
		prev := map[*scaleTool]reqSnap{}
		for _, t := range live {
			prev[t] = t.reqPhaseFrom
		}
		for time.Since(start) < o.idle {
			step := min(time.Minute, o.idle-time.Since(start))
			time.Sleep(step)
			for _, t := range live {
				s := snapProxy(t.proxy)
				t.idleMinutes = append(t.idleMinutes, s.total-prev[t].total)
				prev[t] = s
			}
		}
		for _, t := range live {
			t.markPhase(false)
			if fv, ok := t.view.(fileView); ok {
				t.treeAdded, t.treeChanged, t.treeRemoved = diffTrees(trees[t], fv.tree())
				t.treeChecked = true
			}
			if t.rep.Exited() {
				t.fail("%s died during the idle window (%v); log tail:\n%s", t.name, t.rep.Err(), s3server.Tail(t.logPath, 3000))
			}
		}
	} else {
		logf("=== %s, %s: writing for %v", sc.label, kind, c.duration)
		for _, t := range live {
			wg.Add(1)
			go func() { defer wg.Done(); t.write(ctx, c.duration) }()
		}
		wg.Wait()
	}
	for _, t := range order {
		wg.Add(1)
		go func() { defer wg.Done(); t.stop() }()
	}
	wg.Wait()
	for _, t := range order {
		t.finish(ctx)
		t.writeRaw()
	}
	for _, t := range order {
		status := "ok"
		if t.startErr != "" {
			status = "did not start: " + t.startErr
		} else if len(t.failures) > 0 {
			status = "FAILED: " + strings.Join(t.failures, "; ")
		}
		logf("=== %s, %s: %s %s", sc.label, kind, t.name, status)
	}
	return tools
}

// --- report -----------------------------------------------------------------

type scaleRow struct {
	name   string
	vals   [2]float64
	text   [2]string
	prec   int
	ratio  bool
	always bool
}

func printScaleCase(w io.Writer, order []string, tools map[string]*scaleTool, sc scaleCase, kind string, c *config, o *scaleOpts) {
	names := [2]string{"walsync", "litestream"}
	state := func(t *scaleTool) string {
		switch {
		case t == nil:
			return "(not run)"
		case t.startErr != "":
			return "did not start"
		case len(t.failures) > 0:
			return "FAILED"
		}
		return ""
	}
	var rows []scaleRow
	add := func(name string, prec int, ratio bool, f func(t *scaleTool) float64) {
		r := scaleRow{name: name, prec: prec, ratio: ratio}
		for j, n := range names {
			t := tools[n]
			if s := state(t); s != "" {
				r.text[j], r.vals[j] = s, math.NaN()
			} else {
				r.vals[j] = f(t)
			}
		}
		rows = append(rows, r)
	}
	addText := func(name string, always bool, f func(t *scaleTool) string) {
		r := scaleRow{name: name, always: always}
		for j, n := range names {
			t := tools[n]
			if s := state(t); s != "" && (!always || t == nil) {
				r.text[j] = s
			} else {
				r.text[j] = f(t)
			}
		}
		rows = append(rows, r)
	}
	mib := func(kb int64) float64 {
		if kb < 0 {
			return math.NaN()
		}
		return float64(kb) / 1024
	}
	res := map[*scaleTool]resourceSummary{}
	gp, gs := map[*scaleTool]float64{}, map[*scaleTool]float64{}
	for _, t := range tools {
		res[t], gp[t], gs[t] = t.resources()
	}
	phase := "writing"
	if sc.idle {
		phase = "idle window"
	}

	addText("started", true, func(t *scaleTool) string {
		switch {
		case t.rep == nil:
			return "no (setup failed)"
		case t.startErr != "":
			return "NO (exited, see below)"
		case t.tooManyOpenFile > 0:
			return fmt.Sprintf("yes, at its fd limit (%d EMFILE log lines)", t.tooManyOpenFile)
		}
		return "yes"
	})
	addText("how", true, func(t *scaleTool) string { return t.mode })
	addText("fd limit (soft)", true, func(t *scaleTool) string { return t.fdLimit })
	addText(fmt.Sprintf("watch sample (%d DBs written at start): all replicated after (s)", min(o.watchSample, sc.n)), true, func(t *scaleTool) string {
		switch {
		case t.rep == nil:
			return "-"
		case t.watchAll >= 0:
			return fmt.Sprintf("%.2f", t.watchAll.Seconds())
		}
		return fmt.Sprintf("%d/%d by %.0fs", t.watchSeen, len(t.watchT), t.readyAt.Seconds())
	})
	add("status: all N DBs discovered after (s)", 1, true, func(t *scaleTool) float64 {
		if t.statusAllAt == 0 {
			return math.NaN()
		}
		return t.statusAllAt.Seconds()
	})
	add("status: all N DBs synced once after (s)", 1, true, func(t *scaleTool) float64 {
		if t.syncedAllAt == 0 {
			return math.NaN()
		}
		return t.syncedAllAt.Seconds()
	})
	addText("status: hot DBs "+phase+" median (max)", false, func(t *scaleTool) string {
		ss := t.phaseStatuses()
		if len(ss) == 0 {
			return "-"
		}
		var hot []int64
		var mx int64
		for _, x := range ss {
			hot = append(hot, int64(x.hot))
			mx = max(mx, int64(x.hot))
		}
		return fmt.Sprintf("%d (%d)", medianInt64(hot), mx)
	})
	addText("status: failing DBs max / max_lag max (whole run)", false, func(t *scaleTool) string {
		if len(t.statuses) == 0 {
			return "-"
		}
		f, l := 0, time.Duration(0)
		for _, x := range t.statuses {
			f, l = max(f, x.failing), max(l, x.maxLag)
		}
		return fmt.Sprintf("%d / %v", f, l.Round(time.Millisecond))
	})
	addText("DBs with files in the replica at end", false, func(t *scaleTool) string { return fmt.Sprintf("%d/%d", t.dbsReplicated, sc.n) })
	if !sc.idle {
		add("lag p50 (ms)", 0, true, func(t *scaleTool) float64 { return pct(t.lags, 50) })
		add("lag p99 (ms)", 0, true, func(t *scaleTool) float64 { return pct(t.lags, 99) })
		add("lag max (ms)", 0, true, func(t *scaleTool) float64 { return maxDur(t.lags) })
		addText("lag samples (writers probed)", false, func(t *scaleTool) string { return fmt.Sprintf("%d (%d)", len(t.lags), t.probed) })
		add("sentinels never replicated", 0, false, func(t *scaleTool) float64 { return float64(t.unseen) })
		add("commits (all writers)", 0, false, func(t *scaleTool) float64 { return float64(t.commits) })
		add("writer commit p99 (ms)", 1, true, func(t *scaleTool) float64 { return pct(t.commitLat, 99) })
	}
	add("RSS peak (MiB)", 1, true, func(t *scaleTool) float64 { return mib(res[t].rssPeakKB) })
	add("RSS steady (MiB, "+phase+")", 1, true, func(t *scaleTool) float64 { return mib(res[t].rssSteadyKB) })
	add("fds peak", 0, true, func(t *scaleTool) float64 { return float64(res[t].fdsPeak) })
	add("fds steady", 0, true, func(t *scaleTool) float64 { return float64(res[t].fdsSteady) })
	add("threads peak", 0, true, func(t *scaleTool) float64 { return float64(res[t].threadsPeak) })
	add("threads steady", 0, true, func(t *scaleTool) float64 { return float64(res[t].threadsSteady) })
	add("goroutines peak", 0, true, func(t *scaleTool) float64 { return gp[t] })
	add("goroutines steady", 0, true, func(t *scaleTool) float64 { return gs[t] })
	add("CPU s start-up (until ready)", 2, true, func(t *scaleTool) float64 { return t.cpuReady })
	add("CPU s "+phase, 2, true, func(t *scaleTool) float64 { return t.cpuPhaseTo - t.cpuPhaseFrom })
	add("CPU % of a core, "+phase, 1, true, func(t *scaleTool) float64 {
		d := (t.phaseTo - t.phaseFrom).Seconds()
		if d <= 0 {
			return math.NaN()
		}
		return 100 * (t.cpuPhaseTo - t.cpuPhaseFrom) / d
	})
	add("CPU s total (rusage)", 2, true, func(t *scaleTool) float64 { return t.cpuTotal })
	if kind == "s3" {
		add("S3 requests, start-up", 0, true, func(t *scaleTool) float64 { return float64(t.reqReady.total) })
		addText("  by kind", false, func(t *scaleTool) string { return kindsText(t.reqReady) })
		if sc.idle {
			add(fmt.Sprintf("S3 requests, settle (%v, after start-up)", o.settle), 0, true, func(t *scaleTool) float64 {
				return float64(t.reqPhaseFrom.minus(t.reqReady).total)
			})
			addText("  by kind", false, func(t *scaleTool) string { return kindsText(t.reqPhaseFrom.minus(t.reqReady)) })
		}
		ph := func(t *scaleTool) reqSnap { return t.reqPhaseTo.minus(t.reqPhaseFrom) }
		label := "S3 requests, writing (+drain)"
		if sc.idle {
			label = fmt.Sprintf("S3 requests, idle window (%v)", o.idle)
		}
		add(label, 0, true, func(t *scaleTool) float64 { return float64(ph(t).total) })
		for _, k := range []string{"PUT", "GET", "LIST", "HEAD", "DELETE", "other"} {
			add("  "+k, 0, true, func(t *scaleTool) float64 { return float64(ph(t).kind(k)) })
		}
		if !sc.idle {
			add("S3 requests/s, writing", 1, true, func(t *scaleTool) float64 {
				d := (t.phaseTo - t.phaseFrom).Seconds()
				if d <= 0 {
					return math.NaN()
				}
				return float64(ph(t).total) / d
			})
		}
		add("S3 requests, whole run (incl. shutdown)", 0, true, func(t *scaleTool) float64 { return float64(t.reqEnd.total) })
		add("S3 error responses, whole run", 0, false, func(t *scaleTool) float64 { return float64(t.reqEnd.errs) })
	} else if sc.idle {
		addText("replica files added/changed/removed, idle window", false, func(t *scaleTool) string {
			if !t.treeChecked {
				return "-"
			}
			return fmt.Sprintf("%d/%d/%d", t.treeAdded, t.treeChanged, t.treeRemoved)
		})
	}
	add("log ERROR lines", 0, false, func(t *scaleTool) float64 { return float64(t.logErrors) })
	add("log WARN lines", 0, false, func(t *scaleTool) float64 { return float64(t.logWarns) })
	add("shutdown after SIGTERM (s)", 2, true, func(t *scaleTool) float64 { return t.shutdown.Seconds() })
	addText("restores verified (own restore, integrity, rows)", true, func(t *scaleTool) string {
		if t.restored == 0 {
			return "-"
		}
		return fmt.Sprintf("%d/%d", t.restoreOK, t.restored)
	})
	add("restore time, mean (s)", 2, true, func(t *scaleTool) float64 { return t.restoreTime.Seconds() })

	title := sc.String()
	if !sc.idle {
		title += fmt.Sprintf(", %v", c.duration)
	}
	fmt.Fprintf(w, "== %s - %s replica\n", title, kind)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.Debug)
	fmt.Fprintf(tw, "metric\twalsync\tlitestream\tratio (ls/ws)\t\n")
	for _, r := range rows {
		var cells [2]string
		for j := range 2 {
			switch {
			case r.text[j] != "":
				cells[j] = r.text[j]
			case math.IsNaN(r.vals[j]):
				cells[j] = "-"
			default:
				cells[j] = fmt.Sprintf("%.*f", r.prec, r.vals[j])
			}
		}
		ratio := ""
		if r.ratio && r.text[0] == "" && r.text[1] == "" {
			a, b := r.vals[0], r.vals[1]
			switch {
			case math.IsNaN(a) || math.IsNaN(b):
			case a == 0 && b == 0:
				ratio = "="
			case a == 0:
				ratio = "inf"
			default:
				ratio = fmt.Sprintf("%.2f", b/a)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", r.name, cells[0], cells[1], ratio)
	}
	tw.Flush()

	if ws := tools["walsync"]; ws != nil {
		if g := scaleGoals(ws, sc, res[ws], o); g != "" {
			fmt.Fprintf(w, "walsync goals (issue 4): %s\n", g)
		}
	}
	for _, n := range order {
		t := tools[n]
		if t == nil {
			continue
		}
		if sc.idle && kind == "s3" && len(t.idleMinutes) > 0 {
			fmt.Fprintf(w, "%s: S3 requests per minute of the idle window %v\n", n, t.idleMinutes)
		}
		if t.startErr != "" {
			fmt.Fprintf(w, "%s DID NOT START: %s\n", n, t.startErr)
		}
		if len(t.failures) > 0 {
			fmt.Fprintf(w, "%s FAILED:\n", n)
			for _, f := range t.failures {
				fmt.Fprintf(w, "  - %s\n", indent(f))
			}
			if t.rep != nil {
				r, gp := res[t], gp[t]
				g := "-"
				if !math.IsNaN(gp) {
					g = strconv.Itoa(int(gp))
				}
				synced := "-"
				if len(t.statuses) > 0 {
					synced = fmt.Sprintf("%d/%d", t.statuses[len(t.statuses)-1].synced, sc.n)
				}
				fmt.Fprintf(w, "%s diagnostics (not results, the run failed): RSS peak %.1f MiB, fds peak %d, threads peak %d, goroutines peak %s, CPU %.1f s, DBs with files in the replica %d/%d, status synced once %s, watch sample %d/%d, S3 requests %d %v\n",
					n, float64(r.rssPeakKB)/1024, r.fdsPeak, r.threadsPeak, g, t.cpuTotal, t.dbsReplicated, sc.n, synced, t.watchSeen, len(t.watchT), t.reqEnd.total, t.reqEnd.kinds)
			}
		}
		for _, s := range t.notes {
			fmt.Fprintf(w, "%s note: %s\n", n, indent(s))
		}
		for _, s := range t.logLines {
			fmt.Fprintf(w, "%s %s\n", n, indent(s))
		}
		if t.tooManyOpenFile > 0 {
			fmt.Fprintf(w, "%s: %d log lines say \"too many open files\"\n", n, t.tooManyOpenFile)
		}
		if t.sweepOnly != "" {
			fmt.Fprintf(w, "%s status: some changes are found by stat sweeps only: %s\n", n, t.sweepOnly)
		}
		for _, e := range t.statusErrs {
			fmt.Fprintf(w, "%s status: database error: %s\n", n, e)
		}
		if t.scrapes > 0 {
			fmt.Fprintf(w, "%s: %s read %d times, last answer %d KiB\n", n, t.scrape, t.scrapes, len(t.lastScrape)/1024)
		}
		if t.scrapeErr != "" && len(t.gors) == 0 {
			fmt.Fprintf(w, "%s: status/metrics not read: %s\n", n, t.scrapeErr)
		}
		if kind == "s3" && t.reqEnd.total > 0 {
			fmt.Fprintf(w, "%s: S3 requests by kind, whole run %v\n", n, t.reqEnd.kinds)
		}
	}
	fmt.Fprintln(w)
}

func kindsText(r reqSnap) string {
	var parts []string
	for _, k := range []string{"PUT", "GET", "LIST", "HEAD", "DELETE", "other"} {
		if v := r.kind(k); v != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// phaseStatuses are the status samples of the second half of the phase.
func (t *scaleTool) phaseStatuses() []statusSample {
	mid := t.phaseFrom + (t.phaseTo-t.phaseFrom)/2
	var ss []statusSample
	for _, x := range t.statuses {
		if x.at >= mid && x.at <= t.phaseTo {
			ss = append(ss, x)
		}
	}
	return ss
}

// writeRaw keeps the samples behind the table.
func (t *scaleTool) writeRaw() {
	f, err := os.Create(filepath.Join(t.outDir, "raw.txt"))
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "# %s %s %s; ready at %.2fs, phase %.2fs..%.2fs\n# t_s rss_kb fds threads cpu_s\n",
		t.name, t.kind, t.sc.label, t.readyAt.Seconds(), t.phaseFrom.Seconds(), t.phaseTo.Seconds())
	for _, s := range t.samples {
		fmt.Fprintf(f, "%.1f %d %d %d %.2f\n", s.at.Seconds(), s.rssKB, s.fds, s.threads, s.cpu)
	}
	fmt.Fprintf(f, "# goroutines: t_s n\n")
	for _, g := range t.gors {
		fmt.Fprintf(f, "%.1f %d\n", g.at.Seconds(), g.n)
	}
	fmt.Fprintf(f, "# status: t_s databases hot cold failing synced max_lag\n")
	for _, x := range t.statuses {
		fmt.Fprintf(f, "%.1f %d %d %d %d %d %v\n", x.at.Seconds(), x.dbs, x.hot, x.cold, x.failing, x.synced, x.maxLag)
	}
	fmt.Fprintf(f, "# watch sample: db committed_s seen_s\n")
	for _, tn := range t.watchT {
		seen := "-"
		if !tn.seenAt.IsZero() {
			seen = fmt.Sprintf("%.2f", tn.seenAt.Sub(t.started).Seconds())
		}
		fmt.Fprintf(f, "%s %.2f %s\n", tn.name, tn.committed.Sub(t.started).Seconds(), seen)
	}
	fmt.Fprintf(f, "# writer sentinels of the probed writers: db seq committed_s lag_ms (- never seen)\n")
	for _, d := range t.lagDBs {
		d.mu.Lock()
		for i, s := range d.all {
			if s.committed.IsZero() {
				continue
			}
			lag := "-"
			if !s.seenAt.IsZero() {
				lag = fmt.Sprintf("%.1f", float64(max(s.seenAt.Sub(s.committed), 0).Microseconds())/1000)
			}
			fmt.Fprintf(f, "%s %d %.2f %s\n", d.name, i+1, s.committed.Sub(t.started).Seconds(), lag)
		}
		d.mu.Unlock()
	}
	fmt.Fprintf(f, "# S3 requests by kind: start-up %v; phase %v; whole run %v\n", t.reqReady.kinds, t.reqPhaseTo.minus(t.reqPhaseFrom).kinds, t.reqEnd.kinds)
	fmt.Fprintf(f, "# idle window requests per minute %v; replica files added/changed/removed %d/%d/%d\n", t.idleMinutes, t.treeAdded, t.treeChanged, t.treeRemoved)
}

// scaleGoals checks walsync against issue 4's goals for the cases.
func scaleGoals(t *scaleTool, sc scaleCase, r resourceSummary, o *scaleOpts) string {
	if t.startErr != "" || t.rep == nil {
		return "FAIL (did not start)"
	}
	if len(t.failures) > 0 {
		return "FAIL (run failed; no numbers)"
	}
	var parts []string
	check := func(what string, ok bool, got string) {
		v := "ok"
		if !ok {
			v = "MISSED"
		}
		parts = append(parts, fmt.Sprintf("%s: %s %s", what, got, v))
	}
	peak := float64(r.rssPeakKB) / 1024
	steady := float64(r.rssSteadyKB) / 1024
	rss := func(limit float64) {
		check(fmt.Sprintf("RSS <= %g MiB", limit), peak <= limit, fmt.Sprintf("peak %.1f / steady %.1f", peak, steady))
	}
	switch {
	case sc.idle && sc.n == 1000:
		if t.kind == "s3" {
			n := t.reqPhaseTo.minus(t.reqPhaseFrom).total
			check(fmt.Sprintf("0 requests in %v idle", o.idle), n == 0, strconv.FormatInt(n, 10))
		} else if t.treeChecked {
			n := t.treeAdded + t.treeChanged + t.treeRemoved
			check(fmt.Sprintf("0 replica files written in %v idle", o.idle), n == 0, strconv.Itoa(n))
		}
	case !sc.idle && sc.n == 10 && sc.writers == 10:
		rss(12)
	case !sc.idle && sc.n == 1000 && sc.writers == 100:
		rss(40)
		check("fds <= 500", r.fdsPeak <= 500, fmt.Sprintf("peak %d", r.fdsPeak))
		p99 := pct(t.lags, 99)
		check("lag p99 <= 1.5 s", p99 <= 1500 && t.unseen == 0, fmt.Sprintf("%.0f ms, %d unseen", p99, t.unseen))
	case !sc.idle && sc.n == 10000 && sc.writers == 100:
		check("runs", true, "restores verified")
		rss(64)
		all := t.watchAll.Seconds()
		got := fmt.Sprintf("%.1f s (watch sample)", all)
		if t.watchAll < 0 {
			got = fmt.Sprintf("%d/%d not within %v", t.watchSeen, len(t.watchT), o.startTimeout)
		}
		if t.statusAllAt > 0 {
			got += fmt.Sprintf(", status %.1f s", t.statusAllAt.Seconds())
		}
		check("all watched within 30 s", t.watchAll >= 0 && all <= 30 && (t.statusAllAt == 0 || t.statusAllAt <= 30*time.Second), got)
	default:
		return ""
	}
	return strings.Join(parts, "; ")
}
