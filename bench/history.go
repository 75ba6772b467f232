package main

// History mode (--history): "a simulated day". Both replicators run side by
// side (each with its own versitygw, counting proxy and databases) with
// every compaction/retention interval divided by --scale, for 24h/scale of
// wall time under the usual load (1 commit/s/db). Then a few databases of
// each are restored to fixed timestamps (one near the start of the retained
// window, one in the middle of the run) and to the latest state, each
// restore through its own counting proxy, and verified against the
// writer's commit times.

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/s3server"
)

// histParams are the scaled intervals.
type histParams struct {
	scale                  float64
	duration               time.Duration // 24h/scale
	levels                 [3]time.Duration
	l0Retention            time.Duration
	l0RetentionCheck       time.Duration // Litestream only (its default 15s, scaled)
	snapInterval, snapKeep time.Duration
}

func newHistParams(scale float64) histParams {
	d := func(x time.Duration) time.Duration { return time.Duration(float64(x) / scale).Round(time.Millisecond) }
	return histParams{
		scale:            scale,
		duration:         d(24 * time.Hour),
		levels:           [3]time.Duration{d(30 * time.Second), d(5 * time.Minute), d(time.Hour)},
		l0Retention:      d(5 * time.Minute),
		l0RetentionCheck: d(15 * time.Second),
		snapInterval:     d(24 * time.Hour),
		snapKeep:         d(24 * time.Hour),
	}
}

type levelStat struct {
	objects int
	bytes   int64
}

type histPoint struct {
	at      time.Duration // since the writer started
	objects int
	bytes   int64
}

type histRestore struct {
	db     string
	label  string    // "early", "mid", "latest"
	target time.Time // zero: latest
	wall   time.Duration
	total  int64
	kinds  map[string]int64
	errs   map[int]int64
	err    string
	output string // the tool's stdout+stderr, trimmed

	rows, maxSeq int64
	lastAt       time.Time // commit start of the newest restored row
	integrity    string
	// writer's view of the target
	commitEndLE   int64 // rows whose commit returned at or before target (incl. the initial row)
	commitStartLE int64 // rows whose commit started at or before target
	srcRowsToSeq  int64 // source rows with seq <= restored max seq (prefix check)
	reportedAt    time.Time
	status        string // "exact", "behind N", "AHEAD N", "FAILED: ..."
	problem       bool
}

type histTool struct {
	name    string
	outDir  string
	work    string
	srv     *s3server.Server
	s3c     *s3.Client
	bucket  string
	proxy   *countingProxy
	dbs     []*database
	rep     *s3server.Process
	logPath string
	started time.Time

	failures, notes []string

	samples    []procSample
	res        resourceSummary
	cpuTotal   float64
	shutdown   time.Duration
	exitStatus string

	s3Total     int64
	s3Kinds     map[string]int64
	s3Errs      map[int]int64
	s3InBytes   int64
	s3OutBytes  int64
	s3OutByKind map[string]int64
	levels      map[int]levelStat
	objects     int
	objBytes    int64
	series      []histPoint
	windowStart time.Time // latest over the restored dbs of the earliest restorable point
	windowNote  string

	commits, writeErrs  int
	logErrors, logWarns int
	logLines            []string

	restores []*histRestore
}

func (t *histTool) fail(format string, a ...any) {
	t.failures = append(t.failures, fmt.Sprintf(format, a...))
}
func (t *histTool) note(format string, a ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, a...))
}

func runHistory(c *config, scale float64, restoreN int) bool {
	if len(c.dbs) != 1 {
		fatalf("--history takes a single --dbs count")
	}
	n := c.dbs[0]
	p := newHistParams(scale)
	if p.levels[0] < time.Millisecond {
		fatalf("--scale %v too large", scale)
	}
	stamp := time.Now().Format("20060102-150405")
	runDir := filepath.Join(c.outDir, "history-"+stamp)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		fatalf("%v", err)
	}
	report, err := os.Create(filepath.Join(runDir, "results.txt"))
	if err != nil {
		fatalf("%v", err)
	}
	defer report.Close()
	out := io.MultiWriter(os.Stdout, report)
	fmt.Fprintf(out, "walsync vs Litestream v0.5.18 - simulated day - %s\n", time.Now().Format(time.RFC3339))
	fmt.Fprintf(out, "scale 1/%g: %v of wall time = 24 h; L1 %v, L2 %v, L3 %v, L0 retention %v, snapshot interval %v, snapshot retention %v (Litestream l0-retention-check-interval %v)\n",
		scale, p.duration, p.levels[0], p.levels[1], p.levels[2], p.l0Retention, p.snapInterval, p.snapKeep, p.l0RetentionCheck)
	fmt.Fprintf(out, "%d dbs per tool, 1 commit/s/db (~1 KiB blob), sync interval 1 s (both defaults, not scaled); both tools run at the same time, each with its own versitygw on 127.0.0.1\n", n)
	fmt.Fprintf(out, "host: %d CPUs; logs and raw data in %s\n\n", numCPU(), runDir)

	ctx := context.Background()
	tools := map[string]*histTool{}
	for _, name := range c.tools {
		t := &histTool{name: name, outDir: filepath.Join(runDir, name)}
		_ = os.MkdirAll(t.outDir, 0o755)
		tools[name] = t
	}
	defer func() {
		for _, t := range tools {
			t.cleanup(c)
		}
	}()
	for _, name := range c.tools {
		t := tools[name]
		if err := t.setup(ctx, c, p, n); err != nil {
			t.fail("%v", err)
			logf("%s: setup failed: %v", name, err)
		}
	}

	// Run: writers of both tools at once.
	writerStart := time.Now()
	var wg sync.WaitGroup
	for _, name := range c.tools {
		t := tools[name]
		if len(t.failures) > 0 {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); t.run(ctx, c, p, writerStart) }()
	}
	wg.Wait()
	writerEnd := writerStart.Add(p.duration)

	// Restore targets, the same absolute times for both tools.
	var windowStart time.Time
	for _, name := range c.tools {
		t := tools[name]
		if len(t.failures) == 0 && t.windowStart.After(windowStart) {
			windowStart = t.windowStart
		}
	}
	mid := writerStart.Add(p.duration / 2)
	// Half a simulated hour into the retained window (or into the day, when
	// the window starts before the writer, with the initial row).
	early := windowStart
	if early.Before(writerStart) {
		early = writerStart
	}
	early = early.Add(p.duration / 48)
	if windowStart.IsZero() || !early.Before(mid) {
		early = time.Time{}
	}
	type target struct {
		label string
		at    time.Time
	}
	var targets []target
	if !early.IsZero() {
		targets = append(targets, target{"early", early})
	}
	targets = append(targets, target{"mid", mid}, target{"latest", time.Time{}})
	fmt.Fprintf(out, "writer ran %s .. %s; retained window starts %s (latest over tools and restored dbs)\n",
		writerStart.UTC().Format("15:04:05.000"), writerEnd.UTC().Format("15:04:05.000"), fmtT(windowStart, writerStart))
	for _, tg := range targets {
		if !tg.at.IsZero() {
			fmt.Fprintf(out, "restore target %-6s = %s (%s = simulated %s)\n", tg.label, tg.at.UTC().Format(time.RFC3339Nano),
				fmtT(tg.at, writerStart), simClock(tg.at.Sub(writerStart), scale))
		}
	}
	fmt.Fprintln(out)

	for _, name := range c.tools {
		t := tools[name]
		if len(t.failures) > 0 {
			continue
		}
		for _, i := range sampleIndexes(n, restoreN) {
			for _, tg := range targets {
				r := t.restore(ctx, c, t.dbs[i], tg.label, tg.at)
				t.restores = append(t.restores, r)
				logf("%s restore %s %s: %s (%v, %d requests)", name, t.dbs[i].name, tg.label, r.status, r.wall.Round(time.Millisecond), r.total)
			}
		}
	}

	printHistory(out, c.tools, tools, p, writerStart)
	for _, name := range c.tools {
		t := tools[name]
		t.writeRaw(filepath.Join(t.outDir, "raw.txt"), writerStart)
	}
	latest := filepath.Join(c.outDir, "history-latest.txt")
	_ = os.Remove(latest)
	report.Sync()
	if b, err := os.ReadFile(filepath.Join(runDir, "results.txt")); err == nil {
		_ = os.WriteFile(latest, b, 0o644)
	}
	fmt.Fprintf(os.Stdout, "\nwrote %s and %s\n", filepath.Join(runDir, "results.txt"), latest)
	ok := true
	for _, t := range tools {
		if len(t.failures) > 0 {
			ok = false
		}
	}
	return ok
}

func fmtT(t, start time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%+.1fs", t.Sub(start).Seconds())
}

// simClock shows a wall-clock offset as simulated time of day.
func simClock(d time.Duration, scale float64) string {
	s := time.Duration(float64(d) * scale).Round(time.Minute)
	sign := ""
	if s < 0 {
		sign, s = "-", -s
	}
	return fmt.Sprintf("%s%02d:%02d", sign, int(s.Hours()), int(s.Minutes())%60)
}

func (t *histTool) cleanup(c *config) {
	for _, d := range t.dbs {
		d.db.Close()
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
	if t.work != "" && !c.keep {
		os.RemoveAll(t.work)
	}
}

func (t *histTool) setup(ctx context.Context, c *config, p histParams, n int) error {
	var err error
	t.work, err = os.MkdirTemp(c.tmpDir, fmt.Sprintf("walsync-bench-history-%s-", t.name))
	if err != nil {
		return err
	}
	if c.keep {
		t.note("work dir kept: %s", t.work)
	}
	if t.srv, err = s3server.Start(s3server.Options{Bin: c.versitygw, Dir: filepath.Join(t.work, "s3")}); err != nil {
		return fmt.Errorf("versitygw: %w", err)
	}
	t.s3c = newS3Client(t.srv)
	t.bucket = fmt.Sprintf("bench-history-%s-%s", t.name, randomHex(3))
	if err := createBucket(ctx, t.s3c, t.bucket); err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	if t.proxy, err = startProxy(t.srv.Endpoint); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	// Every database "sampled": the writer then records every commit time.
	all := sampleIndexes(n, n)
	if t.dbs, err = createDatabases(filepath.Join(t.work, "db"), n, all); err != nil {
		return fmt.Errorf("creating databases: %w", err)
	}
	var cmd *exec.Cmd
	switch t.name {
	case "walsync":
		args := []string{"watch"}
		for _, d := range t.dbs {
			args = append(args, d.path)
		}
		args = append(args, "-b", "s3://"+t.bucket, "--endpoint", t.proxy.URL,
			"--levels", fmt.Sprintf("%v,%v,%v", p.levels[0], p.levels[1], p.levels[2]),
			"--l0-retention", p.l0Retention.String(),
			"--snapshot-interval", p.snapInterval.String(),
			"--snapshot-retention", p.snapKeep.String())
		_ = os.WriteFile(filepath.Join(t.outDir, "command.txt"), []byte("walsync "+strings.Join(args, " ")+"\n"), 0o644)
		cmd = exec.Command(c.walsync, args...)
	case "litestream":
		cfgPath := filepath.Join(t.work, "litestream.yml")
		cfg := litestreamHistoryConfig(t.dbs, t.bucket, t.proxy.URL, p)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return err
		}
		_ = os.WriteFile(filepath.Join(t.outDir, "litestream.yml"), []byte(cfg), 0o644)
		cmd = exec.Command(c.litestream, "replicate", "-config", cfgPath)
	}
	cmd.Env = childEnv(t.srv)
	cmd.Dir = t.work
	t.logPath = filepath.Join(t.outDir, t.name+".log")
	t.started = time.Now()
	if t.rep, err = s3server.StartProcess(cmd, t.logPath); err != nil {
		return fmt.Errorf("starting %s: %w", t.name, err)
	}
	warm := waitReplicated(ctx, t.s3c, t.bucket, t.dbs, 2*time.Second, 60*time.Second, t.rep)
	if t.rep.Exited() {
		return fmt.Errorf("%s exited during start-up (%v); log tail:\n%s", t.name, t.rep.Err(), s3server.Tail(t.logPath, 2000))
	}
	logf("%s: replicator up (pid %d), warm-up %v", t.name, t.rep.Pid(), warm.Round(10*time.Millisecond))
	return nil
}

func litestreamHistoryConfig(dbs []*database, bucket, endpoint string, p histParams) string {
	var b strings.Builder
	b.WriteString("# generated by walsync bench --history\n")
	b.WriteString("levels:\n")
	for _, l := range p.levels {
		fmt.Fprintf(&b, "  - interval: %s\n", l)
	}
	fmt.Fprintf(&b, "snapshot:\n  interval: %s\n  retention: %s\n", p.snapInterval, p.snapKeep)
	fmt.Fprintf(&b, "l0-retention: %s\nl0-retention-check-interval: %s\n", p.l0Retention, p.l0RetentionCheck)
	b.WriteString(strings.TrimPrefix(litestreamConfig(dbs, bucket, endpoint), "# generated by walsync bench\n"))
	return b.String()
}

func (t *histTool) run(ctx context.Context, c *config, p histParams, writerStart time.Time) {
	// Resource sampler and bucket series (once per simulated hour).
	var mu sync.Mutex
	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			if s, err := sampleProc(t.rep.Pid()); err == nil {
				s.at = time.Since(t.started)
				mu.Lock()
				t.samples = append(t.samples, s)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		hour := p.duration / 24
		for k := 1; ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Until(writerStart.Add(time.Duration(k) * hour))):
			}
			if objs, b, _, err := bucketStats(ctx, t.s3c, t.bucket); err == nil {
				mu.Lock()
				t.series = append(t.series, histPoint{at: time.Since(writerStart), objects: objs, bytes: b})
				mu.Unlock()
			}
		}
	}()

	wctx, cancel := context.WithDeadline(ctx, writerStart.Add(p.duration))
	if d := time.Until(writerStart); d > 0 {
		time.Sleep(d)
	}
	logf("%s: writing for %v", t.name, p.duration)
	runWriter(wctx, t.dbs)
	cancel()
	for _, d := range t.dbs {
		t.commits += d.commits
		t.writeErrs += len(d.writeErrs)
		for j, e := range d.writeErrs {
			if j < 3 {
				t.note("writer %s: %s", d.name, e)
			}
		}
	}
	if t.writeErrs > 0 {
		t.fail("%d writer commits failed", t.writeErrs)
	}
	logf("%s: writer stopped (%d commits); draining %v", t.name, t.commits, c.drain)
	time.Sleep(c.drain)
	if t.rep.Exited() {
		t.fail("%s died during the run (%v); log tail:\n%s", t.name, t.rep.Err(), s3server.Tail(t.logPath, 3000))
	}
	close(stop)
	<-done
	<-done
	t.res = summarize(t.samples)
	t.s3Total, t.s3Kinds, t.s3Errs = t.proxy.snapshot()
	t.s3InBytes, t.s3OutBytes = t.proxy.inB.Load(), t.proxy.outB.Load()

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
		if !st.Success() {
			t.fail("%s exited with %s after SIGTERM; log tail:\n%s", t.name, st, s3server.Tail(t.logPath, 2000))
		}
	}
	// Requests made while shutting down are added to the run's.
	total, kinds, errs := t.proxy.snapshot()
	if total != t.s3Total {
		t.note("%d S3 requests during shutdown (included): %v", total-t.s3Total, diffKinds(kinds, t.s3Kinds))
	}
	t.s3Total, t.s3Kinds, t.s3Errs = total, kinds, errs
	t.s3InBytes, t.s3OutBytes = t.proxy.inB.Load(), t.proxy.outB.Load()
	t.s3OutByKind = t.proxy.outBytesByKind()
	logf("%s: replicator stopped in %v (%s)", t.name, t.shutdown.Round(time.Millisecond), t.exitStatus)

	var err error
	if t.levels, t.objects, t.objBytes, err = levelStats(ctx, t.s3c, t.bucket, ""); err != nil {
		t.note("listing bucket: %v", err)
	}
	// Earliest restorable point per database: the oldest file that starts
	// at TXID 1 (a snapshot or a compacted file) - its header timestamp.
	for _, d := range t.dbs {
		ws, desc, err := earliestPoint(ctx, t.s3c, t.bucket, d.name+"/")
		if err != nil {
			t.note("window of %s: %v", d.name, err)
			continue
		}
		if ws.After(t.windowStart) {
			t.windowStart, t.windowNote = ws, d.name+": "+desc
		}
	}
	var rr runResult
	scanLog(&rr, t.logPath)
	t.logErrors, t.logWarns = rr.logErrors, rr.logWarns
	t.failures = append(t.failures, rr.failures...)
	t.logLines = rr.notes
}

func diffKinds(a, b map[string]int64) map[string]int64 {
	d := map[string]int64{}
	for k, v := range a {
		if v != b[k] {
			d[k] = v - b[k]
		}
	}
	return d
}

// levelOf returns the level of a key ".../NNNN/min-max.ltx" (walsync and
// Litestream v0.5 both name the level directory with four digits).
func levelOf(key string) int {
	dir := path.Base(path.Dir(key))
	l, err := strconv.Atoi(dir)
	if err != nil {
		return -1
	}
	return l
}

func levelStats(ctx context.Context, c *s3.Client, bucket, prefix string) (map[int]levelStat, int, int64, error) {
	levels := map[int]levelStat{}
	var objs int
	var bytes int64
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, 0, 0, err
		}
		for _, o := range out.Contents {
			l := levelOf(aws.ToString(o.Key))
			s := levels[l]
			s.objects++
			s.bytes += aws.ToInt64(o.Size)
			levels[l] = s
			objs++
			bytes += aws.ToInt64(o.Size)
		}
	}
	return levels, objs, bytes, nil
}

func earliestPoint(ctx context.Context, c *s3.Client, bucket, prefix string) (time.Time, string, error) {
	var best time.Time
	var desc string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return best, "", err
		}
		for _, o := range out.Contents {
			key := aws.ToString(o.Key)
			minTX, maxTX, err := ltx.ParseFilename(path.Base(key))
			if err != nil || minTX != 1 {
				continue
			}
			res, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Range: aws.String(fmt.Sprintf("bytes=0-%d", ltx.HeaderSize-1))})
			if err != nil {
				return best, "", err
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				return best, "", err
			}
			var h ltx.Header
			if err := h.UnmarshalBinary(b); err != nil {
				return best, "", fmt.Errorf("%s: %w", key, err)
			}
			ts := time.UnixMilli(h.Timestamp)
			if best.IsZero() || ts.Before(best) {
				best, desc = ts, fmt.Sprintf("L%d %s-%s", levelOf(key), minTX, maxTX)
			}
		}
	}
	if best.IsZero() {
		return best, "", fmt.Errorf("no file starting at TXID 1")
	}
	return best, desc, nil
}

var walsyncRestoredRE = regexp.MustCompile(`TXID \d+ \(([^)]+)\)`)

func (t *histTool) restore(ctx context.Context, c *config, d *database, label string, target time.Time) *histRestore {
	r := &histRestore{db: d.name, label: label, target: target}
	dir := filepath.Join(t.work, "restore")
	_ = os.MkdirAll(dir, 0o755)
	outPath := filepath.Join(dir, fmt.Sprintf("%s-%s.db", strings.ReplaceAll(d.name, "/", "-"), label))
	px, err := startProxy(t.srv.Endpoint)
	if err != nil {
		r.status, r.problem = "FAILED: proxy: "+err.Error(), true
		return r
	}
	var cmd *exec.Cmd
	ts := ""
	if !target.IsZero() {
		ts = target.UTC().Format(time.RFC3339Nano)
	}
	switch t.name {
	case "walsync":
		args := []string{"restore", d.name, "-o", outPath, "-b", "s3://" + t.bucket, "--endpoint", px.URL}
		if ts != "" {
			args = append(args, "--timestamp", ts)
		}
		cmd = exec.Command(c.walsync, args...)
	case "litestream":
		u := fmt.Sprintf("s3://%s/%s?endpoint=%s&s3server.Region=%s&forcePathStyle=true", t.bucket, d.name, px.URL, s3server.Region)
		args := []string{"restore", "-o", outPath}
		if ts != "" {
			args = append(args, "-timestamp", ts)
		}
		cmd = exec.Command(c.litestream, append(args, u)...)
	}
	cmd.Env = childEnv(t.srv)
	t0 := time.Now()
	outb, runErr := cmd.CombinedOutput()
	r.wall = time.Since(t0)
	px.close()
	r.total, r.kinds, r.errs = px.snapshot()
	r.output = strings.TrimSpace(string(outb))
	logPath := filepath.Join(t.outDir, "restore.log")
	if f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(f, "$ %s\n%s\n(exit: %v, %v, requests %v)\n\n", strings.Join(cmd.Args, " "), r.output, runErr, r.wall, r.kinds)
		f.Close()
	}
	if runErr != nil {
		r.status, r.problem = fmt.Sprintf("FAILED: %v: %s", runErr, lastLine(r.output)), true
		return r
	}
	if m := walsyncRestoredRE.FindStringSubmatch(r.output); m != nil {
		r.reportedAt, _ = time.Parse(time.RFC3339Nano, m[1])
	}

	// Inspect the restored database.
	db, err := sql.Open("sqlite3", "file:"+outPath+"?mode=ro")
	if err != nil {
		r.status, r.problem = "FAILED: open: "+err.Error(), true
		return r
	}
	defer db.Close()
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&r.integrity); err != nil {
		r.status, r.problem = "FAILED: integrity_check: "+err.Error(), true
		return r
	}
	var lastAt int64
	if err := db.QueryRow(`SELECT count(*), coalesce(max(seq), -1), coalesce(max(at), 0) FROM events`).Scan(&r.rows, &r.maxSeq, &lastAt); err != nil {
		r.status, r.problem = "FAILED: count: "+err.Error(), true
		return r
	}
	r.lastAt = time.Unix(0, lastAt)

	// The writer's view.
	if err := d.db.QueryRow(`SELECT count(*) FROM events WHERE seq <= ?`, r.maxSeq).Scan(&r.srcRowsToSeq); err != nil {
		r.status, r.problem = "FAILED: source: "+err.Error(), true
		return r
	}
	cut := target
	if cut.IsZero() {
		cut = time.Now()
	}
	if err := d.db.QueryRow(`SELECT count(*) FROM events WHERE at <= ?`, cut.UnixNano()).Scan(&r.commitStartLE); err != nil {
		r.status, r.problem = "FAILED: source: "+err.Error(), true
		return r
	}
	r.commitEndLE = 1 // the initial row, committed before the replicator started
	d.mu.Lock()
	for _, s := range d.all {
		if !s.committed.IsZero() && !s.committed.After(cut) {
			r.commitEndLE++
		}
	}
	d.mu.Unlock()

	switch {
	case r.integrity != "ok":
		r.status, r.problem = "FAILED: integrity_check: "+r.integrity, true
	case r.rows != r.srcRowsToSeq:
		r.status, r.problem = fmt.Sprintf("FAILED: %d rows up to seq %d, source has %d (not a prefix)", r.rows, r.maxSeq, r.srcRowsToSeq), true
	case r.rows > r.commitStartLE:
		r.status, r.problem = fmt.Sprintf("AHEAD %d (rows committed after T)", r.rows-r.commitStartLE), true
	case r.rows >= r.commitEndLE:
		r.status = "exact"
	default:
		r.status = fmt.Sprintf("behind %d", r.commitEndLE-r.rows)
		if target.IsZero() {
			r.problem = true
			r.status = fmt.Sprintf("MISSING %d (latest)", r.commitEndLE-r.rows)
		}
	}
	// walsync reports the time of the state it restored: check the rows
	// against it (commits that returned by then are in, none that started
	// after it is).
	if t.name == "walsync" && !r.reportedAt.IsZero() && !target.IsZero() && !r.problem {
		var inBy, startedBy int64 = 1, 0
		_ = d.db.QueryRow(`SELECT count(*) FROM events WHERE at <= ?`, r.reportedAt.Add(5*time.Millisecond).UnixNano()).Scan(&startedBy)
		d.mu.Lock()
		for _, s := range d.all {
			if !s.committed.IsZero() && !s.committed.After(r.reportedAt) {
				inBy++
			}
		}
		d.mu.Unlock()
		switch {
		case r.reportedAt.After(target):
			r.status, r.problem = fmt.Sprintf("%s; REPORTED TIME %s AFTER T", r.status, r.reportedAt.Format(time.RFC3339Nano)), true
		case r.rows < inBy || r.rows > startedBy:
			r.status, r.problem = fmt.Sprintf("%s; INCONSISTENT with reported time (rows %d, expected %d..%d)", r.status, r.rows, inBy, startedBy), true
		}
	}
	return r
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func (t *histTool) writeRaw(path string, writerStart time.Time) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "# %s history\n# t_s rss_kb fds threads cpu_s\n", t.name)
	for _, s := range t.samples {
		fmt.Fprintf(f, "%.1f %d %d %d %.2f\n", s.at.Seconds(), s.rssKB, s.fds, s.threads, s.cpu)
	}
	fmt.Fprintf(f, "# bucket once per simulated hour: t_s objects bytes\n")
	for _, s := range t.series {
		fmt.Fprintf(f, "%.1f %d %d\n", s.at.Seconds(), s.objects, s.bytes)
	}
	fmt.Fprintf(f, "# s3 requests by kind: %v, error statuses: %v\n", t.s3Kinds, t.s3Errs)
	fmt.Fprintf(f, "# restores\n")
	for _, r := range t.restores {
		fmt.Fprintf(f, "%s %s T=%s rows=%d committed_end<=T=%d committed_start<=T=%d last_row_at=%s reported=%s wall=%v requests=%v errs=%v status=%s\n",
			r.db, r.label, fmtT(r.target, writerStart), r.rows, r.commitEndLE, r.commitStartLE, fmtT(r.lastAt, writerStart),
			fmtT(r.reportedAt, writerStart), r.wall, r.kinds, r.errs, r.status)
	}
}

// --- report ---------------------------------------------------------------

func printHistory(w io.Writer, order []string, tools map[string]*histTool, p histParams, writerStart time.Time) {
	failed := func(name string) bool { t := tools[name]; return t == nil || len(t.failures) > 0 }
	type row struct {
		name  string
		vals  [2]float64
		text  [2]string
		prec  int
		ratio bool
	}
	var rows []row
	get := func(name string) *histTool { return tools[name] }
	add := func(name string, prec int, ratio bool, f func(t *histTool) float64) {
		r := row{name: name, prec: prec, ratio: ratio}
		for j, tn := range []string{"walsync", "litestream"} {
			t := get(tn)
			switch {
			case t == nil:
				r.text[j], r.vals[j] = "(not run)", math.NaN()
			case failed(tn):
				r.text[j], r.vals[j] = "FAILED", math.NaN()
			default:
				r.vals[j] = f(t)
			}
		}
		rows = append(rows, r)
	}
	addText := func(name string, f func(t *histTool) string) {
		r := row{name: name}
		for j, tn := range []string{"walsync", "litestream"} {
			if t := get(tn); t != nil && !failed(tn) {
				r.text[j] = f(t)
			} else if t == nil {
				r.text[j] = "(not run)"
			} else {
				r.text[j] = "FAILED"
			}
		}
		rows = append(rows, r)
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	kb := func(b int64) float64 { return float64(b) / 1024 }

	add("commits (all dbs)", 0, false, func(t *histTool) float64 { return float64(t.commits) })
	add("objects in bucket at end", 0, true, func(t *histTool) float64 { return float64(t.objects) })
	add("bucket size (MiB)", 2, true, func(t *histTool) float64 { return mib(t.objBytes) })
	levelSet := map[int]bool{}
	for _, t := range tools {
		for l := range t.levels {
			levelSet[l] = true
		}
	}
	var levels []int
	for l := range levelSet {
		levels = append(levels, l)
	}
	sort.Ints(levels)
	for _, l := range levels {
		name := fmt.Sprintf("L%d", l)
		if l < 0 {
			name = "other"
		}
		add("  "+name+" objects", 0, true, func(t *histTool) float64 { return float64(t.levels[l].objects) })
		add("  "+name+" KiB", 1, true, func(t *histTool) float64 { return kb(t.levels[l].bytes) })
	}
	for _, h := range []int{6, 12, 18} {
		add(fmt.Sprintf("objects at simulated %02d:00", h), 0, true, func(t *histTool) float64 {
			if len(t.series) >= h {
				return float64(t.series[h-1].objects)
			}
			return math.NaN()
		})
	}
	add("S3 requests during the day", 0, true, func(t *histTool) float64 { return float64(t.s3Total) })
	add("S3 requests/s", 1, true, func(t *histTool) float64 {
		return float64(t.s3Total) / (p.duration + t.shutdown).Seconds()
	})
	kinds := []string{"PUT", "GET", "LIST", "HEAD", "DELETE", "DELETE(multi)", "PUT(part)", "POST"}
	for _, k := range kinds {
		present := k == "PUT" || k == "GET" || k == "LIST"
		for _, t := range tools {
			if _, ok := t.s3Kinds[k]; ok {
				present = true
			}
		}
		if present {
			add("  "+k, 0, true, func(t *histTool) float64 { return float64(t.s3Kinds[k]) })
		}
	}
	add("  S3 error responses", 0, false, func(t *histTool) float64 {
		var n int64
		for _, v := range t.s3Errs {
			n += v
		}
		return float64(n)
	})
	add("uploaded (MiB)", 2, true, func(t *histTool) float64 { return mib(t.s3InBytes) })
	add("downloaded, all responses (MiB)", 2, true, func(t *histTool) float64 { return mib(t.s3OutBytes) })
	add("  GET bodies (MiB)", 2, true, func(t *histTool) float64 { return mib(t.s3OutByKind["GET"]) })
	add("  LIST responses (MiB)", 2, true, func(t *histTool) float64 { return mib(t.s3OutByKind["LIST"]) })
	add("RSS peak (MiB)", 1, true, func(t *histTool) float64 { return float64(t.res.rssPeakKB) / 1024 })
	add("RSS steady (MiB)", 1, true, func(t *histTool) float64 { return float64(t.res.rssSteadyKB) / 1024 })
	add("CPU s total (rusage)", 2, true, func(t *histTool) float64 { return t.cpuTotal })
	add("log ERROR lines", 0, false, func(t *histTool) float64 { return float64(t.logErrors) })
	add("log WARN lines", 0, false, func(t *histTool) float64 { return float64(t.logWarns) })
	addText("earliest restorable point (latest db)", func(t *histTool) string {
		return fmt.Sprintf("%s (sim %s)", fmtT(t.windowStart, writerStart), simClock(t.windowStart.Sub(writerStart), p.scale))
	})

	// Restores, aggregated per target.
	labels := []string{"early", "mid", "latest"}
	for _, lb := range labels {
		has := false
		for _, t := range tools {
			for _, r := range t.restores {
				has = has || r.label == lb
			}
		}
		if !has {
			continue
		}
		sel := func(t *histTool) []*histRestore {
			var rs []*histRestore
			for _, r := range t.restores {
				if r.label == lb {
					rs = append(rs, r)
				}
			}
			return rs
		}
		mean := func(t *histTool, f func(r *histRestore) float64) float64 {
			rs := sel(t)
			if len(rs) == 0 {
				return math.NaN()
			}
			var s float64
			for _, r := range rs {
				s += f(r)
			}
			return s / float64(len(rs))
		}
		pre := "restore " + lb
		addText(pre+": ok/verified", func(t *histTool) string {
			ok := 0
			for _, r := range sel(t) {
				if !r.problem {
					ok++
				}
			}
			return fmt.Sprintf("%d/%d", ok, len(sel(t)))
		})
		add(pre+": wall time mean (s)", 3, true, func(t *histTool) float64 { return mean(t, func(r *histRestore) float64 { return r.wall.Seconds() }) })
		add(pre+": S3 requests mean", 1, true, func(t *histTool) float64 { return mean(t, func(r *histRestore) float64 { return float64(r.total) }) })
		for _, k := range []string{"LIST", "GET", "HEAD"} {
			add(pre+":   "+k+" mean", 1, true, func(t *histTool) float64 { return mean(t, func(r *histRestore) float64 { return float64(r.kinds[k]) }) })
		}
		if lb != "latest" {
			add(pre+": rows behind T, mean", 1, true, func(t *histTool) float64 {
				return mean(t, func(r *histRestore) float64 { return float64(r.commitEndLE - r.rows) })
			})
			add(pre+": age of state at T, mean (s)", 2, true, func(t *histTool) float64 {
				return mean(t, func(r *histRestore) float64 {
					if r.lastAt.IsZero() {
						return math.NaN()
					}
					return r.target.Sub(r.lastAt).Seconds()
				})
			})
		}
	}

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
	fmt.Fprintln(w)

	// Per-restore detail.
	fmt.Fprintf(w, "restores (T relative to the writer's start; rows: restored / committed by T (commit returned) / started by T; last row = commit start of the newest restored row):\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "tool\tdb\ttarget\tT\trows\tby T\tstarted by T\tlast row\treported\twall\tLIST\tGET\tHEAD\ttotal\tresult\n")
	for _, tn := range order {
		t := tools[tn]
		if t == nil {
			continue
		}
		for _, r := range t.restores {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%.3fs\t%d\t%d\t%d\t%d\t%s\n", tn, r.db, r.label, fmtT(r.target, writerStart),
				r.rows, r.commitEndLE, r.commitStartLE, fmtT(r.lastAt, writerStart), fmtT(r.reportedAt, writerStart), r.wall.Seconds(),
				r.kinds["LIST"], r.kinds["GET"], r.kinds["HEAD"], r.total, r.status)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)

	for _, tn := range order {
		t := tools[tn]
		if t == nil {
			continue
		}
		if len(t.failures) > 0 {
			fmt.Fprintf(w, "%s FAILED:\n", tn)
			for _, f := range t.failures {
				fmt.Fprintf(w, "  - %s\n", indent(f))
			}
		}
		for _, s := range t.notes {
			fmt.Fprintf(w, "%s note: %s\n", tn, indent(s))
		}
		for _, s := range t.logLines {
			fmt.Fprintf(w, "%s %s\n", tn, indent(s))
		}
		fmt.Fprintf(w, "%s: S3 requests by kind %v, error statuses %v; earliest point from %s; bucket objects per simulated hour %v; exit %s\n",
			tn, t.s3Kinds, t.s3Errs, t.windowNote, seriesString(t.series), t.exitStatus)
	}
	fmt.Fprintln(w)
}

func seriesString(ps []histPoint) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, strconv.Itoa(p.objects))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
