package main

// Scale mode's report: each case's side-by-side table, issue 4's goals for
// walsync, and the raw data behind them.

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

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

// resources summarizes the samples: peak over the whole life, steady over
// the second half of the measured phase.
func (t *scaleTool) resources() (r resourceSummary, gPeak, gSteady float64) {
	mid := t.phaseFrom + (t.phaseTo-t.phaseFrom)/2
	var phase []procSample
	for _, s := range t.samples {
		if s.at >= mid && s.at <= t.phaseTo {
			phase = append(phase, s)
		}
	}
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
	return summarize(t.samples, phase), gPeak, gSteady
}

// printScaleCase prints one case's table and what each tool's run noted.
func printScaleCase(w io.Writer, order []string, tools map[string]*scaleTool, sc scaleCase, kind string, c *config, o *scaleOpts) {
	tb := newTable(tools, func(t *scaleTool) string {
		switch {
		case t == nil:
			return notRun
		case t.startErr != "":
			return "did not start"
		case len(t.failures) > 0:
			return "FAILED"
		}
		return ""
	})
	add, addText := tb.add, tb.addText
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
		add("S3 error responses, whole run", 0, false, func(t *scaleTool) float64 { return float64(sum(t.reqEnd.errs)) })
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
	tb.write(w)

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
			printFailures(w, n, t.failures)
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
		printNotes(w, n, &t.toolRun)
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
	fmt.Fprintf(f, "# %s %s %s; ready at %.2fs, phase %.2fs..%.2fs\n",
		t.name, t.kind, t.sc.label, t.readyAt.Seconds(), t.phaseFrom.Seconds(), t.phaseTo.Seconds())
	writeSamples(f, t.samples)
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
