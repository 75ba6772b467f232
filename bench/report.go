package main

// What every mode's report shares: the results file and its "latest"
// copy, the side-by-side table with Litestream/walsync ratios, and the
// figures the tables are made of.

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// runReport is a mode's results.txt in a new run directory; what is
// written to it is shown on stdout too.
type runReport struct {
	io.Writer
	dir string
	f   *os.File
}

// newRunReport creates <outDir>/<prefix><timestamp>/results.txt.
func newRunReport(outDir, prefix string) *runReport {
	dir := filepath.Join(outDir, prefix+time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatalf("creating the run directory: %v", err)
	}
	f, err := os.Create(filepath.Join(dir, "results.txt"))
	if err != nil {
		fatalf("creating the results file: %v", err)
	}
	return &runReport{Writer: io.MultiWriter(os.Stdout, f), dir: dir, f: f}
}

// sync flushes the results to disk, so that a long run shows its finished
// cases.
func (r *runReport) sync() { _ = r.f.Sync() }

// finish closes the results and copies them to <outDir>/<latest>.
func (r *runReport) finish(outDir, latest string) {
	_ = r.f.Close()
	res := filepath.Join(r.dir, "results.txt")
	latest = filepath.Join(outDir, latest)
	_ = os.Remove(latest)
	if b, err := os.ReadFile(res); err == nil {
		_ = os.WriteFile(latest, b, 0o644)
	}
	fmt.Fprintf(os.Stdout, "\nwrote %s and %s\n", res, latest)
}

// notRun is a table cell of a tool that was not run.
const notRun = "(not run)"

// failedState is the table state of a tool whose run either worked or
// failed as a whole.
func failedState[T interface {
	comparable
	base() *toolRun
}](t T) string {
	var none T
	switch {
	case t == none:
		return notRun
	case len(t.base().failures) > 0:
		return "FAILED"
	}
	return ""
}

// row is one line of a side-by-side table.
type row struct {
	name  string
	vals  [2]float64 // walsync, litestream
	text  [2]string  // shown instead of vals[j] when set
	prec  int
	ratio bool // a litestream/walsync ratio makes sense
}

// table builds a "metric | walsync | litestream | ratio" table from the
// two tools' results. state tells what a tool's cells show instead of
// figures ("" when it has figures): notRun for a tool that was not run,
// "FAILED" and the like.
type table[T any] struct {
	tools [2]T
	state func(T) string
	rows  []row
}

func newTable[T any](tools map[string]T, state func(T) string) *table[T] {
	return &table[T]{tools: [2]T{tools["walsync"], tools["litestream"]}, state: state}
}

// add adds a row of figures.
func (tb *table[T]) add(name string, prec int, ratio bool, f func(T) float64) {
	r := row{name: name, prec: prec, ratio: ratio}
	for j, t := range tb.tools {
		if s := tb.state(t); s != "" {
			r.text[j], r.vals[j] = s, math.NaN()
		} else {
			r.vals[j] = f(t)
		}
	}
	tb.rows = append(tb.rows, r)
}

// addText adds a row of text. With always, a tool that ran shows its text
// even when it has no figures (a failed run still says how it started).
func (tb *table[T]) addText(name string, always bool, f func(T) string) {
	r := row{name: name}
	for j, t := range tb.tools {
		if s := tb.state(t); s != "" && (!always || s == notRun) {
			r.text[j] = s
		} else {
			r.text[j] = f(t)
		}
	}
	tb.rows = append(tb.rows, r)
}

func (tb *table[T]) write(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.Debug)
	fmt.Fprintf(tw, "metric\twalsync\tlitestream\tratio (ls/ws)\t\n")
	for _, r := range tb.rows {
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
}

// s3Kinds are the request kinds the tables list, in order; the first
// three always, the others when a tool made such a request.
var s3Kinds = []string{"PUT", "GET", "LIST", "HEAD", "DELETE", "DELETE(multi)", "PUT(part)", "POST"}

// addKinds adds a row per request kind that kinds(tool) holds for either tool.
func addKinds[T any](tb *table[T], kinds func(T) map[string]int64) {
	for i, k := range s3Kinds {
		present := i < 3
		for _, t := range tb.tools {
			if tb.state(t) == "" {
				_, ok := kinds(t)[k]
				present = present || ok
			}
		}
		if present {
			tb.add("  "+k, 0, true, func(t T) float64 { return float64(kinds(t)[k]) })
		}
	}
}

// pct is the p-th percentile (nearest rank) of ds, in milliseconds.
func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	c := append([]time.Duration(nil), ds...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	k := int(math.Ceil(p/100*float64(len(c)))) - 1
	k = min(max(k, 0), len(c)-1)
	return float64(c[k].Microseconds()) / 1000
}

// maxDur is the largest of ds, in milliseconds.
func maxDur(ds []time.Duration) float64 {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return float64(m.Microseconds()) / 1000
}

func sum[V int | int64](m map[int]V) V {
	var n V
	for _, v := range m {
		n += v
	}
	return n
}

func mib[V int | int64](b V) float64 { return float64(b) / (1 << 20) }

// indent indents the continuation lines of a list item.
func indent(s string) string { return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n      ") }

// printFailures lists a tool's failures under its table.
func printFailures(w io.Writer, who string, failures []string) {
	if len(failures) > 0 {
		fmt.Fprintf(w, "%s FAILED:\n", who)
		for _, f := range failures {
			fmt.Fprintf(w, "  - %s\n", indent(f))
		}
	}
}

// printNotes prints a tool's notes and the lines of note in its log.
func printNotes(w io.Writer, who string, t *toolRun) {
	for _, s := range t.notes {
		fmt.Fprintf(w, "%s note: %s\n", who, indent(s))
	}
	for _, s := range t.logLines {
		fmt.Fprintf(w, "%s %s\n", who, indent(s))
	}
}

// writeSamples writes the /proc samples of a raw file.
func writeSamples(w io.Writer, samples []procSample) {
	fmt.Fprintf(w, "# t_s rss_kb fds threads cpu_s\n")
	for _, s := range samples {
		fmt.Fprintf(w, "%.1f %d %d %d %.2f\n", s.at.Seconds(), s.rssKB, s.fds, s.threads, s.cpu)
	}
}
