package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/replicaurl"
	"github.com/walsync/walsync/verify"
)

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", "walsync verify NAME|DB-PATH... -b URL [--restore] [--json] | walsync verify --all -b URL", stderr)
	var rf replicaFlags
	rf.register(fs)
	all := fs.Bool("all", false, "verify every database under the URL")
	doRestore := fs.Bool("restore", false, "also restore the latest state into a temp file and run PRAGMA integrity_check on it")
	asJSON := fs.Bool("json", false, "print a machine-readable report on stdout")
	strict := fs.Bool("strict-snapshots", false, "also fail on snapshots that restores cannot continue from to the latest state\n(time-based retention, as Litestream's, keeps none; GFS retention keeps older snapshots so on purpose)")
	tempDir := fs.String("temp-dir", "", "`directory` for the --restore temp file (default: the OS temp directory)")
	concurrency := fs.Int("concurrency", verify.DefaultConcurrency, "objects verified at once")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	names, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *all && len(names) > 0:
		return usagef("give database NAMEs or --all, not both")
	case !*all && len(names) == 0:
		return usagef("give a database NAME (see walsync list -b URL) or --all")
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	client, err := rf.open()
	if err != nil {
		return err
	}
	if *all {
		l, ok := client.(storage.ReplicaLister)
		if !ok {
			return fmt.Errorf("%s cannot list its databases", client)
		}
		if names, err = l.ListReplicas(ctx); err != nil {
			return fmt.Errorf("list the databases of %s: %w", client, err)
		}
		if len(names) == 0 {
			return replicaurl.NoDatabases(client)
		}
	}

	out := verifyOutput{Databases: []verifyEntry{}, Summary: verifySummary{ByKind: map[string]int{}}}
	// Each NAME is a replica name or the path of the database (as watch
	// was given it); a mistyped one fails before any long verification.
	for i, name := range names {
		if t := strings.Trim(name, "/"); !*all && t != "" && t != "." {
			if names[i], err = replicaurl.Resolve(ctx, client, name); err != nil {
				return err
			}
		}
	}
	for _, name := range names {
		name = strings.Trim(name, "/")
		db := client
		if name != "" && name != "." {
			db = client.Sub(name)
		}
		if name == "" {
			name = "."
		}
		rep, err := verify.Replica(ctx, db, verify.Options{
			Name: name, Restore: *doRestore, StrictSnapshots: *strict, TempDir: *tempDir, Concurrency: *concurrency, Logger: log,
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e := verifyEntry{Report: rep, OK: err == nil && rep.OK()}
		if err != nil {
			e.Report = &verify.Report{Name: name, Replica: db.String(), Problems: []verify.Problem{}}
			e.Error = err.Error()
		}
		out.add(e)
		if !*asJSON {
			printVerify(stdout, e)
		}
	}
	out.OK = out.Summary.Failed == 0
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	if !out.OK {
		s := out.Summary
		msg := fmt.Sprintf("%d of %s failed verification", s.Failed, plural(s.Databases, "database"))
		if s.Databases == 1 {
			msg = "verification failed"
		}
		if s.Problems > 0 {
			msg += fmt.Sprintf(": %s (%s)", plural(s.Problems, "problem"), kinds(s.ByKind))
		}
		return errors.New(msg)
	}
	return nil
}

// verifyOutput is the --json report.
type verifyOutput struct {
	OK        bool          `json:"ok"`
	Databases []verifyEntry `json:"databases"`
	Summary   verifySummary `json:"summary"`
}

type verifyEntry struct {
	*verify.Report
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"` // verification could not run
}

type verifySummary struct {
	Databases int            `json:"databases"`
	Failed    int            `json:"failed"`
	Files     int            `json:"files"`
	Bytes     int64          `json:"bytes"`
	Problems  int            `json:"problems"`
	ByKind    map[string]int `json:"by_kind"`
}

func (o *verifyOutput) add(e verifyEntry) {
	o.Databases = append(o.Databases, e)
	s := &o.Summary
	s.Databases++
	if !e.OK {
		s.Failed++
	}
	s.Files += e.Files
	s.Bytes += e.Bytes
	s.Problems += len(e.Problems) + e.Omitted
	for _, p := range e.Problems {
		s.ByKind[p.Kind]++
	}
}

func kinds(m map[string]int) string {
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// printVerify prints one database's result, e.g.
//
//	t1/app: 42 files, 1234567 bytes (L0 12, L1 20, L9 2), latest TXID 90: OK
//	  L0/0000000000000005-0000000000000005.ltx: corrupt: SHA-256 is …
func printVerify(w io.Writer, e verifyEntry) {
	// Names, keys and messages come from the replica: escaped for the
	// terminal.
	if e.Error != "" {
		fmt.Fprintf(w, "%s: FAILED: %s\n", termName(e.Name), termText(e.Error))
		return
	}
	var lv []string
	for level := 0; level <= storage.MaxLevel; level++ {
		if n := e.Levels[level]; n > 0 {
			lv = append(lv, fmt.Sprintf("L%d %d", level, n))
		}
	}
	fmt.Fprintf(w, "%s: %d files, %d bytes (%s), latest TXID %d", termName(e.Name), e.Files, e.Bytes, strings.Join(lv, ", "), uint64(e.LatestTXID))
	if e.WindowFrom != 0 {
		fmt.Fprintf(w, ", restorable from TXID %d", uint64(e.WindowFrom))
	}
	if n := len(e.Isolated); n > 0 {
		fmt.Fprintf(w, " (standalone older snapshots: %d)", n)
	}
	if r := e.Restore; r != nil {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(w, ", restore skipped (%s)", r.Skipped)
		case r.TXID != 0:
			fmt.Fprintf(w, ", restored TXID %d (%d pages) and passed integrity_check", uint64(r.TXID), r.Pages)
		}
	}
	if e.OK {
		fmt.Fprintln(w, ": OK")
		return
	}
	fmt.Fprintf(w, ": %s\n", plural(len(e.Problems)+e.Omitted, "problem"))
	for _, p := range e.Problems {
		fmt.Fprintf(w, "  %s\n", termText(p.String()))
	}
	if e.Omitted > 0 {
		fmt.Fprintf(w, "  and %s more, not listed (at most %d are)\n", plural(e.Omitted, "problem"), verify.MaxProblems)
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
