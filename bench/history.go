package main

// History mode (--history): "a simulated day". Both replicators run side by
// side (each with its own versitygw, counting proxy and databases) with
// every compaction/retention interval divided by --scale, for 24h/scale of
// wall time under the usual load (1 commit/s/db). Then a few databases of
// each are restored to fixed timestamps (one near the start of the retained
// window, one in the middle of the run) and to the latest state, each
// restore through its own counting proxy, and verified against the
// writer's commit times (history_restore.go). The report is in
// history_report.go.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
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

// histPoint is the bucket at one simulated hour.
type histPoint struct {
	at      time.Duration // since the writer started
	objects int
	bytes   int64
}

// histTool is one replicator's simulated day.
type histTool struct {
	toolRun
	s3s *s3Side
	dbs []*database

	samples []procSample
	res     resourceSummary
	req     reqSnap

	levels      map[int]levelStat
	objects     int
	objBytes    int64
	series      []histPoint
	windowStart time.Time // latest over the restored dbs of the earliest restorable point
	windowNote  string

	commits int

	restores []*histRestore
}

// histTarget is a restore target; a zero time is the latest state.
type histTarget struct {
	label string
	at    time.Time
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
	rep := newRunReport(c.outDir, "history-")
	fmt.Fprintf(rep, "walsync vs Litestream v0.5.18 - simulated day - %s\n", time.Now().Format(time.RFC3339))
	fmt.Fprintf(rep, "scale 1/%g: %v of wall time = 24 h; L1 %v, L2 %v, L3 %v, L0 retention %v, snapshot interval %v, snapshot retention %v (Litestream l0-retention-check-interval %v)\n",
		scale, p.duration, p.levels[0], p.levels[1], p.levels[2], p.l0Retention, p.snapInterval, p.snapKeep, p.l0RetentionCheck)
	fmt.Fprintf(rep, "%d dbs per tool, 1 commit/s/db (~1 KiB blob), sync interval 1 s (both defaults, not scaled); both tools run at the same time, each with its own versitygw on 127.0.0.1\n", n)
	fmt.Fprintf(rep, "host: %d CPUs; logs and raw data in %s\n\n", numCPU(), rep.dir)

	ctx := context.Background()
	tools := map[string]*histTool{}
	for _, name := range c.tools {
		t := &histTool{toolRun: toolRun{name: name, outDir: filepath.Join(rep.dir, name)}}
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

	// Restore targets, the same absolute times for both tools.
	var windowStart time.Time
	for _, name := range c.tools {
		t := tools[name]
		if len(t.failures) == 0 && t.windowStart.After(windowStart) {
			windowStart = t.windowStart
		}
	}
	targets := histTargets(writerStart, windowStart, p.duration)
	fmt.Fprintf(rep, "writer ran %s .. %s; retained window starts %s (latest over tools and restored dbs)\n",
		writerStart.UTC().Format("15:04:05.000"), writerStart.Add(p.duration).UTC().Format("15:04:05.000"), fmtT(windowStart, writerStart))
	for _, tg := range targets {
		if !tg.at.IsZero() {
			fmt.Fprintf(rep, "restore target %-6s = %s (%s = simulated %s)\n", tg.label, tg.at.UTC().Format(time.RFC3339Nano),
				fmtT(tg.at, writerStart), simClock(tg.at.Sub(writerStart), scale))
		}
	}
	fmt.Fprintln(rep)

	for _, name := range c.tools {
		t := tools[name]
		if len(t.failures) > 0 {
			continue
		}
		for _, i := range sampleIndexes(n, restoreN) {
			for _, tg := range targets {
				r := t.restore(ctx, c, t.dbs[i], tg.label, tg.at)
				t.restores = append(t.restores, r)
				logf("%s restore %s %s: %s (%v, %d requests)", name, t.dbs[i].name, tg.label, r.status, r.wall.Round(time.Millisecond), r.req.total)
			}
		}
	}

	printHistory(rep, c.tools, tools, p, writerStart)
	for _, name := range c.tools {
		t := tools[name]
		t.writeRaw(filepath.Join(t.outDir, "raw.txt"), writerStart)
	}
	rep.finish(c.outDir, "history-latest.txt")
	ok := true
	for _, t := range tools {
		if len(t.failures) > 0 {
			ok = false
		}
	}
	return ok
}

// histTargets are the restore targets: half a simulated hour into the
// retained window (or into the day, when the window starts before the
// writer, with the initial row) if that is before the middle of the day,
// the middle, and the latest state.
func histTargets(writerStart, windowStart time.Time, day time.Duration) []histTarget {
	mid := writerStart.Add(day / 2)
	early := windowStart
	if early.Before(writerStart) {
		early = writerStart
	}
	early = early.Add(day / 48)
	var targets []histTarget
	if !windowStart.IsZero() && early.Before(mid) {
		targets = append(targets, histTarget{"early", early})
	}
	return append(targets, histTarget{"mid", mid}, histTarget{"latest", time.Time{}})
}

// levelOf is the level a level directory ("0000".."0009") holds; -1 for
// another directory.
func levelOf(dir string) int {
	l, err := strconv.Atoi(dir)
	if err != nil {
		return -1
	}
	return l
}

// fmtT shows t as seconds after start.
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
	closeDatabases(t.dbs)
	t.kill()
	if t.s3s != nil {
		_ = t.s3s.close(t.outDir)
	}
	t.removeWork(c)
}

func (t *histTool) setup(ctx context.Context, c *config, p histParams, n int) error {
	if err := t.makeWork(c, fmt.Sprintf("walsync-bench-history-%s-", t.name)); err != nil {
		return err
	}
	var err error
	if t.s3s, err = startS3Side(ctx, c, t.work, fmt.Sprintf("bench-history-%s-%s", t.name, randomHex(3))); err != nil {
		return err
	}
	// Every database "sampled": the writer then records every commit time.
	if t.dbs, err = createDatabases(filepath.Join(t.work, "db"), n, sampleIndexes(n, n)); err != nil {
		return fmt.Errorf("creating databases: %w", err)
	}
	proxy := t.s3s.proxy.URL
	args := []string{"watch"}
	var lsDBs []lsDB
	for _, d := range t.dbs {
		args = append(args, d.path)
		lsDBs = append(lsDBs, lsDB{path: d.path, replica: t.s3s.loc(proxy, d.name)})
	}
	args = append(args, "-b", "s3://"+t.s3s.bucket, "--endpoint", proxy,
		"--levels", fmt.Sprintf("%v,%v,%v", p.levels[0], p.levels[1], p.levels[2]),
		"--l0-retention", p.l0Retention.String(),
		"--snapshot-interval", p.snapInterval.String(),
		"--snapshot-retention", p.snapKeep.String())
	globals := "levels:\n"
	for _, l := range p.levels {
		globals += fmt.Sprintf("  - interval: %s\n", l)
	}
	globals += fmt.Sprintf("snapshot:\n  interval: %s\n  retention: %s\n", p.snapInterval, p.snapKeep)
	globals += fmt.Sprintf("l0-retention: %s\nl0-retention-check-interval: %s\n", p.l0Retention, p.l0RetentionCheck)
	cmd, err := t.replicatorCmd(c, args, litestreamYAML(" --history", globals, lsDBs))
	if err != nil {
		return err
	}
	cmd.Env = childEnv(t.s3s.srv)
	cmd.Dir = t.work
	if err := t.start(cmd); err != nil {
		return err
	}
	warm := t.s3s.waitReplicated(ctx, t.dbs, 2*time.Second, 60*time.Second, t.rep.Exited)
	if msg := t.exitedEarly("exited during start-up", 2000); msg != "" {
		return fmt.Errorf("%s", msg)
	}
	logf("%s: replicator up (pid %d), warm-up %v", t.name, t.rep.Pid(), warm.Round(10*time.Millisecond))
	return nil
}

// run writes for the simulated day, counting the bucket once per
// simulated hour, then stops the replicator and takes stock of the bucket.
func (t *histTool) run(ctx context.Context, c *config, p histParams, writerStart time.Time) {
	smp := startSampler(t.rep.Pid(), t.started, nil)
	var mu sync.Mutex
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		hour := p.duration / 24
		for k := 1; ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Until(writerStart.Add(time.Duration(k) * hour))):
			}
			if objs, b, _, err := bucketStats(ctx, t.s3s.c, t.s3s.bucket, ""); err == nil {
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
	t.commits, _, _ = t.collectWriters(t.dbs)
	logf("%s: writer stopped (%d commits); draining %v", t.name, t.commits, c.drain)
	time.Sleep(c.drain)
	t.failIfDied("the run")
	close(stop)
	<-done
	t.samples = smp.stop()
	t.res = summarizeRun(t.samples)
	before := t.s3s.proxy.snapshot()
	t.stop()
	// Requests made while shutting down are added to the run's.
	t.req = t.s3s.proxy.snapshot()
	if t.req.total != before.total {
		t.note("%d S3 requests during shutdown (included): %v", t.req.total-before.total, t.req.minus(before).kinds)
	}
	logf("%s: replicator stopped in %v (%s)", t.name, t.shutdown.Round(time.Millisecond), t.exitStatus)

	objs, b, levels, err := bucketStats(ctx, t.s3s.c, t.s3s.bucket, "")
	if err != nil {
		t.note("listing bucket: %v", err)
	}
	t.objects, t.objBytes, t.levels = objs, b, map[int]levelStat{}
	for dir, l := range levels {
		s := t.levels[levelOf(dir)]
		s.objects += l.objects
		s.bytes += l.bytes
		t.levels[levelOf(dir)] = s
	}
	// Earliest restorable point per database: the oldest file that starts
	// at TXID 1 (a snapshot or a compacted file) - its header timestamp.
	for _, d := range t.dbs {
		ws, desc, err := earliestPoint(ctx, t.s3s, d.name+"/")
		if err != nil {
			t.note("window of %s: %v", d.name, err)
			continue
		}
		if ws.After(t.windowStart) {
			t.windowStart, t.windowNote = ws, d.name+": "+desc
		}
	}
	t.scanLog()
}
