// Command report reads the JSON lines the two benchmark programs print and
// writes a side-by-side table of medians with aws-sdk-go-v2/walsync ratios.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/walsync/walsync/bench/s3client/harness"
)

const (
	walsync = "walsync"
	sdk     = "aws-sdk-go-v2"
	floor   = "no client"
)

type metric struct {
	name string
	get  func(harness.Result) float64
	unit string
}

var metrics = []metric{
	{"VmRSS after the PUTs", func(r harness.Result) float64 { return float64(r.VmRSSKB) / 1024 }, "MiB"},
	{"VmHWM (peak RSS)", func(r harness.Result) float64 { return float64(r.VmHWMKB) / 1024 }, "MiB"},
	{"GC cycles", func(r harness.Result) float64 { return float64(r.NumGC) }, ""},
	{"bytes allocated", func(r harness.Result) float64 { return float64(r.TotalAlloc) / (1 << 20) }, "MiB"},
	{"heap from the OS", func(r harness.Result) float64 { return float64(r.HeapSys) / (1 << 20) }, "MiB"},
	{"time for the PUTs", func(r harness.Result) float64 { return float64(r.PutMillis) }, "ms"},
	{"binary size", func(r harness.Result) float64 { return float64(r.BinaryBytes) / (1 << 20) }, "MiB"},
}

func median(rs []harness.Result, get func(harness.Result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = get(r)
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func format(v float64, unit string) string {
	if unit == "" || unit == "ms" {
		return fmt.Sprintf("%.0f%s", v, map[string]string{"": "", "ms": " ms"}[unit])
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

func ratio(num, den float64) string {
	if den <= 0 || num < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", num/den)
}

func main() {
	runs := map[[2]string][]harness.Result{} // (client, GOMEMLIMIT)
	var limits []string
	var puts, objBytes int
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r harness.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			fmt.Fprintf(os.Stderr, "report: bad line %q: %v\n", line, err)
			os.Exit(1)
		}
		k := [2]string{r.Client, r.GOMEMLIMIT}
		if !slices.Contains(limits, r.GOMEMLIMIT) {
			limits = append(limits, r.GOMEMLIMIT)
		}
		runs[k] = append(runs[k], r)
		puts, objBytes = r.Puts, r.ObjectBytes
	}
	if len(limits) == 0 {
		fmt.Fprintln(os.Stderr, "report: no results on standard input")
		os.Exit(1)
	}
	fmt.Printf("%d PUTs of one %d-byte LTX object each, client held throughout; median of %d runs\n\n",
		puts, objBytes, len(runs[[2]string{walsync, limits[0]}]))
	for _, lim := range limits {
		w, s, f := runs[[2]string{walsync, lim}], runs[[2]string{sdk, lim}], runs[[2]string{floor, lim}]
		if len(w) == 0 || len(s) == 0 || len(f) == 0 {
			fmt.Fprintf(os.Stderr, "report: GOMEMLIMIT=%q lacks a program's results\n", lim)
			os.Exit(1)
		}
		title := "GOMEMLIMIT unset"
		if lim != "" {
			title = "GOMEMLIMIT=" + lim
		}
		row := "%-20s %11s %14s %12s %11s %15s\n"
		fmt.Printf(row, title, walsync, sdk, "sdk/walsync", floor, "above no-client")
		fmt.Printf(row, strings.Repeat("-", 20), strings.Repeat("-", 11), strings.Repeat("-", 14), strings.Repeat("-", 12), strings.Repeat("-", 11), strings.Repeat("-", 15))
		for _, m := range metrics {
			a, b, c := median(w, m.get), median(s, m.get), median(f, m.get)
			fmt.Printf(row, m.name, format(a, m.unit), format(b, m.unit), ratio(b, a), format(c, m.unit), ratio(b-c, a-c))
		}
		fmt.Println()
	}
	fmt.Println("sdk/walsync: aws-sdk-go-v2's value over walsync's (above 1: the SDK uses more).")
	fmt.Println("above no-client: the same ratio after subtracting the no-client floor from both,")
	fmt.Println("i.e. what the clients themselves add. GC cycles, allocations and time include the")
	fmt.Println("harness's LTX encoding, which is the same for all three programs.")
}
