package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

type metric struct {
	name  string
	v     float64
	text  string // shown instead of v when set
	prec  int
	ratio bool // a litestream/walsync ratio makes sense
}

func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	c := append([]time.Duration(nil), ds...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	// nearest rank
	k := int(math.Ceil(p/100*float64(len(c)))) - 1
	k = min(max(k, 0), len(c)-1)
	return float64(c[k].Microseconds()) / 1000
}

func maxDur(ds []time.Duration) float64 {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return float64(m.Microseconds()) / 1000
}

func (r *runResult) metrics() []metric {
	mib := func(kb int64) float64 { return float64(kb) / 1024 }
	var m []metric
	add := func(name string, v float64, prec int, ratio bool) {
		m = append(m, metric{name: name, v: v, prec: prec, ratio: ratio})
	}
	addText := func(name, text string) { m = append(m, metric{name: name, text: text}) }
	add("lag p50 (ms)", pct(r.lags, 50), 0, true)
	add("lag p99 (ms)", pct(r.lags, 99), 0, true)
	add("lag max (ms)", maxDur(r.lags), 0, true)
	addText("lag samples (dbs probed)", fmt.Sprintf("%d (%d)", len(r.lags), r.probed))
	add("sentinels never seen in L0", float64(r.unseen), 0, false)
	add("commits (all dbs)", float64(r.commits), 0, false)
	add("writer commit p99 (ms)", pct(r.commitLat, 99), 1, true)
	add("writer commit max (ms)", maxDur(r.commitLat), 1, true)
	add("RSS peak (MiB)", mib(r.res.rssPeakKB), 1, true)
	add("RSS steady (MiB)", mib(r.res.rssSteadyKB), 1, true)
	add("fds peak", float64(r.res.fdsPeak), 0, true)
	add("fds steady", float64(r.res.fdsSteady), 0, true)
	add("threads peak", float64(r.res.threadsPeak), 0, true)
	add("threads steady", float64(r.res.threadsSteady), 0, true)
	add("CPU s until SIGTERM", r.res.cpuRun, 2, true)
	cpuPct := math.NaN()
	if r.res.runWall > 0 {
		cpuPct = 100 * r.res.cpuRun / r.res.runWall.Seconds()
	}
	add("CPU % of a core (avg)", cpuPct, 1, true)
	add("CPU s total (rusage)", r.cpuTotal, 2, true)
	add("S3 requests", float64(r.s3Total), 0, true)
	perSec := math.NaN()
	if r.res.runWall > 0 {
		perSec = float64(r.s3Total) / (r.res.runWall + r.shutdown).Seconds()
	}
	add("S3 requests/s", perSec, 1, true)
	for _, k := range []string{"PUT", "GET", "LIST", "HEAD", "DELETE", "DELETE(multi)", "PUT(part)", "POST"} {
		if v, ok := r.s3Kinds[k]; ok || k == "PUT" || k == "GET" || k == "LIST" {
			add("  "+k, float64(v), 0, true)
		}
	}
	var errs int64
	for _, v := range r.s3Errs {
		errs += v
	}
	add("  S3 error responses", float64(errs), 0, false)
	add("uploaded (MiB)", float64(r.s3InBytes)/(1<<20), 2, true)
	add("objects in bucket at end", float64(r.objects), 0, true)
	add("bucket size (MiB)", float64(r.objBytes)/(1<<20), 2, true)
	add("shutdown after SIGTERM (s)", r.shutdown.Seconds(), 2, true)
	add("log ERROR lines", float64(r.logErrors), 0, false)
	add("log WARN lines", float64(r.logWarns), 0, false)
	addText("restores verified (walsync restore)", fmt.Sprintf("%d/%d", r.restoreOK, r.restored))
	add("restore time, mean (s)", r.restoreTime.Seconds(), 2, true)
	return m
}

func (m metric) String() string {
	if m.text != "" {
		return m.text
	}
	if math.IsNaN(m.v) {
		return "-"
	}
	return fmt.Sprintf("%.*f", m.prec, m.v)
}

func printTable(w io.Writer, n int, tools []string, results map[string]*runResult) {
	fmt.Fprintf(w, "N = %d database(s)\n", n)
	cols := map[string][]metric{}
	var names []metric
	for _, t := range tools {
		r := results[t]
		if r == nil {
			continue
		}
		ms := r.metrics()
		cols[t] = ms
		if names == nil {
			names = ms
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.Debug)
	fmt.Fprintf(tw, "metric\twalsync\tlitestream\tratio (ls/ws)\t\n")
	failed := func(t string) bool { r := results[t]; return r == nil || len(r.failures) > 0 }
	for i, nm := range names {
		var cells [2]string
		var vals [2]metric
		for j, t := range []string{"walsync", "litestream"} {
			switch {
			case results[t] == nil:
				cells[j] = "(not run)"
			case failed(t):
				cells[j] = "FAILED"
			default:
				vals[j] = cols[t][i]
				cells[j] = vals[j].String()
			}
		}
		ratio := ""
		if nm.ratio && !failed("walsync") && !failed("litestream") {
			a, b := vals[0].v, vals[1].v
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", nm.name, cells[0], cells[1], ratio)
	}
	tw.Flush()
	for _, t := range tools {
		r := results[t]
		if r == nil {
			continue
		}
		if len(r.failures) > 0 {
			fmt.Fprintf(w, "%s N=%d FAILED:\n", t, n)
			for _, f := range r.failures {
				fmt.Fprintf(w, "  - %s\n", indent(f))
			}
		}
		if len(r.notes) > 0 {
			fmt.Fprintf(w, "%s N=%d notes:\n", t, n)
			for _, s := range r.notes {
				fmt.Fprintf(w, "  - %s\n", indent(s))
			}
		}
		if len(r.failures) == 0 {
			fmt.Fprintf(w, "%s N=%d: S3 requests by kind %v; objects per level dir %v; exit %s\n", t, n, r.s3Kinds, r.perLevel, r.exitStatus)
		}
	}
	fmt.Fprintln(w)
}

func indent(s string) string { return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n      ") }
