package main

// One tool in one scale case: its tenant tree, its replica and its
// process, from setup to clean-up. What it watches while it runs is in
// scale_watch.go, the writing and the checks at the end in
// scale_check.go.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/walsync/walsync/internal/s3server"
)

// scaleTenant is one database of the tree.
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

type gorSample struct {
	at time.Duration
	n  int
}

type statusSample struct {
	at                      time.Duration
	dbs, hot, cold, failing int
	synced                  int // databases with a last sync
	maxLag                  time.Duration
}

// scaleTool is one tool in one case.
type scaleTool struct {
	toolRun
	kind string // "s3" or "file"
	c    *config
	o    *scaleOpts
	sc   scaleCase
	feat walsyncFeatures

	root, replicaRoot string

	s3s  *s3Side // nil for a file replica
	view replicaView

	tenants  []*scaleTenant
	writers  []*database // idx 0..W-1, for runWriter
	lagDBs   []*database
	watchT   []*scaleTenant
	restoreT []*scaleTenant
	dirMode  bool
	mode     string
	scrape   string // status (walsync) or metrics (litestream) URL

	fdLimit  string
	startErr string
	smp      *sampler
	samples  []procSample

	mu          sync.Mutex // guards what the sampler's scrapes write
	gors        []gorSample
	statusAllAt time.Duration // "databases" reached N
	syncedAllAt time.Duration // every database has a last sync
	statuses    []statusSample
	sweepOnly   string
	statusErrs  []string
	lastScrape  []byte
	scrapes     int
	scrapeErr   string

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

	lagStats
	commits         int
	commitLat       []time.Duration
	dbsReplicated   int
	restored        int
	restoreOK       int
	restoreTime     time.Duration
	tooManyOpenFile int
}

func (t *scaleTool) running() bool { return t.rep != nil && t.startErr == "" && len(t.failures) == 0 }
func (t *scaleTool) since() time.Duration {
	return time.Since(t.started)
}

// reqs is what the counting proxy has seen so far (nothing for a file
// replica).
func (t *scaleTool) reqs() reqSnap {
	if t.s3s == nil {
		return reqSnap{}
	}
	return t.s3s.proxy.snapshot()
}

// loc is the replica as a tool reaches it: an S3 one through endpoint.
func (t *scaleTool) loc(endpoint string) replicaLoc {
	if t.s3s == nil {
		return replicaLoc{path: t.replicaRoot}
	}
	return t.s3s.loc(endpoint, "")
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
	if err := t.makeWork(t.c, fmt.Sprintf("walsync-bench-scale-%s-%s-", t.name, t.kind)); err != nil {
		return err
	}
	switch t.kind {
	case "s3":
		var err error
		if t.s3s, err = startS3Side(ctx, t.c, t.work, fmt.Sprintf("bench-scale-%s-%s", t.name, randomHex(3))); err != nil {
			return err
		}
		t.view = s3View{t.s3s.c, t.s3s.bucket}
	case "file":
		t.replicaRoot = filepath.Join(t.work, "replica")
		if err := os.MkdirAll(t.replicaRoot, 0o755); err != nil {
			return fmt.Errorf("creating the replica directory: %w", err)
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
	if err := t.makeTree(); err != nil {
		return err
	}
	t.pickSamples()
	// Open the connections the application would hold.
	for _, tn := range t.tenants {
		if tn.conn == nil {
			continue
		}
		var err error
		if tn.conn.db, err = openWriter(tn.path); err != nil {
			return err
		}
	}
	return nil
}

// makeTree creates the tenant tree: one template database, copied.
func (t *scaleTool) makeTree() error {
	t.root = filepath.Join(t.work, "db")
	tmpl := filepath.Join(t.work, "template.db")
	if err := makeTemplate(tmpl); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	b, err := os.ReadFile(tmpl)
	if err != nil {
		return fmt.Errorf("template: %w", err)
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
	return nil
}

// pickSamples chooses the writers, the lag sample, the watch sample and
// the restore sample.
func (t *scaleTool) pickSamples() {
	n := t.sc.n
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
		for _, tn := range t.tenants {
			if tn.conn != nil && tn.conn.sampled {
				restore[tn.i] = true // the lag sample
			}
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
}

// makeTemplate creates the database every tenant starts as: the schema,
// one row, everything checkpointed into the file.
func makeTemplate(p string) error {
	db, err := openWriter(p)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		eventsSchema,
		`INSERT INTO events(seq, sentinel, at, payload) VALUES (0, 'init', 0, zeroblob(1024))`,
		`PRAGMA wal_checkpoint(TRUNCATE)`,
	} {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return db.Close()
}

// env is the tools' environment, with the S3 server's credentials.
func (t *scaleTool) env() []string {
	if t.s3s == nil {
		return childEnv(nil)
	}
	return childEnv(t.s3s.srv)
}

// launch starts the tool and writes the watch sentinels right after.
func (t *scaleTool) launch() error {
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
		if t.s3s != nil {
			args = append(args, "-b", "s3://"+t.s3s.bucket, "--endpoint", t.s3s.proxy.URL)
		} else {
			args = append(args, "-b", t.replicaRoot)
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
		cmd = t.walsyncCmd(t.c, args, shown)
		cmd.Dir = t.root
	case "litestream":
		port, err := s3server.FreePort()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		t.scrape = "http://" + addr + "/metrics"
		endpoint := ""
		if t.s3s != nil {
			endpoint = t.s3s.proxy.URL
		}
		cfg := litestreamYAML(" --scale", fmt.Sprintf("addr: %q\n", addr), []lsDB{{dir: t.root, replica: t.loc(endpoint)}})
		if cmd, err = t.litestreamCmd(t.c, cfg); err != nil {
			return err
		}
		cmd.Dir = t.work
	}
	cmd.Env = t.env()
	if err := t.start(cmd); err != nil {
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
	t.smp = startSampler(t.rep.Pid(), t.started, t.scraper())
	return nil
}

// stop sends SIGTERM and records what the process used.
func (t *scaleTool) stop() {
	if t.rep == nil {
		return
	}
	if t.smp != nil {
		t.samples = t.smp.stop()
		t.smp = nil
	}
	if t.startErr == "" {
		t.failIfDied("the run")
	}
	t.toolRun.stop()
	t.reqEnd = t.reqs()
	logf("%s/%s %s: stopped in %v (%s)", t.name, t.kind, t.sc.label, t.shutdown.Round(time.Millisecond), t.exitStatus)
}

func (t *scaleTool) cleanup() {
	for _, tn := range t.tenants {
		if tn.conn != nil && tn.conn.db != nil {
			tn.conn.db.Close()
		}
	}
	t.kill()
	if t.s3s != nil {
		_ = t.s3s.close(t.outDir)
	}
	t.removeWork(t.c)
}
