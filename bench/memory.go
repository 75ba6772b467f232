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
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/walsync/walsync/internal/s3server"
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
	case "full":
		return []memCase{
			{label: "784 MB, 512-byte pages", pageSize: 512, pages: 1_531_250, goalMiB: 32},
			{label: "4 GiB, 4 KiB pages", pageSize: 4096, pages: 1 << 20, goalMiB: 48},
		}, nil
	}
	return nil, fmt.Errorf("--size: want small or full, got %q", size)
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

// run starts argv[0] with argv[1:], samples its VmHWM, and waits for it to
// exit or, when until is set, until until reports true, then sends it
// SIGTERM. Its output goes to a log file.
func (r *memRunner) run(ctx context.Context, label string, argv []string, until func() (bool, error), timeout time.Duration) *measured {
	r.n++
	m := &measured{logPath: filepath.Join(r.dir, fmt.Sprintf("%02d-%s.log", r.n, label))}
	rssFile := m.logPath + ".rss"
	full := argv
	if r.useTime {
		full = append([]string{timeBin, "-f", "%M", "-o", rssFile, "--"}, argv...)
	}
	logf("memory: %s: %s", label, strings.Join(argv, " "))
	lf, err := os.Create(m.logPath)
	if err != nil {
		m.err = err
		return m
	}
	defer lf.Close()
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		m.err = err
		return m
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// The measured process: time's child, or the command itself.
	target := 0
	if !r.useTime {
		target = cmd.Process.Pid
	}
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		if target > 0 {
			_ = syscall.Kill(target, syscall.SIGTERM)
		} else {
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	var waitErr error
	lastCheck := time.Time{}
loop:
	for {
		select {
		case waitErr = <-done:
			break loop
		case <-deadline:
			m.err = fmt.Errorf("not done after %v", timeout)
			if target > 0 {
				_ = syscall.Kill(target, syscall.SIGKILL)
			}
			_ = cmd.Process.Kill()
			waitErr = <-done
			break loop
		case <-tick.C:
		}
		if target == 0 {
			target = childPid(cmd.Process.Pid)
		}
		if target > 0 {
			if ps, err := sampleProc(target); err == nil {
				m.hwmKB = max(m.hwmKB, ps.hwmKB)
			}
		}
		if until != nil && !stopped && target > 0 && time.Since(lastCheck) >= 200*time.Millisecond {
			lastCheck = time.Now()
			ok, err := until()
			if err != nil {
				m.err = err
				stop()
			} else if ok {
				m.wall = time.Since(start)
				stop()
			}
		}
	}
	if m.wall == 0 {
		m.wall = time.Since(start)
	}
	if m.err == nil && waitErr != nil && !stopped {
		m.err = fmt.Errorf("%v; log tail: %s", waitErr, strings.TrimSpace(s3server.Tail(m.logPath, 600)))
	}
	if m.err == nil && until != nil && !stopped {
		m.err = fmt.Errorf("exited before it was done; log tail: %s", strings.TrimSpace(s3server.Tail(m.logPath, 600)))
	}
	m.rssKB = m.hwmKB
	if r.useTime {
		b, err := os.ReadFile(rssFile)
		if err == nil {
			// GNU time writes "Command exited with non-zero status N" first
			// when the command failed; the figure is the last line.
			lines := strings.Fields(strings.TrimSpace(string(b)))
			if len(lines) > 0 {
				if kb, err := strconv.ParseInt(lines[len(lines)-1], 10, 64); err == nil {
					m.rssKB, m.exact = kb, true
				}
			}
		}
		if !m.exact && m.err == nil {
			m.err = fmt.Errorf("no ru_maxrss from %s (%v)", timeBin, err)
		}
	}
	logf("memory: %s: peak RSS %.1f MiB (sampled VmHWM %.1f MiB), %v%s", label, m.mib(),
		float64(m.hwmKB)/1024, m.wall.Round(10*time.Millisecond), errSuffix(m.err))
	return m
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ", FAILED: " + err.Error()
}

// childPid returns a child of pid (time has one), 0 if none yet.
func childPid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// createBigDB writes a WAL-mode database of about pages pages with the
// sqlite3 CLI: one row of random bytes per page, in one transaction,
// without a journal (the fastest way to get there; the result is the
// same file), then switched to WAL.
func createBigDB(path string, pageSize int, pages int64) (int64, error) {
	blob := 400 // one row per 512-byte page
	if pageSize > 512 {
		blob = pageSize * 3 / 4
	}
	rows := pages * 99 / 100 // interior pages make up the rest
	script := fmt.Sprintf(`PRAGMA page_size=%d;
PRAGMA journal_mode=OFF;
PRAGMA synchronous=OFF;
CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB);
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c LIMIT %d)
INSERT INTO t (b) SELECT randomblob(%d) FROM c;
COMMIT;
PRAGMA journal_mode=WAL;
SELECT 'pages', page_count FROM pragma_page_count;
`, pageSize, rows, blob)
	cmd := exec.Command("sqlite3", "-batch", "-separator", " ", path)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("sqlite3: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "pages "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("sqlite3 printed no page count: %s", out)
}

// createWALHeldDB writes a database the way createBigDB does, but in WAL
// mode with automatic checkpoints off, while the returned connection stays
// open: SQLite removes a WAL only when its last connection closes, so every
// page stays in the WAL until the caller closes it.
func createWALHeldDB(path string, pageSize int, pages int64) (io.Closer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	out, err := exec.Command("sqlite3", "-batch", path, fmt.Sprintf("PRAGMA page_size=%d; PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB);", pageSize)).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("sqlite3: %v: %s", err, out)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	fail := func(err error) (io.Closer, error) { db.Close(); return nil, err }
	// A read transaction while the writer exits keeps it from
	// checkpointing on close; after it, the idle connection keeps the WAL.
	tx, err := db.Begin()
	if err != nil {
		return fail(err)
	}
	var n int
	if err := tx.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		return fail(err)
	}
	blob := 400
	if pageSize > 512 {
		blob = pageSize * 3 / 4
	}
	out, err = exec.Command("sqlite3", "-batch", path, fmt.Sprintf(`PRAGMA wal_autocheckpoint=0;
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c LIMIT %d)
INSERT INTO t (b) SELECT randomblob(%d) FROM c;
COMMIT;`, pages*99/100, blob)).CombinedOutput()
	if err != nil {
		return fail(fmt.Errorf("sqlite3: %v: %s", err, out))
	}
	if err := tx.Rollback(); err != nil {
		return fail(err)
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		return fail(err)
	}
	logf("memory: %s holds %d MB in its WAL", path, fi.Size()/1e6)
	return db, nil
}

// rowCount counts the rows of t, to check a restore against its source.
func rowCount(path string) (string, error) {
	out, err := exec.Command("sqlite3", "-batch", "file:"+path+"?mode=ro", "SELECT count(*), sum(length(b)) FROM t").CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// walsyncSynced reports whether walsync's status at addr shows its one
// database synced (TXID >= 1, nothing pending).
func walsyncSynced(addr string) func() (bool, error) {
	cl := &http.Client{Timeout: time.Second}
	return func() (bool, error) {
		resp, err := cl.Get("http://" + addr + "/status")
		if err != nil {
			return false, nil // not listening yet
		}
		defer resp.Body.Close()
		var st struct {
			DBs []struct {
				TXID     uint64    `json:"txid"`
				Pending  bool      `json:"pending"`
				LastSync time.Time `json:"last_sync"`
				Error    string    `json:"error"`
			} `json:"dbs"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return false, nil
		}
		if len(st.DBs) != 1 {
			return false, nil
		}
		d := st.DBs[0]
		return d.TXID >= 1 && !d.Pending && !d.LastSync.IsZero(), nil
	}
}

// ltxExists reports whether dir (a level directory) holds an .ltx file.
func ltxExists(dir string) func() (bool, error) {
	return func() (bool, error) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return false, nil
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".ltx") {
				return true, nil
			}
		}
		return false, nil
	}
}

// afterWrite returns a condition that waits for ready (or delay when ready
// is nil), commits one row to db, then waits for done.
func afterWrite(db string, delay time.Duration, ready, done func() (bool, error)) func() (bool, error) {
	start, wrote := time.Now(), false
	return func() (bool, error) {
		if !wrote {
			if ready != nil {
				if ok, err := ready(); !ok || err != nil {
					return false, err
				}
			} else if time.Since(start) < delay {
				return false, nil
			}
			out, err := exec.Command("sqlite3", "-batch", db, ".timeout 5000", "INSERT INTO t (b) VALUES (randomblob(100))").CombinedOutput()
			if err != nil {
				return false, fmt.Errorf("write to %s: %v: %s", db, err, out)
			}
			wrote = true
		}
		return done()
	}
}

// copyDB copies a database file with no WAL.
func copyDB(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := exec.Command("cp", "--sparse=never", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cp: %v: %s", err, out)
	}
	return nil
}

func freeAddr() string {
	p, err := s3server.FreePort()
	if err != nil {
		fatalf("free port: %v", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

func litestreamFileConfig(db, replica, levels string) string {
	return fmt.Sprintf("# generated by walsync bench --memory\n%sdbs:\n  - path: %q\n    replica:\n      type: file\n      path: %q\n", levels, db, replica)
}

// runMemory runs every case and writes the tables.
func runMemory(c *config, size string) bool {
	cases, err := memCases(size)
	if err != nil {
		fatalf("%v", err)
	}
	stamp := time.Now().Format("20060102-150405")
	runDir := filepath.Join(c.outDir, "memory-"+stamp)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		fatalf("%v", err)
	}
	resPath := filepath.Join(runDir, "results.txt")
	rf, err := os.Create(resPath)
	if err != nil {
		fatalf("%v", err)
	}
	defer rf.Close()
	out := io.MultiWriter(os.Stdout, rf)

	r := &memRunner{c: c, dir: runDir}
	if _, err := os.Stat(timeBin); err == nil {
		r.useTime = true
	} else {
		logf("memory: %s missing (apt-get install time): peak RSS is the sampled VmHWM, a lower bound", timeBin)
	}
	useLS := contains(c.tools, "litestream")
	fmt.Fprintf(out, "walsync vs Litestream v0.5.18 - peak RSS per operation, each its own process (issue 20) - %s\n", time.Now().Format(time.RFC3339))
	method := "ru_maxrss via GNU time"
	if !r.useTime {
		method = "VmHWM sampled every 20 ms (lower bound: /usr/bin/time missing)"
	}
	fmt.Fprintf(out, "host: %d CPUs; peak RSS: %s; file replicas; logs in %s\n\n", numCPU(), method, runDir)

	ok := true
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
	latest := filepath.Join(c.outDir, "memory-latest.txt")
	if b, err := os.ReadFile(resPath); err == nil {
		_ = os.WriteFile(latest, b, 0o644)
	}
	fmt.Fprintf(os.Stdout, "\nwrote %s and %s\n", resPath, latest)
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
