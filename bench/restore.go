package main

// Restoring: each tool's own restore command, and the checks on what it
// restored. Every mode restores what it replicated.

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/walsync/walsync/internal/s3server"
)

// restoreCmd returns tool's restore of the database name from loc into
// out, as of at (the latest state when at is zero).
func restoreCmd(c *config, tool string, loc replicaLoc, name, out string, at time.Time) *exec.Cmd {
	ts := ""
	if !at.IsZero() {
		ts = at.UTC().Format(time.RFC3339Nano)
	}
	if tool == "walsync" {
		args := []string{"restore", name, "-o", out}
		if loc.bucket != "" {
			args = append(args, "-b", "s3://"+loc.bucket, "--endpoint", loc.endpoint)
		} else {
			args = append(args, "-b", loc.path)
		}
		if ts != "" {
			args = append(args, "--timestamp", ts)
		}
		return exec.Command(c.walsync, args...)
	}
	u := "file://" + filepath.ToSlash(filepath.Join(loc.path, filepath.FromSlash(name)))
	if loc.bucket != "" {
		u = fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&forcePathStyle=true", loc.bucket, name, loc.endpoint, s3server.Region)
	}
	args := []string{"restore", "-o", out}
	if ts != "" {
		args = append(args, "-timestamp", ts)
	}
	return exec.Command(c.litestream, append(args, u)...)
}

// runRestore runs a restore command, logs it to log (if not nil) and
// returns its trimmed output, how long it took, and an error naming the
// output's last line.
func runRestore(cmd *exec.Cmd, env []string, log io.Writer) (output string, took time.Duration, err error) {
	cmd.Env = env
	t0 := time.Now()
	b, err := cmd.CombinedOutput()
	took = time.Since(t0)
	output = strings.TrimSpace(string(b))
	if log != nil {
		fmt.Fprintf(log, "$ %s\n%s\n(exit: %v)\n", strings.Join(cmd.Args, " "), output, err)
	}
	if err != nil {
		return output, took, fmt.Errorf("%v: %s", err, lastLine(output))
	}
	return output, took, nil
}

// openRestored opens a restored database read-only; an error if PRAGMA
// integrity_check fails or finds a problem.
func openRestored(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	var integ string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&integ); err != nil {
		db.Close()
		return nil, fmt.Errorf("integrity_check: %w", err)
	}
	if integ != "ok" {
		db.Close()
		return nil, fmt.Errorf("integrity_check: %s", integ)
	}
	return db, nil
}

// readRestored checks a restored database's integrity and reads its
// content.
func readRestored(path string) (dbContent, error) {
	db, err := openRestored(path)
	if err != nil {
		return dbContent{}, err
	}
	defer db.Close()
	c, err := readContent(db)
	if err != nil {
		return c, fmt.Errorf("reading: %w", err)
	}
	return c, nil
}

// dbContent sums up the events table of a database.
type dbContent struct {
	rows, maxSeq int64
	sum          string // over every row, payload included
}

func readContent(db *sql.DB) (dbContent, error) {
	var c dbContent
	rows, err := db.Query(`SELECT id, seq, sentinel, at, payload FROM events ORDER BY id`)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	h := sha256.New()
	c.maxSeq = math.MinInt64
	for rows.Next() {
		var id, seq, at int64
		var s string
		var p []byte
		if err := rows.Scan(&id, &seq, &s, &at, &p); err != nil {
			return c, err
		}
		fmt.Fprintf(h, "%d|%d|%s|%d|%d|", id, seq, s, at, len(p))
		h.Write(p)
		c.rows++
		c.maxSeq = max(c.maxSeq, seq)
	}
	c.sum = hex.EncodeToString(h.Sum(nil))
	return c, rows.Err()
}

// lastLine is the last line of a command's output, shortened.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
