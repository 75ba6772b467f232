package main

// Memory mode (run.sh --memory, issue 20 part 2): the peak RSS of each
// walsync operation that reads or writes a whole database, run as its own
// process on one large database, beside Litestream v0.5.18 where it has
// the same operation. The goal: memory bounded by a constant plus a small,
// spilled index, <= 32 MiB on 784 MB of 512-byte pages and <= 48 MiB on
// 4 GiB of 4 KiB pages.
//
// Peak RSS is the child's ru_maxrss as GNU time reports it. Go's os/exec
// starts children with vfork, and Linux then seeds the child's ru_maxrss
// with the parent's RSS at exec (this program's, tens of MiB), so the
// rusage exec.Cmd returns is useless here; GNU time forks for real. A
// sampled VmHWM of the measured process is kept as a cross-check (and is
// the only figure when /usr/bin/time is missing: a lower bound then).

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"
)

const timeBin = "/usr/bin/time"

// memCase is one database the operations run on.
type memCase struct {
	label    string
	pageSize int
	pages    int64   // target page count
	goalMiB  float64 // issue 20's bound for this size
}

func memCases(size string) ([]memCase, error) {
	switch size {
	case "small":
		return []memCase{
			{label: "200 MB, 512-byte pages", pageSize: 512, pages: 200e6 / 512, goalMiB: 32},
			{label: "256 MiB, 4 KiB pages", pageSize: 4096, pages: 65536, goalMiB: 48},
		}, nil
	case "objects":
		return nil, nil // memObjects
	case "full":
		return []memCase{
			{label: "784 MB, 512-byte pages", pageSize: 512, pages: 1_531_250, goalMiB: 32},
			{label: "4 GiB, 4 KiB pages", pageSize: 4096, pages: 1 << 20, goalMiB: 48},
		}, nil
	}
	return nil, fmt.Errorf("--size: want small, full or objects, got %q", size)
}

// memRow is one operation measured for both tools.
type memRow struct {
	op         string
	ws, ls     *measured // nil: not run / no such operation
	lsNote     string    // why Litestream has no figure
	comparable bool
}

// measured is one process run.
type measured struct {
	rssKB   int64 // ru_maxrss (GNU time), or the sampled VmHWM without it
	hwmKB   int64 // VmHWM last sampled while the process ran
	exact   bool  // rssKB is ru_maxrss
	wall    time.Duration
	err     error
	logPath string
}

func (m *measured) mib() float64 { return float64(m.rssKB) / 1024 }

// memRunner holds what every measured run needs.
type memRunner struct {
	c       *config
	dir     string // logs
	useTime bool
	n       int
}

// runMemory runs every case and writes the tables.
func runMemory(c *config, size string) bool {
	cases, err := memCases(size)
	if err != nil {
		fatalf("%v", err)
	}
	out := newRunReport(c.outDir, "memory-")
	runDir := out.dir

	r := &memRunner{c: c, dir: runDir}
	if _, err := os.Stat(timeBin); err == nil {
		r.useTime = true
	} else {
		logf("memory: %s missing (apt-get install time): peak RSS is the sampled VmHWM, a lower bound", timeBin)
	}
	useLS := slices.Contains(c.tools, "litestream")
	fmt.Fprintf(out, "walsync vs Litestream v0.5.18 - peak RSS per operation, each its own process (issue 20) - %s\n", time.Now().Format(time.RFC3339))
	method := "ru_maxrss via GNU time"
	if !r.useTime {
		method = "VmHWM sampled every 20 ms (lower bound: /usr/bin/time missing)"
	}
	fmt.Fprintf(out, "host: %d CPUs; peak RSS: %s; file replicas; logs in %s\n\n", numCPU(), method, runDir)

	ok := true
	if size == "objects" {
		rows, err := r.memObjects(c, useLS)
		if err != nil {
			fmt.Fprintf(out, "objects: FAILED: %v\n\n", err)
			ok = false
		} else if !printMemTable(out, memCase{label: fmt.Sprintf("a replica with %d empty L0 objects", strayObjects), pageSize: 4096, goalMiB: 48}, 256, rows) {
			ok = false
		}
	}
	for _, mc := range cases {
		rows, pages, err := r.memCase(c, mc, useLS)
		if err != nil {
			fmt.Fprintf(out, "%s: FAILED: %v\n\n", mc.label, err)
			ok = false
			continue
		}
		if !printMemTable(out, mc, pages, rows) {
			ok = false
		}
	}
	out.finish(c.outDir, "memory-latest.txt")
	return ok
}

// memCase creates one database and measures every operation on it.
func (r *memRunner) memCase(c *config, mc memCase, useLS bool) ([]*memRow, int64, error) {
	ctx := context.Background()
	work, err := os.MkdirTemp(c.tmpDir, "walsync-bench-memory-")
	if err != nil {
		return nil, 0, err
	}
	if !c.keep {
		defer os.RemoveAll(work)
	}
	db := filepath.Join(work, "db", "app.db")
	name := "db/app" // walsync's replica name: <parent>/<stem>
	if err := os.MkdirAll(filepath.Dir(db), 0o755); err != nil {
		return nil, 0, err
	}
	logf("memory: creating %s (%d pages of %d bytes)", mc.label, mc.pages, mc.pageSize)
	t0 := time.Now()
	pages, err := createBigDB(db, mc.pageSize, mc.pages)
	if err != nil {
		return nil, 0, err
	}
	logf("memory: created %d pages (%.0f MB) in %v", pages, float64(pages*int64(mc.pageSize))/1e6, time.Since(t0).Round(time.Second))

	// Litestream writes to the database it replicates (its own tables,
	// checkpoints): it gets a copy, so that each tool sees the same start.
	lsDB := filepath.Join(work, "ls", "app.db")
	if useLS {
		if err := copyDB(db, lsDB); err != nil {
			return nil, 0, err
		}
	}

	wsRep := filepath.Join(work, "walsync-replica")
	lsRep := filepath.Join(work, "litestream-replica")
	replica := filepath.Join(wsRep, filepath.FromSlash(name))
	long := 2 * time.Hour
	var rows []*memRow
	add := func(op string, ws, ls *measured, lsNote string) {
		rows = append(rows, &memRow{op: op, ws: ws, ls: ls, lsNote: lsNote, comparable: ws != nil && ls != nil})
	}

	// watch's first snapshot: the full image at L0 (no compaction yet).
	addr := freeAddr()
	ws := r.run(ctx, "walsync-watch-first", []string{c.walsync, "watch", db, "-b", wsRep, "--levels", "none", "--addr", addr},
		walsyncSynced(addr), long)
	var ls *measured
	note := "not run (--tools)"
	if useLS {
		cfg := filepath.Join(work, "litestream-first.yml")
		// One level a day long: no compaction while the first sync runs.
		_ = os.WriteFile(cfg, []byte(litestreamFileConfig(lsDB, lsRep, "levels:\n  - interval: 24h\n")), 0o644)
		ls = r.run(ctx, "litestream-replicate-first", []string{c.litestream, "replicate", "-config", cfg},
			ltxExists(filepath.Join(lsRep, "ltx", "0")), long)
		note = ""
	}
	add("watch: first snapshot", ws, ls, note)

	// snapshot: a level-9 snapshot of the whole database.
	ws = r.run(ctx, "walsync-snapshot", []string{c.walsync, "snapshot", db, "-b", wsRep}, nil, long)
	add("snapshot", ws, nil, "no such command")

	// compaction: L0 (the full image) into L1. walsync compacts levels
	// that got new files since it started: one commit, once it is up.
	addr = freeAddr()
	ws = r.run(ctx, "walsync-watch-compact", []string{c.walsync, "watch", db, "-b", wsRep, "--levels", "1s", "--addr", addr},
		afterWrite(db, 0, walsyncSynced(addr), ltxExists(filepath.Join(replica, "ltx", "1"))), long)
	ls, note = nil, "not run (--tools)"
	if useLS {
		cfg := filepath.Join(work, "litestream-compact.yml")
		_ = os.WriteFile(cfg, []byte(litestreamFileConfig(lsDB, lsRep, "levels:\n  - interval: 1s\n")), 0o644)
		ls = r.run(ctx, "litestream-replicate-compact", []string{c.litestream, "replicate", "-config", cfg},
			afterWrite(lsDB, 2*time.Second, nil, ltxExists(filepath.Join(lsRep, "ltx", "1"))), long)
		note = ""
	}
	add("compaction L0->L1 (watch --levels 1s)", ws, ls, note)

	// restore of walsync's replica, by both, checked against the source
	// (which the compaction step wrote one row to).
	srcRows, err := rowCount(db)
	if err != nil {
		return nil, 0, fmt.Errorf("count source rows: %v: %s", err, srcRows)
	}
	wsOut := filepath.Join(work, "restore-walsync.db")
	ws = r.run(ctx, "walsync-restore", []string{c.walsync, "restore", name, "-o", wsOut, "-b", wsRep}, nil, long)
	checkRestored(ws, wsOut, srcRows)
	_ = os.Remove(wsOut)
	ls, note = nil, "not run (--tools)"
	if useLS {
		lsOut := filepath.Join(work, "restore-litestream.db")
		ls = r.run(ctx, "litestream-restore", []string{c.litestream, "restore", "-o", lsOut, "file://" + replica}, nil, long)
		checkRestored(ls, lsOut, srcRows)
		_ = os.Remove(lsOut)
		note = ""
	}
	add("restore (walsync's replica)", ws, ls, note)

	// watch's first snapshot of a database still held in its WAL (an
	// application wrote it in one transaction and is still connected, so
	// nothing checkpointed it): the WAL's page map is what grows here.
	walDir := filepath.Join(work, "wal")
	walDB := filepath.Join(walDir, "db", "app.db")
	hold, err := createWALHeldDB(walDB, mc.pageSize, mc.pages)
	if err != nil {
		return nil, 0, err
	}
	addr = freeAddr()
	ws = r.run(ctx, "walsync-watch-first-wal", []string{c.walsync, "watch", walDB, "-b", filepath.Join(walDir, "replica"), "--levels", "none", "--addr", addr},
		walsyncSynced(addr), long)
	hold.Close()
	add("watch: first snapshot, whole database in its WAL", ws, nil, "not measured")
	if !c.keep {
		_ = os.RemoveAll(walDir)
	}

	ws = r.run(ctx, "walsync-verify", []string{c.walsync, "verify", name, "-b", wsRep}, nil, long)
	add("verify", ws, nil, "no such command")
	ws = r.run(ctx, "walsync-verify-restore", []string{c.walsync, "verify", name, "-b", wsRep, "--restore", "--temp-dir", work}, nil, long)
	add("verify --restore", ws, nil, "no such command")
	return rows, pages, nil
}

// checkRestored fails m unless the restored database holds the source's rows.
func checkRestored(m *measured, path, want string) {
	if m.err != nil {
		return
	}
	got, err := rowCount(path)
	if err != nil || got != want {
		m.err = fmt.Errorf("restored database: rows/bytes %q (%v), source %q", got, err, want)
	}
}

func printMemTable(w io.Writer, mc memCase, pages int64, rows []*memRow) bool {
	fmt.Fprintf(w, "%s: %d pages of %d bytes (%.0f MB); goal: walsync <= %.0f MiB\n",
		mc.label, pages, mc.pageSize, float64(pages*int64(mc.pageSize))/1e6, mc.goalMiB)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.Debug)
	fmt.Fprintf(tw, "operation\twalsync MiB\tlitestream MiB\tratio (ls/ws)\tgoal\twalsync s\tlitestream s\t\n")
	ok := true
	for _, row := range rows {
		cell := func(m *measured, note string) (string, string) {
			switch {
			case m == nil:
				return note, ""
			case m.err != nil:
				return "FAILED", ""
			}
			mark := ""
			if !m.exact {
				mark = ">="
			}
			return fmt.Sprintf("%s%.1f", mark, m.mib()), fmt.Sprintf("%.1f", m.wall.Seconds())
		}
		wsC, wsT := cell(row.ws, "-")
		lsC, lsT := cell(row.ls, row.lsNote)
		ratio := ""
		if row.comparable && row.ws.err == nil && row.ls.err == nil && row.ws.rssKB > 0 {
			ratio = fmt.Sprintf("%.2f", float64(row.ls.rssKB)/float64(row.ws.rssKB))
		}
		verdict := "pass"
		if row.ws.err != nil || row.ws.mib() > mc.goalMiB {
			verdict, ok = "FAIL", false
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t<= %.0f: %s\t%s\t%s\t\n", row.op, wsC, lsC, ratio, mc.goalMiB, verdict, wsT, lsT)
	}
	tw.Flush()
	for _, row := range rows {
		for _, m := range []*measured{row.ws, row.ls} {
			if m != nil && m.err != nil {
				fmt.Fprintf(w, "  %s (%s): %v\n", row.op, filepath.Base(m.logPath), m.err)
			}
		}
	}
	fmt.Fprintln(w)
	return ok
}
