// Command bench compares walsync with Litestream replicating N SQLite
// databases to a local versitygw S3 server: replication lag, the
// replicator's memory, file descriptors, threads, CPU and S3 requests, and
// it verifies every run by restoring with walsync. Run it through run.sh.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walsync/walsync/internal/s3server"
)

type config struct {
	dbs        []int
	duration   time.Duration
	tools      []string
	walsync    string
	litestream string
	versitygw  string
	outDir     string
	tmpDir     string
	sampleMax  int
	drain      time.Duration
	probeEvery time.Duration
	keep       bool
}

func main() {
	var c config
	var dbs, tools string
	flag.StringVar(&dbs, "dbs", "1,10,100", "comma-separated database counts")
	flag.DurationVar(&c.duration, "duration", 60*time.Second, "workload duration per run")
	flag.StringVar(&tools, "tools", "walsync,litestream", "replicators to run")
	flag.StringVar(&c.walsync, "walsync", "", "walsync binary")
	flag.StringVar(&c.litestream, "litestream", "", "litestream binary")
	flag.StringVar(&c.versitygw, "versitygw", "", "versitygw binary")
	flag.StringVar(&c.outDir, "out", "out", "output directory")
	flag.StringVar(&c.tmpDir, "tmp", os.TempDir(), "parent of the per-run temporary directories")
	flag.IntVar(&c.sampleMax, "sample", 10, "databases probed for lag and restored (all when N is at most this)")
	flag.DurationVar(&c.drain, "drain", 5*time.Second, "wait between stopping the writer and stopping the replicator")
	flag.DurationVar(&c.probeEvery, "probe-interval", 50*time.Millisecond, "L0 listing interval of the lag probe")
	flag.BoolVar(&c.keep, "keep", false, "keep the per-run temporary directories")
	history := flag.Bool("history", false, "simulated day: both tools side by side with intervals divided by --scale, then timestamp restores (see history.go)")
	scale := flag.Float64("scale", 60, "--history: divide 24 h and every compaction/retention interval by this")
	restoreDBs := flag.Int("restore-dbs", 3, "--history: databases per tool restored to each target")
	scaleMode := flag.Bool("scale-mode", false, "issue 4's scale cases, both tools side by side (see scale.go; run.sh --scale)")
	var so scaleOpts
	cases := flag.String("cases", "10x100%,1000x10%,10000x1%,idle1000", "--scale-mode: NxP% (N DBs, P% writing) or idleN, comma-separated")
	replicas := flag.String("replica", "both", "--scale-mode: s3, file or both")
	flag.DurationVar(&so.idle, "idle", 10*time.Minute, "--scale-mode: length of the idle window of idleN cases")
	flag.DurationVar(&so.settle, "settle", 30*time.Second, "--scale-mode: idle cases wait this long after start-up before counting")
	flag.DurationVar(&so.startTimeout, "start-timeout", 3*time.Minute, "--scale-mode: longest wait for the watch sample after start")
	flag.DurationVar(&so.statusEvery, "status-interval", 5*time.Second, "--scale-mode: how often walsync's /status and Litestream's /metrics are read")
	flag.IntVar(&so.watchSample, "watch-sample", 20, "--scale-mode: databases written right after start to time 'all watched'")
	flag.IntVar(&so.restoreExtra, "restore-extra", 10, "--scale-mode: untouched databases restored besides the probed ones")
	flag.StringVar(&so.walsyncDir, "walsync-dir", "auto", "--scale-mode: run walsync with --dir (yes, no, auto: when watch -h lists it)")
	memory := flag.Bool("memory", false, "peak RSS of snapshot, restore, verify, compaction and watch's first snapshot on one large database (see memory.go; run.sh --memory)")
	memSize := flag.String("size", "small", "--memory: small (200 MB) or full (784 MB of 512-byte pages and 4 GiB of 4 KiB pages)")
	flag.Parse()
	if *scaleMode {
		var err error
		if so.cases, err = parseScaleCases(*cases); err != nil {
			fatalf("--cases: %v", err)
		}
		switch *replicas {
		case "s3", "file":
			so.replicas = []string{*replicas}
		case "both":
			so.replicas = []string{"s3", "file"}
		default:
			fatalf("--replica: want s3, file or both")
		}
		if so.walsyncDir != "auto" && so.walsyncDir != "yes" && so.walsyncDir != "no" {
			fatalf("--walsync-dir: want auto, yes or no")
		}
		probeSet := false
		flag.Visit(func(f *flag.Flag) { probeSet = probeSet || f.Name == "probe-interval" })
		if !probeSet {
			c.probeEvery = 100 * time.Millisecond
		}
	}
	for _, s := range strings.Split(dbs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatalf("invalid --dbs entry %q", s)
		}
		c.dbs = append(c.dbs, n)
	}
	for _, t := range strings.Split(tools, ",") {
		t = strings.TrimSpace(t)
		if t != "walsync" && t != "litestream" {
			fatalf("unknown tool %q", t)
		}
		c.tools = append(c.tools, t)
	}
	if c.walsync == "" || c.versitygw == "" || (c.litestream == "" && contains(c.tools, "litestream")) {
		fatalf("--walsync, --versitygw and --litestream are required")
	}
	if *memory {
		if !runMemory(&c, *memSize) {
			os.Exit(1)
		}
		return
	}
	if *scaleMode {
		if !runScale(&c, &so) {
			os.Exit(1)
		}
		return
	}
	if *history {
		if *scale <= 0 {
			fatalf("--scale must be positive")
		}
		if !runHistory(&c, *scale, *restoreDBs) {
			os.Exit(1)
		}
		return
	}
	stamp := time.Now().Format("20060102-150405")
	runDir := filepath.Join(c.outDir, stamp)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		fatalf("%v", err)
	}
	report, err := os.Create(filepath.Join(runDir, "results.txt"))
	if err != nil {
		fatalf("%v", err)
	}
	defer report.Close()
	out := io.MultiWriter(os.Stdout, report)
	fmt.Fprintf(out, "walsync vs Litestream v0.5.18 - %s - dbs %v, %v per run, 1 commit/s/db (~1 KiB blob), versitygw on 127.0.0.1\n",
		time.Now().Format(time.RFC3339), c.dbs, c.duration)
	fmt.Fprintf(out, "host: %d CPUs; logs and raw data in %s\n\n", numCPU(), runDir)

	anyFailed := false
	for _, n := range c.dbs {
		results := map[string]*runResult{}
		for _, tool := range c.tools {
			logf("=== %s, N=%d: starting", tool, n)
			dir := filepath.Join(runDir, fmt.Sprintf("%s-n%d", tool, n))
			_ = os.MkdirAll(dir, 0o755)
			r := runOne(&c, tool, n, dir)
			results[tool] = r
			if len(r.failures) > 0 {
				anyFailed = true
				logf("=== %s, N=%d: FAILED: %s", tool, n, strings.Join(r.failures, "; "))
			} else {
				logf("=== %s, N=%d: ok", tool, n)
			}
			time.Sleep(time.Second)
		}
		printTable(out, n, c.tools, results)
	}
	latest := filepath.Join(c.outDir, "latest.txt")
	_ = os.Remove(latest)
	if b, err := os.ReadFile(filepath.Join(runDir, "results.txt")); err == nil {
		_ = os.WriteFile(latest, b, 0o644)
	}
	fmt.Fprintf(os.Stdout, "\nwrote %s and %s\n", filepath.Join(runDir, "results.txt"), latest)
	if anyFailed {
		os.Exit(1)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "\nprocessor") + map[bool]int{true: 1}[strings.HasPrefix(string(b), "processor")]
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
	os.Exit(2)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

// runResult is everything one run measured.
type runResult struct {
	tool     string
	n        int
	failures []string
	notes    []string

	lags      []time.Duration
	unseen    int
	probed    int
	commits   int
	writeErrs int
	commitLat []time.Duration

	res        resourceSummary
	cpuTotal   float64
	maxRSSKB   int64 // getrusage
	shutdown   time.Duration
	exitStatus string

	s3Total    int64
	s3Kinds    map[string]int64
	s3Errs     map[int]int64
	s3InBytes  int64
	s3OutBytes int64
	objects    int
	objBytes   int64
	perLevel   map[string]int

	restored    int
	restoreOK   int
	restoreTime time.Duration // mean

	logErrors, logWarns int
}

func (r *runResult) fail(format string, a ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, a...))
}

func (r *runResult) note(format string, a ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, a...))
}

func sampleIndexes(n, max int) []int {
	if n <= max {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	idx := make([]int, max)
	for i := range idx {
		idx[i] = i * n / max
	}
	return idx
}

// childEnv is our environment without any AWS/Litestream/proxy settings,
// plus the server's credentials.
func childEnv(s *s3server.Server) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "AWS_"), strings.HasPrefix(k, "LITESTREAM_"),
			strings.EqualFold(k, "HTTP_PROXY"), strings.EqualFold(k, "HTTPS_PROXY"),
			strings.EqualFold(k, "ALL_PROXY"), strings.EqualFold(k, "NO_PROXY"):
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"AWS_ACCESS_KEY_ID="+s.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+s.SecretKey,
		"AWS_REGION="+s3server.Region,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	)
}

func litestreamConfig(dbs []*database, bucket, endpoint string) string {
	var b strings.Builder
	b.WriteString("# generated by walsync bench\ndbs:\n")
	for _, d := range dbs {
		fmt.Fprintf(&b, "  - path: %q\n", d.path)
		b.WriteString("    replica:\n")
		b.WriteString("      type: s3\n")
		fmt.Fprintf(&b, "      bucket: %q\n", bucket)
		fmt.Fprintf(&b, "      path: %q\n", d.name)
		fmt.Fprintf(&b, "      endpoint: %q\n", endpoint)
		fmt.Fprintf(&b, "      s3server.Region: %q\n", s3server.Region)
		b.WriteString("      force-path-style: true\n")
	}
	return b.String()
}

func runOne(c *config, tool string, n int, outDir string) (r *runResult) {
	r = &runResult{tool: tool, n: n}
	ctx := context.Background()

	work, err := os.MkdirTemp(c.tmpDir, fmt.Sprintf("walsync-bench-%s-n%d-", tool, n))
	if err != nil {
		r.fail("temp dir: %v", err)
		return r
	}
	if !c.keep {
		defer os.RemoveAll(work)
	} else {
		r.note("work dir kept: %s", work)
	}

	// S3 server, counting proxy, bucket.
	srv, err := s3server.Start(s3server.Options{Bin: c.versitygw, Dir: filepath.Join(work, "s3")})
	if err != nil {
		r.fail("versitygw: %v", err)
		return r
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			r.note("versitygw stop: %v", err)
		}
		copyFile(srv.LogFile, filepath.Join(outDir, "versitygw.log"))
	}()
	s3c := newS3Client(srv)
	bucket := fmt.Sprintf("bench-%s-n%d-%s", tool, n, randomHex(3))
	if err := createBucket(ctx, s3c, bucket); err != nil {
		r.fail("create bucket: %v", err)
		return r
	}
	proxy, err := startProxy(srv.Endpoint)
	if err != nil {
		r.fail("proxy: %v", err)
		return r
	}
	defer proxy.close()

	// Databases and writer connections.
	sample := sampleIndexes(n, c.sampleMax)
	dbs, err := createDatabases(filepath.Join(work, "db"), n, sample)
	if err != nil {
		r.fail("creating databases: %v", err)
		return r
	}
	defer func() {
		for _, d := range dbs {
			d.db.Close()
		}
	}()

	// Replicator.
	var cmd *exec.Cmd
	switch tool {
	case "walsync":
		args := []string{"watch"}
		for _, d := range dbs {
			args = append(args, d.path)
		}
		args = append(args, "-b", "s3://"+bucket, "--endpoint", proxy.URL)
		cmd = exec.Command(c.walsync, args...)
	case "litestream":
		cfgPath := filepath.Join(work, "litestream.yml")
		cfg := litestreamConfig(dbs, bucket, proxy.URL)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			r.fail("%v", err)
			return r
		}
		_ = os.WriteFile(filepath.Join(outDir, "litestream.yml"), []byte(cfg), 0o644)
		cmd = exec.Command(c.litestream, "replicate", "-config", cfgPath)
	}
	cmd.Env = childEnv(srv)
	cmd.Dir = work
	logPath := filepath.Join(outDir, tool+".log")
	_ = os.Remove(logPath)
	started := time.Now()
	rep, err := s3server.StartProcess(cmd, logPath)
	if err != nil {
		r.fail("starting %s: %v", tool, err)
		return r
	}
	stopped := false
	defer func() {
		if !stopped {
			rep.Stop(10 * time.Second)
		}
	}()

	// Resource sampler: every second until stopSampling is closed.
	var samples []procSample
	var sampleMu sync.Mutex
	stopSampling := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			s, err := sampleProc(rep.Pid())
			if err == nil {
				s.at = time.Since(started)
				sampleMu.Lock()
				samples = append(samples, s)
				sampleMu.Unlock()
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()

	// Warm-up: wait until every sampled database has something in the
	// replica (its first sync), at least 2 s, at most 60 s.
	warm := waitReplicated(ctx, s3c, bucket, dbs, 2*time.Second, 60*time.Second, rep)
	logf("%s N=%d: replicator up (pid %d), warm-up %v", tool, n, rep.Pid(), warm.Round(10*time.Millisecond))
	if rep.Exited() {
		r.fail("%s exited during start-up (%v); log tail:\n%s", tool, rep.Err(), s3server.Tail(logPath, 2000))
		return r
	}

	// Probe from before the first commit to after the replicator stopped.
	probeCtx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	// Skip what is already in L0 (the initial state, which has no sentinel).
	for _, d := range dbs {
		if d.sampled {
			probeOnce(ctx, s3c, bucket, d)
		}
	}
	go func() { defer close(probeDone); runProbe(probeCtx, s3c, bucket, dbs, c.probeEvery) }()

	// Workload.
	wctx, stopWriter := context.WithTimeout(ctx, c.duration)
	logf("%s N=%d: writing for %v", tool, n, c.duration)
	runWriter(wctx, dbs)
	stopWriter()
	srcCount := make([]int64, n)
	srcMaxSeq := make([]int64, n)
	for i, d := range dbs {
		if err := d.db.QueryRow(`SELECT count(*), max(seq) FROM events`).Scan(&srcCount[i], &srcMaxSeq[i]); err != nil {
			r.fail("counting source %s: %v", d.name, err)
		}
		r.commits += d.commits
		r.writeErrs += len(d.writeErrs)
		r.commitLat = append(r.commitLat, d.commitLat...)
		for j, e := range d.writeErrs {
			if j < 3 {
				r.note("writer %s: %s", d.name, e)
			}
		}
	}
	if r.writeErrs > 0 {
		r.fail("%d writer commits failed", r.writeErrs)
	}
	expected := int(c.duration/time.Second) * n
	if r.commits < expected*9/10 {
		r.note("writer committed %d transactions, expected about %d", r.commits, expected)
	}

	logf("%s N=%d: writer stopped (%d commits); draining %v", tool, n, r.commits, c.drain)
	time.Sleep(c.drain)
	if rep.Exited() {
		r.fail("%s died during the run (%v); log tail:\n%s", tool, rep.Err(), s3server.Tail(logPath, 3000))
	}
	close(stopSampling)
	<-samplerDone
	r.res = summarize(samples)

	// Stop the replicator.
	t0 := time.Now()
	alone := rep.Stop(60 * time.Second)
	r.shutdown = time.Since(t0)
	stopped = true
	if !alone {
		r.fail("%s did not exit within 60 s of SIGTERM (killed)", tool)
	}
	if st := rep.State(); st != nil {
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			r.cpuTotal = tv(ru.Utime) + tv(ru.Stime)
			r.maxRSSKB = ru.Maxrss
		}
		r.exitStatus = st.String()
		if !st.Success() {
			r.fail("%s exited with %s after SIGTERM; log tail:\n%s", tool, st, s3server.Tail(logPath, 2000))
		}
	}
	logf("%s N=%d: replicator stopped in %v (%s)", tool, n, r.shutdown.Round(time.Millisecond), r.exitStatus)

	// Last probe pass, then collect lags.
	time.Sleep(200 * time.Millisecond)
	stopProbe()
	<-probeDone
	for _, d := range dbs {
		if d.sampled {
			probeOnce(ctx, s3c, bucket, d)
		}
	}
	var outliers []string
	for _, d := range dbs {
		if !d.sampled {
			continue
		}
		r.probed++
		d.mu.Lock()
		for _, s := range d.all {
			if s.committed.IsZero() {
				continue
			}
			if s.seenAt.IsZero() {
				r.unseen++
				continue
			}
			lag := max(s.seenAt.Sub(s.committed), 0)
			r.lags = append(r.lags, lag)
			if lag > 3*time.Second && len(outliers) < 10 {
				outliers = append(outliers, fmt.Sprintf("%s %s committed at +%.1fs: %v", d.name, s.value, s.committed.Sub(started).Seconds(), lag.Round(time.Millisecond)))
			}
		}
		for j, e := range d.probeErrs {
			if j < 3 {
				r.note("probe %s: %s", d.name, e)
			}
		}
		d.mu.Unlock()
	}
	for _, o := range outliers {
		r.note("lag outlier: %s", o)
	}
	if r.unseen > 0 {
		r.note("%d committed sentinels never appeared in an L0 object of the probed databases", r.unseen)
	}

	// S3 traffic.
	r.s3Total, r.s3Kinds, r.s3Errs = proxy.snapshot()
	r.s3InBytes, r.s3OutBytes = proxy.inB.Load(), proxy.outB.Load()
	if objs, b, pl, err := bucketStats(ctx, s3c, bucket); err == nil {
		r.objects, r.objBytes, r.perLevel = objs, b, pl
	} else {
		r.note("listing bucket: %v", err)
	}

	// Replicator log.
	scanLog(r, logPath)

	// Restore and verify.
	restoreDir := filepath.Join(work, "restore")
	_ = os.MkdirAll(restoreDir, 0o755)
	var restoreTotal time.Duration
	for _, i := range sample {
		d := dbs[i]
		r.restored++
		outPath := filepath.Join(restoreDir, strings.ReplaceAll(d.name, "/", "-")+".db")
		rc := exec.Command(c.walsync, "restore", d.name, "-o", outPath, "-b", "s3://"+bucket, "--endpoint", srv.Endpoint)
		rc.Env = childEnv(srv)
		t0 := time.Now()
		outb, err := rc.CombinedOutput()
		restoreTotal += time.Since(t0)
		if err != nil {
			r.fail("walsync restore %s: %v: %s", d.name, err, strings.TrimSpace(string(outb)))
			continue
		}
		cnt, maxSeq, integ, err := inspect(outPath)
		if err != nil {
			r.fail("restored %s: %v", d.name, err)
			continue
		}
		if integ != "ok" {
			r.fail("restored %s: integrity_check: %s", d.name, integ)
			continue
		}
		if cnt != srcCount[i] || maxSeq != srcMaxSeq[i] {
			r.fail("restored %s: %d rows (max seq %d), source has %d rows (max seq %d)", d.name, cnt, maxSeq, srcCount[i], srcMaxSeq[i])
			continue
		}
		r.restoreOK++
	}
	if r.restored > 0 {
		r.restoreTime = restoreTotal / time.Duration(r.restored)
	}
	logf("%s N=%d: restores verified %d/%d", tool, n, r.restoreOK, r.restored)
	writeRaw(r, filepath.Join(outDir, "raw.txt"), samples)
	return r
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// waitReplicated waits until every sampled database has at least one object
// under its replica path.
func waitReplicated(ctx context.Context, c *s3.Client, bucket string, dbs []*database, minWait, maxWait time.Duration, p *s3server.Process) time.Duration {
	start := time.Now()
	ready := map[int]bool{}
	for time.Since(start) < maxWait && !p.Exited() {
		all := true
		for _, d := range dbs {
			if !d.sampled || ready[d.idx] {
				continue
			}
			objs, _, _, err := bucketStatsPrefix(ctx, c, bucket, d.name+"/")
			if err == nil && objs > 0 {
				ready[d.idx] = true
			} else {
				all = false
			}
		}
		if all && time.Since(start) >= minWait {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

func inspect(path string) (count, maxSeq int64, integrity string, err error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, 0, "", err
	}
	defer db.Close()
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&integrity); err != nil {
		return 0, 0, "", fmt.Errorf("integrity_check: %w", err)
	}
	if err := db.QueryRow(`SELECT count(*), max(seq) FROM events`).Scan(&count, &maxSeq); err != nil {
		return 0, 0, integrity, fmt.Errorf("count: %w", err)
	}
	return count, maxSeq, integrity, nil
}

func scanLog(r *runResult, path string) {
	f, err := os.Open(path)
	if err != nil {
		r.note("reading log: %v", err)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	shown := 0
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "level=ERROR"):
			r.logErrors++
		case strings.Contains(line, "level=WARN"):
			r.logWarns++
		case strings.HasPrefix(line, "panic:"), strings.HasPrefix(line, "fatal error:"):
			r.fail("replicator crashed: %s", line)
		default:
			continue
		}
		if shown < 5 {
			shown++
			if len(line) > 400 {
				line = line[:400] + "..."
			}
			r.note("log: %s", line)
		}
	}
}

func copyFile(src, dst string) {
	b, err := os.ReadFile(src)
	if err == nil {
		_ = os.WriteFile(dst, b, 0o644)
	}
}

func writeRaw(r *runResult, path string, samples []procSample) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "# %s N=%d\n# t_s rss_kb fds threads cpu_s\n", r.tool, r.n)
	for _, s := range samples {
		fmt.Fprintf(f, "%.1f %d %d %d %.2f\n", s.at.Seconds(), s.rssKB, s.fds, s.threads, s.cpu)
	}
	lags := append([]time.Duration(nil), r.lags...)
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	fmt.Fprintf(f, "# lags_ms (sorted)\n")
	for _, l := range lags {
		fmt.Fprintf(f, "%.1f\n", float64(l.Microseconds())/1000)
	}
	fmt.Fprintf(f, "# s3 requests by kind: %v, error statuses: %v, objects per level dir: %v\n", r.s3Kinds, r.s3Errs, r.perLevel)
}
