// Package faults_test is walsync's reliability proof: a black-box fault
// suite that drives the built walsync binary through storage faults (a
// fault-injecting proxy in front of a real S3 server), crashes (kill -9 at
// chosen points of sync, snapshot, compaction and retention; the staging
// directory removed between runs), exhausted local resources (full and
// read-only filesystems, the fd limit, clock skew), hostile input (files that
// are not WAL databases, corrupt, truncated, foreign and path-escaping
// objects, odd paths) and credential leaks, and prints a summary table.
//
// Every row of the table is backed by assertions: "transactions written" are
// the transactions the workload committed (internal/workload records every
// one), "transactions lost" are those missing from a restore of the latest
// state taken after walsync caught up (each restore is checked with
// PRAGMA integrity_check and row by row against the record), and "restores
// verified" counts restores that passed those checks.
//
// Bounded by default (about 3-4 minutes on 2 cores, part of
// scripts/test.sh). The long version, with many more runs per scenario, the
// full 30 s storage outage and a stall longer than the S3 client's 60 s
// response timeout:
//
//	WALSYNC_FAULTS=long go test -count=1 -timeout 4h -v -run . ./tests/faults/
//
// -faults.runs=N (after -args) sets the number of runs per scenario
// explicitly. The table is printed to standard output after the tests
// (shown with -v, or when a test fails) and written to the file named by
// WALSYNC_FAULTS_TABLE, which scripts/test.sh prints after its run.
package faults_test

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

var (
	flagRuns = flag.Int("faults.runs", 0, "runs per scenario (0: 1-2 by default, many more with WALSYNC_FAULTS=long)")
	flagLong = flag.Bool("faults.long", false, "the long version (same as WALSYNC_FAULTS=long)")
)

// long reports whether the long version runs.
func isLong() bool { return *flagLong || os.Getenv("WALSYNC_FAULTS") == "long" }

// runs returns how many runs a scenario makes: short by default, long in
// the long version, or -faults.runs.
func runs(short, long int) int {
	switch {
	case *flagRuns > 0:
		return *flagRuns
	case isLong():
		return long
	}
	return short
}

// pick returns short by default and long in the long version.
func pick[T any](short, lng T) T {
	if isLong() {
		return lng
	}
	return short
}

func TestMain(m *testing.M) {
	flag.Parse()
	start := time.Now()
	code := m.Run()
	if err := testenv.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
	}
	testenv.RemoveBinary()
	// Everything walsync printed during the suite is searched for every
	// credential it was given: this is the "credentials never appear" proof
	// over the whole suite, faults and crashes included.
	leaks := scanAllForSecrets()
	if err := reportTable(os.Stdout, time.Since(start), leaks); err != nil {
		fmt.Fprintf(os.Stderr, "faults: %v\n", err)
		code = max(code, 1)
	}
	if len(leaks) > 0 && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// row is one line of the summary table.
type row struct {
	Scenario string
	mu       sync.Mutex
	Runs     int64
	Written  int64
	Lost     int64
	Restores int64
	Result   string
	Notes    []string
	order    int
}

var registry struct {
	sync.Mutex
	rows []*row
}

// scenario registers a table row for the test t; its result is set from the
// test's outcome when the test ends.
func scenario(t *testing.T, name string) *row {
	t.Helper()
	registry.Lock()
	r := &row{Scenario: name, order: len(registry.rows)}
	registry.rows = append(registry.rows, r)
	registry.Unlock()
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case t.Failed():
			r.Result = "FAIL"
		case t.Skipped():
			r.Result = "SKIP"
		default:
			r.Result = "PASS"
		}
	})
	return r
}

func (r *row) run()          { r.mu.Lock(); r.Runs++; r.mu.Unlock() }
func (r *row) wrote(n int64) { r.mu.Lock(); r.Written += n; r.mu.Unlock() }
func (r *row) lost(n int64)  { r.mu.Lock(); r.Lost += n; r.mu.Unlock() }
func (r *row) restored()     { r.mu.Lock(); r.Restores++; r.mu.Unlock() }
func (r *row) note(f string, a ...any) {
	r.mu.Lock()
	r.Notes = append(r.Notes, fmt.Sprintf(f, a...))
	r.mu.Unlock()
}

// envTable names the file the table is also written to: go test shows a
// passing package's output only with -v, which scripts/test.sh does not
// use for the whole module.
const envTable = "WALSYNC_FAULTS_TABLE"

// reportTable prints the table to stdout and, when envTable is set, writes
// it to that file.
func reportTable(stdout io.Writer, elapsed time.Duration, leaks []string) error {
	var buf bytes.Buffer
	printTable(&buf, elapsed, leaks)
	if _, err := stdout.Write(buf.Bytes()); err != nil {
		return err
	}
	if p := os.Getenv(envTable); p != "" {
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write the table to %s=%s: %w", envTable, p, err)
		}
	}
	return nil
}

func printTable(w io.Writer, elapsed time.Duration, leaks []string) {
	registry.Lock()
	rows := append([]*row(nil), registry.rows...)
	registry.Unlock()
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].order < rows[j].order })
	mode := "bounded"
	if isLong() {
		mode = "long"
	}
	fmt.Fprintf(w, "\n== walsync fault suite (%s, %s, %s)\n", mode, elapsed.Round(time.Second), time.Now().UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tRUNS\tTXNS WRITTEN\tTXNS LOST\tRESTORES VERIFIED\tRESULT")
	var tot row
	for _, r := range rows {
		r.mu.Lock()
		res := r.Result
		if res == "" {
			res = "NOT RUN"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", r.Scenario, r.Runs, r.Written, r.Lost, r.Restores, res)
		tot.Runs += r.Runs
		tot.Written += r.Written
		tot.Lost += r.Lost
		tot.Restores += r.Restores
		r.mu.Unlock()
	}
	secrets := "PASS"
	if len(leaks) > 0 {
		secrets = "FAIL"
	}
	fmt.Fprintf(tw, "secrets in all captured output (%d outputs)\t-\t-\t-\t-\t%s\n", capturedCount(), secrets)
	fmt.Fprintf(tw, "TOTAL\t%d\t%d\t%d\t%d\t\n", tot.Runs, tot.Written, tot.Lost, tot.Restores)
	tw.Flush()
	for _, r := range rows {
		seen := map[string]int{}
		var order []string
		for _, n := range r.Notes {
			if seen[n] == 0 {
				order = append(order, n)
			}
			seen[n]++
		}
		for _, n := range order {
			if seen[n] > 1 {
				n = fmt.Sprintf("%s (×%d)", n, seen[n])
			}
			fmt.Fprintf(w, "  note: %s: %s\n", r.Scenario, n)
		}
	}
	for _, l := range leaks {
		fmt.Fprintf(w, "  LEAK: %s\n", l)
	}
	fmt.Fprintln(w, strings.Repeat("=", 20))
}

// TestTableFile: with WALSYNC_FAULTS_TABLE set, the table printed after
// the suite is also in that file, where scripts/test.sh finds it (go test
// hides a passing package's standard output).
func TestTableFile(t *testing.T) {
	path := t.TempDir() + "/table.txt"
	t.Setenv(envTable, path)
	var stdout bytes.Buffer
	if err := reportTable(&stdout, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"== walsync fault suite", "SCENARIO", "TOTAL"} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("%s holds no %q:\n%s", envTable, want, b)
		}
	}
	if string(b) != stdout.String() {
		t.Errorf("the file and standard output differ:\n%s\n---\n%s", b, stdout.String())
	}
}
