package main

// History mode's restores: to a time, each through its own counting
// proxy, checked against the writer's record; and the earliest point a
// replica can restore.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/superfly/ltx"
)

// histRestore is one restore of one database to one target.
type histRestore struct {
	db     string
	label  string    // "early", "mid", "latest"
	target time.Time // zero: latest
	wall   time.Duration
	req    reqSnap
	output string // the tool's stdout+stderr, trimmed

	rows, maxSeq int64
	lastAt       time.Time // commit start of the newest restored row
	// writer's view of the target
	commitEndLE   int64 // rows whose commit returned at or before target (incl. the initial row)
	commitStartLE int64 // rows whose commit started at or before target
	srcRowsToSeq  int64 // source rows with seq <= restored max seq (prefix check)
	reportedAt    time.Time
	status        string // "exact", "behind N", "AHEAD N", "FAILED: ..."
	problem       bool
}

func (r *histRestore) failed(format string, a ...any) *histRestore {
	r.status, r.problem = "FAILED: "+fmt.Sprintf(format, a...), true
	return r
}

var walsyncRestoredRE = regexp.MustCompile(`TXID \d+ \(([^)]+)\)`)

// restore restores d as of target (latest when zero) and checks it: the
// rows must be a prefix of the source's, hold every commit that returned
// by target and none that started after it.
func (t *histTool) restore(ctx context.Context, c *config, d *database, label string, target time.Time) *histRestore {
	r := &histRestore{db: d.name, label: label, target: target}
	dir := filepath.Join(t.work, "restore")
	_ = os.MkdirAll(dir, 0o755)
	outPath := filepath.Join(dir, fmt.Sprintf("%s-%s.db", strings.ReplaceAll(d.name, "/", "-"), label))
	px, err := startProxy(t.s3s.srv.Endpoint)
	if err != nil {
		return r.failed("proxy: %v", err)
	}
	cmd := restoreCmd(c, t.name, t.s3s.loc(px.URL, ""), d.name, outPath, target)
	var runErr error
	r.output, r.wall, runErr = runRestore(cmd, childEnv(t.s3s.srv), nil)
	px.close()
	r.req = px.snapshot()
	if f, err := os.OpenFile(filepath.Join(t.outDir, "restore.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(f, "$ %s\n%s\n(exit: %v, %v, requests %v)\n\n", strings.Join(cmd.Args, " "), r.output, runErr, r.wall, r.req.kinds)
		f.Close()
	}
	if runErr != nil {
		return r.failed("%v", runErr)
	}
	if m := walsyncRestoredRE.FindStringSubmatch(r.output); m != nil {
		r.reportedAt, _ = time.Parse(time.RFC3339Nano, m[1])
	}

	// The restored database.
	db, err := openRestored(outPath)
	if err != nil {
		return r.failed("%v", err)
	}
	defer db.Close()
	var lastAt int64
	if err := db.QueryRow(`SELECT count(*), coalesce(max(seq), -1), coalesce(max(at), 0) FROM events`).Scan(&r.rows, &r.maxSeq, &lastAt); err != nil {
		return r.failed("count: %v", err)
	}
	r.lastAt = time.Unix(0, lastAt)

	// The writer's view.
	if err := d.db.QueryRow(`SELECT count(*) FROM events WHERE seq <= ?`, r.maxSeq).Scan(&r.srcRowsToSeq); err != nil {
		return r.failed("source: %v", err)
	}
	cut := target
	if cut.IsZero() {
		cut = time.Now()
	}
	if err := d.db.QueryRow(`SELECT count(*) FROM events WHERE at <= ?`, cut.UnixNano()).Scan(&r.commitStartLE); err != nil {
		return r.failed("source: %v", err)
	}
	r.commitEndLE = committedBy(d, cut)

	switch {
	case r.rows != r.srcRowsToSeq:
		r.failed("%d rows up to seq %d, source has %d (not a prefix)", r.rows, r.maxSeq, r.srcRowsToSeq)
	case r.rows > r.commitStartLE:
		r.status, r.problem = fmt.Sprintf("AHEAD %d (rows committed after T)", r.rows-r.commitStartLE), true
	case r.rows >= r.commitEndLE:
		r.status = "exact"
	default:
		r.status = fmt.Sprintf("behind %d", r.commitEndLE-r.rows)
		if target.IsZero() {
			r.problem = true
			r.status = fmt.Sprintf("MISSING %d (latest)", r.commitEndLE-r.rows)
		}
	}
	// walsync reports the time of the state it restored: check the rows
	// against it (commits that returned by then are in, none that started
	// after it is).
	if t.name == "walsync" && !r.reportedAt.IsZero() && !target.IsZero() && !r.problem {
		var startedBy int64
		_ = d.db.QueryRow(`SELECT count(*) FROM events WHERE at <= ?`, r.reportedAt.Add(5*time.Millisecond).UnixNano()).Scan(&startedBy)
		inBy := committedBy(d, r.reportedAt)
		switch {
		case r.reportedAt.After(target):
			r.status, r.problem = fmt.Sprintf("%s; REPORTED TIME %s AFTER T", r.status, r.reportedAt.Format(time.RFC3339Nano)), true
		case r.rows < inBy || r.rows > startedBy:
			r.status, r.problem = fmt.Sprintf("%s; INCONSISTENT with reported time (rows %d, expected %d..%d)", r.status, r.rows, inBy, startedBy), true
		}
	}
	return r
}

// committedBy counts the rows of d whose commit returned by t, the
// initial row (committed before the replicator started) included.
func committedBy(d *database, t time.Time) int64 {
	n := int64(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.all {
		if !s.committed.IsZero() && !s.committed.After(t) {
			n++
		}
	}
	return n
}

// earliestPoint is the time of the oldest file under prefix that starts at
// TXID 1 (a snapshot or a compacted file): its LTX header's timestamp.
func earliestPoint(ctx context.Context, s *s3Side, prefix string) (time.Time, string, error) {
	var keys []string
	err := eachObject(ctx, s.c, s.bucket, prefix, "", func(key string, _ int64) {
		if minTX, _, err := ltx.ParseFilename(path.Base(key)); err == nil && minTX == 1 {
			keys = append(keys, key)
		}
	})
	if err != nil {
		return time.Time{}, "", err
	}
	var best time.Time
	var desc string
	for _, key := range keys {
		res, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key), Range: aws.String(fmt.Sprintf("bytes=0-%d", ltx.HeaderSize-1))})
		if err != nil {
			return best, "", fmt.Errorf("reading the header of %s: %w", key, err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return best, "", fmt.Errorf("reading the header of %s: %w", key, err)
		}
		var h ltx.Header
		if err := h.UnmarshalBinary(b); err != nil {
			return best, "", fmt.Errorf("%s: %w", key, err)
		}
		if ts := time.UnixMilli(h.Timestamp); best.IsZero() || ts.Before(best) {
			minTX, maxTX, _ := ltx.ParseFilename(path.Base(key))
			best, desc = ts, fmt.Sprintf("L%d %s-%s", levelOf(path.Base(path.Dir(key))), minTX, maxTX)
		}
	}
	if best.IsZero() {
		return best, "", fmt.Errorf("no file starting at TXID 1")
	}
	return best, desc, nil
}
