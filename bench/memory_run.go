package main

// Memory mode's measured runs: one process each, its peak RSS from GNU
// time (or sampled), until it exits or a condition says it is done; and
// the large databases they run on.

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
	"time"

	"github.com/walsync/walsync/internal/s3server"
)

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
	script := fmt.Sprintf(`PRAGMA page_size=%d;
PRAGMA journal_mode=OFF;
PRAGMA synchronous=OFF;
CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB);
%s
PRAGMA journal_mode=WAL;
SELECT 'pages', page_count FROM pragma_page_count;
`, pageSize, fillSQL(pageSize, pages))
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

// fillSQL is the transaction that fills table t to about pages pages:
// one row of random bytes per leaf page (interior pages make up the other
// 1%).
func fillSQL(pageSize int, pages int64) string {
	blob := 400 // one row per 512-byte page
	if pageSize > 512 {
		blob = pageSize * 3 / 4
	}
	return fmt.Sprintf(`BEGIN;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c LIMIT %d)
INSERT INTO t (b) SELECT randomblob(%d) FROM c;
COMMIT;`, pages*99/100, blob)
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
	out, err = exec.Command("sqlite3", "-batch", path, "PRAGMA wal_autocheckpoint=0;\n"+fillSQL(pageSize, pages)).CombinedOutput()
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

// litestreamFileConfig replicates db to the directory replica.
func litestreamFileConfig(db, replica, levels string) string {
	return litestreamYAML(" --memory", levels, []lsDB{{path: db, replica: replicaLoc{path: replica}}})
}
