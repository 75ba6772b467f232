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
//
// One tool in one case is a scaleTool (scale_tool.go, scale_watch.go,
// scale_check.go); the report is in scale_report.go.

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// scaleCase is "NxP%" (N databases, P% of them writing) or "idleN".
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

// scaleOpts are the mode's flags.
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

// probeWalsync reads which of those flags "walsync watch -h" lists.
func probeWalsync(bin string) walsyncFeatures {
	out, _ := exec.Command(bin, "watch", "-h").CombinedOutput()
	s := string(out)
	has := func(f string) bool { return strings.Contains(s, "\n  -"+f+" ") || strings.Contains(s, "\n  -"+f+"\n") }
	return walsyncFeatures{dir: has("dir"), pattern: has("pattern"), recursive: has("recursive"), addr: has("addr")}
}

// runScale runs every case with every replica kind.
func runScale(c *config, o *scaleOpts) bool {
	out := newRunReport(c.outDir, "scale-")
	runDir := out.dir
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
			out.sync()
		}
	}
	out.finish(c.outDir, "latest-scale.txt")
	return ok
}

// yesNo shows b.
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

// runScaleCase runs one case with one kind of replica, both tools at once.
func runScaleCase(c *config, o *scaleOpts, feat walsyncFeatures, sc scaleCase, kind, dir string) map[string]*scaleTool {
	ctx := context.Background()
	tools := map[string]*scaleTool{}
	var order []*scaleTool
	defer compressLarge(dir, 4<<20)
	for _, name := range c.tools {
		t := &scaleTool{toolRun: toolRun{name: name, outDir: filepath.Join(dir, name)}, kind: kind, c: c, o: o, sc: sc, feat: feat, watchAll: -1}
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
		if err := t.launch(); err != nil {
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
				s := t.reqs()
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
			t.failIfDied("the idle window")
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
