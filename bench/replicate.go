package main

// The default mode: for each N of --dbs and each tool in turn, N
// databases written at 1 commit/s for --duration, replicated to a local
// versitygw through a counting proxy; the lag is probed on a sample of
// them, which is restored with walsync and checked at the end.

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// runResult is everything one run measured.
type runResult struct {
	toolRun
	n int

	lagStats
	commits   int
	writeErrs int
	commitLat []time.Duration

	samples []procSample
	res     resourceSummary

	req      reqSnap
	objects  int
	objBytes int64
	perLevel map[string]int

	restored    int
	restoreOK   int
	restoreTime time.Duration // mean
}

func runReplicate(c *config) bool {
	rep := newRunReport(c.outDir, "")
	fmt.Fprintf(rep, "walsync vs Litestream v0.5.18 - %s - dbs %v, %v per run, 1 commit/s/db (~1 KiB blob), versitygw on 127.0.0.1\n",
		time.Now().Format(time.RFC3339), c.dbs, c.duration)
	fmt.Fprintf(rep, "host: %d CPUs; logs and raw data in %s\n\n", numCPU(), rep.dir)

	ok := true
	for _, n := range c.dbs {
		results := map[string]*runResult{}
		for _, tool := range c.tools {
			logf("=== %s, N=%d: starting", tool, n)
			r := &runResult{toolRun: toolRun{name: tool, outDir: filepath.Join(rep.dir, fmt.Sprintf("%s-n%d", tool, n))}, n: n}
			_ = os.MkdirAll(r.outDir, 0o755)
			r.run(c)
			results[tool] = r
			if len(r.failures) > 0 {
				ok = false
				logf("=== %s, N=%d: FAILED: %s", tool, n, strings.Join(r.failures, "; "))
			} else {
				logf("=== %s, N=%d: ok", tool, n)
			}
			time.Sleep(time.Second)
		}
		printReplicate(rep, n, c.tools, results)
	}
	rep.finish(c.outDir, "latest.txt")
	return ok
}

func (r *runResult) run(c *config) {
	ctx := context.Background()
	tool, n := r.name, r.n
	if err := r.makeWork(c, fmt.Sprintf("walsync-bench-%s-n%d-", tool, n)); err != nil {
		r.fail("%v", err)
		return
	}
	defer r.removeWork(c)

	// S3 server, bucket, counting proxy.
	s3s, err := startS3Side(ctx, c, r.work, fmt.Sprintf("bench-%s-n%d-%s", tool, n, randomHex(3)))
	if err != nil {
		r.fail("%v", err)
		return
	}
	defer func() {
		if err := s3s.close(r.outDir); err != nil {
			r.note("versitygw stop: %v", err)
		}
	}()
	view := s3View{s3s.c, s3s.bucket}

	// Databases and writer connections.
	sample := sampleIndexes(n, c.sampleMax)
	dbs, err := createDatabases(filepath.Join(r.work, "db"), n, sample)
	defer closeDatabases(dbs)
	if err != nil {
		r.fail("creating databases: %v", err)
		return
	}
	var probed []*database
	for _, i := range sample {
		probed = append(probed, dbs[i])
	}

	// Replicator.
	var paths []string
	var lsDBs []lsDB
	for _, d := range dbs {
		paths = append(paths, d.path)
		lsDBs = append(lsDBs, lsDB{path: d.path, replica: s3s.loc(s3s.proxy.URL, d.name)})
	}
	cmd, err := r.replicatorCmd(c, append(append([]string{"watch"}, paths...), "-b", "s3://"+s3s.bucket, "--endpoint", s3s.proxy.URL),
		litestreamYAML("", "", lsDBs))
	if err == nil {
		cmd.Env = childEnv(s3s.srv)
		cmd.Dir = r.work
		err = r.start(cmd)
	}
	if err != nil {
		r.fail("%v", err)
		return
	}
	defer r.kill()
	smp := startSampler(r.rep.Pid(), r.started, nil)

	warm := s3s.waitReplicated(ctx, probed, 2*time.Second, 60*time.Second, r.rep.Exited)
	logf("%s N=%d: replicator up (pid %d), warm-up %v", tool, n, r.rep.Pid(), warm.Round(10*time.Millisecond))
	if msg := r.exitedEarly("exited during start-up", 2000); msg != "" {
		r.fail("%s", msg)
		smp.stop()
		return
	}

	// Probe from before the first commit to after the replicator stopped,
	// skipping what is in L0 already (the initial state, no sentinel).
	for _, d := range probed {
		probeL0(ctx, view, d)
	}
	probeCtx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	go func() { defer close(probeDone); runProbe(probeCtx, view, probed, c.probeEvery) }()

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
	}
	r.commits, r.writeErrs, r.commitLat = r.collectWriters(dbs)
	if expected := int(c.duration/time.Second) * n; r.commits < expected*9/10 {
		r.note("writer committed %d transactions, expected about %d", r.commits, expected)
	}

	logf("%s N=%d: writer stopped (%d commits); draining %v", tool, n, r.commits, c.drain)
	time.Sleep(c.drain)
	r.failIfDied("the run")
	r.samples = smp.stop()
	r.res = summarizeRun(r.samples)
	r.stop()
	logf("%s N=%d: replicator stopped in %v (%s)", tool, n, r.shutdown.Round(time.Millisecond), r.exitStatus)

	// Last probe pass, then collect lags.
	time.Sleep(200 * time.Millisecond)
	stopProbe()
	<-probeDone
	for _, d := range probed {
		probeL0(ctx, view, d)
	}
	r.lagStats = r.collectLags(probed, 10, 3)
	if r.unseen > 0 {
		r.note("%d committed sentinels never appeared in an L0 object of the probed databases", r.unseen)
	}

	r.req = s3s.proxy.snapshot()
	if objs, b, levels, err := bucketStats(ctx, s3s.c, s3s.bucket, ""); err == nil {
		r.objects, r.objBytes, r.perLevel = objs, b, levelCounts(levels)
	} else {
		r.note("listing bucket: %v", err)
	}
	r.scanLog()

	// Restore with walsync and check against the source.
	restoreDir := filepath.Join(r.work, "restore")
	_ = os.MkdirAll(restoreDir, 0o755)
	var restoreTotal time.Duration
	for _, i := range sample {
		d := dbs[i]
		r.restored++
		out := filepath.Join(restoreDir, strings.ReplaceAll(d.name, "/", "-")+".db")
		cmd := restoreCmd(c, "walsync", s3s.loc(s3s.srv.Endpoint, ""), d.name, out, time.Time{})
		_, took, err := runRestore(cmd, childEnv(s3s.srv), nil)
		restoreTotal += took
		if err != nil {
			r.fail("walsync restore %s: %v", d.name, err)
			continue
		}
		if msg := checkRestoredRows(out, srcCount[i], srcMaxSeq[i]); msg != "" {
			r.fail("restored %s: %s", d.name, msg)
			continue
		}
		r.restoreOK++
	}
	if r.restored > 0 {
		r.restoreTime = restoreTotal / time.Duration(r.restored)
	}
	logf("%s N=%d: restores verified %d/%d", tool, n, r.restoreOK, r.restored)
	r.writeRaw(filepath.Join(r.outDir, "raw.txt"))
}

// checkRestoredRows checks a restored database's integrity and its rows
// against the source's count and largest seq; "" when they match.
func checkRestoredRows(path string, count, maxSeq int64) string {
	got, err := readRestored(path)
	if err != nil {
		return err.Error()
	}
	if got.rows != count || got.maxSeq != maxSeq {
		return fmt.Sprintf("%d rows (max seq %d), source has %d rows (max seq %d)", got.rows, got.maxSeq, count, maxSeq)
	}
	return ""
}

func (r *runResult) writeRaw(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "# %s N=%d\n", r.name, r.n)
	writeSamples(f, r.samples)
	lags := append([]time.Duration(nil), r.lags...)
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	fmt.Fprintf(f, "# lags_ms (sorted)\n")
	for _, l := range lags {
		fmt.Fprintf(f, "%.1f\n", float64(l.Microseconds())/1000)
	}
	fmt.Fprintf(f, "# s3 requests by kind: %v, error statuses: %v, objects per level dir: %v\n", r.req.kinds, r.req.errs, r.perLevel)
}

func printReplicate(w io.Writer, n int, tools []string, results map[string]*runResult) {
	fmt.Fprintf(w, "N = %d database(s)\n", n)
	tb := newTable(results, failedState[*runResult])
	type rr = *runResult
	tb.add("lag p50 (ms)", 0, true, func(r rr) float64 { return pct(r.lags, 50) })
	tb.add("lag p99 (ms)", 0, true, func(r rr) float64 { return pct(r.lags, 99) })
	tb.add("lag max (ms)", 0, true, func(r rr) float64 { return maxDur(r.lags) })
	tb.addText("lag samples (dbs probed)", false, func(r rr) string { return fmt.Sprintf("%d (%d)", len(r.lags), r.probed) })
	tb.add("sentinels never seen in L0", 0, false, func(r rr) float64 { return float64(r.unseen) })
	tb.add("commits (all dbs)", 0, false, func(r rr) float64 { return float64(r.commits) })
	tb.add("writer commit p99 (ms)", 1, true, func(r rr) float64 { return pct(r.commitLat, 99) })
	tb.add("writer commit max (ms)", 1, true, func(r rr) float64 { return maxDur(r.commitLat) })
	tb.add("RSS peak (MiB)", 1, true, func(r rr) float64 { return float64(r.res.rssPeakKB) / 1024 })
	tb.add("RSS steady (MiB)", 1, true, func(r rr) float64 { return float64(r.res.rssSteadyKB) / 1024 })
	tb.add("fds peak", 0, true, func(r rr) float64 { return float64(r.res.fdsPeak) })
	tb.add("fds steady", 0, true, func(r rr) float64 { return float64(r.res.fdsSteady) })
	tb.add("threads peak", 0, true, func(r rr) float64 { return float64(r.res.threadsPeak) })
	tb.add("threads steady", 0, true, func(r rr) float64 { return float64(r.res.threadsSteady) })
	tb.add("CPU s until SIGTERM", 2, true, func(r rr) float64 { return r.res.cpuRun })
	perWall := func(r rr, v float64, wall time.Duration) float64 {
		if r.res.runWall <= 0 {
			return math.NaN()
		}
		return v / wall.Seconds()
	}
	tb.add("CPU % of a core (avg)", 1, true, func(r rr) float64 { return perWall(r, 100*r.res.cpuRun, r.res.runWall) })
	tb.add("CPU s total (rusage)", 2, true, func(r rr) float64 { return r.cpuTotal })
	tb.add("S3 requests", 0, true, func(r rr) float64 { return float64(r.req.total) })
	tb.add("S3 requests/s", 1, true, func(r rr) float64 { return perWall(r, float64(r.req.total), r.res.runWall+r.shutdown) })
	addKinds(tb, func(r rr) map[string]int64 { return r.req.kinds })
	tb.add("  S3 error responses", 0, false, func(r rr) float64 { return float64(sum(r.req.errs)) })
	tb.add("uploaded (MiB)", 2, true, func(r rr) float64 { return mib(r.req.inB) })
	tb.add("objects in bucket at end", 0, true, func(r rr) float64 { return float64(r.objects) })
	tb.add("bucket size (MiB)", 2, true, func(r rr) float64 { return mib(r.objBytes) })
	tb.add("shutdown after SIGTERM (s)", 2, true, func(r rr) float64 { return r.shutdown.Seconds() })
	tb.add("log ERROR lines", 0, false, func(r rr) float64 { return float64(r.logErrors) })
	tb.add("log WARN lines", 0, false, func(r rr) float64 { return float64(r.logWarns) })
	tb.addText("restores verified (walsync restore)", false, func(r rr) string { return fmt.Sprintf("%d/%d", r.restoreOK, r.restored) })
	tb.add("restore time, mean (s)", 2, true, func(r rr) float64 { return r.restoreTime.Seconds() })
	tb.write(w)

	for _, t := range tools {
		r := results[t]
		if r == nil {
			continue
		}
		who := fmt.Sprintf("%s N=%d", t, n)
		printFailures(w, who, r.failures)
		if notes := append(r.notes, r.logLines...); len(notes) > 0 {
			fmt.Fprintf(w, "%s notes:\n", who)
			for _, s := range notes {
				fmt.Fprintf(w, "  - %s\n", indent(s))
			}
		}
		if len(r.failures) == 0 {
			fmt.Fprintf(w, "%s: S3 requests by kind %v; objects per level dir %v; exit %s\n", who, r.req.kinds, r.perLevel, r.exitStatus)
		}
	}
	fmt.Fprintln(w)
}
