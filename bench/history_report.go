package main

// History mode's report: the side-by-side table, every restore, and the
// raw data behind them.

import (
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func (t *histTool) writeRaw(path string, writerStart time.Time) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "# %s history\n", t.name)
	writeSamples(f, t.samples)
	fmt.Fprintf(f, "# bucket once per simulated hour: t_s objects bytes\n")
	for _, s := range t.series {
		fmt.Fprintf(f, "%.1f %d %d\n", s.at.Seconds(), s.objects, s.bytes)
	}
	fmt.Fprintf(f, "# s3 requests by kind: %v, error statuses: %v\n", t.req.kinds, t.req.errs)
	fmt.Fprintf(f, "# restores\n")
	for _, r := range t.restores {
		fmt.Fprintf(f, "%s %s T=%s rows=%d committed_end<=T=%d committed_start<=T=%d last_row_at=%s reported=%s wall=%v requests=%v errs=%v status=%s\n",
			r.db, r.label, fmtT(r.target, writerStart), r.rows, r.commitEndLE, r.commitStartLE, fmtT(r.lastAt, writerStart),
			fmtT(r.reportedAt, writerStart), r.wall, r.req.kinds, r.req.errs, r.status)
	}
}

func printHistory(w io.Writer, order []string, tools map[string]*histTool, p histParams, writerStart time.Time) {
	tb := newTable(tools, failedState[*histTool])
	type ht = *histTool
	kb := func(b int64) float64 { return float64(b) / 1024 }

	tb.add("commits (all dbs)", 0, false, func(t ht) float64 { return float64(t.commits) })
	tb.add("objects in bucket at end", 0, true, func(t ht) float64 { return float64(t.objects) })
	tb.add("bucket size (MiB)", 2, true, func(t ht) float64 { return mib(t.objBytes) })
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
		tb.add("  "+name+" objects", 0, true, func(t ht) float64 { return float64(t.levels[l].objects) })
		tb.add("  "+name+" KiB", 1, true, func(t ht) float64 { return kb(t.levels[l].bytes) })
	}
	for _, h := range []int{6, 12, 18} {
		tb.add(fmt.Sprintf("objects at simulated %02d:00", h), 0, true, func(t ht) float64 {
			if len(t.series) >= h {
				return float64(t.series[h-1].objects)
			}
			return math.NaN()
		})
	}
	tb.add("S3 requests during the day", 0, true, func(t ht) float64 { return float64(t.req.total) })
	tb.add("S3 requests/s", 1, true, func(t ht) float64 {
		return float64(t.req.total) / (p.duration + t.shutdown).Seconds()
	})
	addKinds(tb, func(t ht) map[string]int64 { return t.req.kinds })
	tb.add("  S3 error responses", 0, false, func(t ht) float64 { return float64(sum(t.req.errs)) })
	tb.add("uploaded (MiB)", 2, true, func(t ht) float64 { return mib(t.req.inB) })
	tb.add("downloaded, all responses (MiB)", 2, true, func(t ht) float64 { return mib(t.req.outB) })
	tb.add("  GET bodies (MiB)", 2, true, func(t ht) float64 { return mib(t.req.outByKind["GET"]) })
	tb.add("  LIST responses (MiB)", 2, true, func(t ht) float64 { return mib(t.req.outByKind["LIST"]) })
	tb.add("RSS peak (MiB)", 1, true, func(t ht) float64 { return float64(t.res.rssPeakKB) / 1024 })
	tb.add("RSS steady (MiB)", 1, true, func(t ht) float64 { return float64(t.res.rssSteadyKB) / 1024 })
	tb.add("CPU s total (rusage)", 2, true, func(t ht) float64 { return t.cpuTotal })
	tb.add("log ERROR lines", 0, false, func(t ht) float64 { return float64(t.logErrors) })
	tb.add("log WARN lines", 0, false, func(t ht) float64 { return float64(t.logWarns) })
	tb.addText("earliest restorable point (latest db)", false, func(t ht) string {
		return fmt.Sprintf("%s (sim %s)", fmtT(t.windowStart, writerStart), simClock(t.windowStart.Sub(writerStart), p.scale))
	})
	addRestoreRows(tb, tools)
	tb.write(w)
	fmt.Fprintln(w)

	// Per-restore detail.
	fmt.Fprintf(w, "restores (T relative to the writer's start; rows: restored / committed by T (commit returned) / started by T; last row = commit start of the newest restored row):\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "tool\tdb\ttarget\tT\trows\tby T\tstarted by T\tlast row\treported\twall\tLIST\tGET\tHEAD\ttotal\tresult\n")
	for _, tn := range order {
		t := tools[tn]
		if t == nil {
			continue
		}
		for _, r := range t.restores {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%.3fs\t%d\t%d\t%d\t%d\t%s\n", tn, r.db, r.label, fmtT(r.target, writerStart),
				r.rows, r.commitEndLE, r.commitStartLE, fmtT(r.lastAt, writerStart), fmtT(r.reportedAt, writerStart), r.wall.Seconds(),
				r.req.kinds["LIST"], r.req.kinds["GET"], r.req.kinds["HEAD"], r.req.total, r.status)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)

	for _, tn := range order {
		t := tools[tn]
		if t == nil {
			continue
		}
		printFailures(w, tn, t.failures)
		printNotes(w, tn, &t.toolRun)
		fmt.Fprintf(w, "%s: S3 requests by kind %v, error statuses %v; earliest point from %s; bucket objects per simulated hour %v; exit %s\n",
			tn, t.req.kinds, t.req.errs, t.windowNote, seriesString(t.series), t.exitStatus)
	}
	fmt.Fprintln(w)
}

// addRestoreRows adds the restores' figures, aggregated per target.
func addRestoreRows(tb *table[*histTool], tools map[string]*histTool) {
	type ht = *histTool
	for _, lb := range []string{"early", "mid", "latest"} {
		has := false
		for _, t := range tools {
			for _, r := range t.restores {
				has = has || r.label == lb
			}
		}
		if !has {
			continue
		}
		sel := func(t ht) []*histRestore {
			var rs []*histRestore
			for _, r := range t.restores {
				if r.label == lb {
					rs = append(rs, r)
				}
			}
			return rs
		}
		mean := func(f func(r *histRestore) float64) func(t ht) float64 {
			return func(t ht) float64 {
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
		}
		pre := "restore " + lb
		tb.addText(pre+": ok/verified", false, func(t ht) string {
			ok := 0
			for _, r := range sel(t) {
				if !r.problem {
					ok++
				}
			}
			return fmt.Sprintf("%d/%d", ok, len(sel(t)))
		})
		tb.add(pre+": wall time mean (s)", 3, true, mean(func(r *histRestore) float64 { return r.wall.Seconds() }))
		tb.add(pre+": S3 requests mean", 1, true, mean(func(r *histRestore) float64 { return float64(r.req.total) }))
		for _, k := range []string{"LIST", "GET", "HEAD"} {
			tb.add(pre+":   "+k+" mean", 1, true, mean(func(r *histRestore) float64 { return float64(r.req.kinds[k]) }))
		}
		if lb != "latest" {
			tb.add(pre+": rows behind T, mean", 1, true, mean(func(r *histRestore) float64 { return float64(r.commitEndLE - r.rows) }))
			tb.add(pre+": age of state at T, mean (s)", 2, true, mean(func(r *histRestore) float64 {
				if r.lastAt.IsZero() {
					return math.NaN()
				}
				return r.target.Sub(r.lastAt).Seconds()
			}))
		}
	}
}

func seriesString(ps []histPoint) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, strconv.Itoa(p.objects))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
