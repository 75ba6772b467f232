package main

// A scale case's writing phase and its checks at the end: the lag of the
// probed writers, which databases reached the replica, and restores of a
// sample compared row by row with the source and the writer's record.

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// markPhase records the time, CPU and requests at the start (from) or the
// end of the measured phase.
func (t *scaleTool) markPhase(from bool) {
	at, cpu, req := t.since(), cpuNow(t.rep.Pid()), t.reqs()
	if from {
		t.phaseFrom, t.cpuPhaseFrom, t.reqPhaseFrom = at, cpu, req
	} else {
		t.phaseTo, t.cpuPhaseTo, t.reqPhaseTo = at, cpu, req
	}
}

// write runs the writer on this tool's tree (lag probed on the sample).
func (t *scaleTool) write(ctx context.Context, d time.Duration) {
	for _, db := range t.lagDBs {
		probeL0(ctx, t.view, db) // skip what is in L0 already
	}
	probeCtx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	go func() { defer close(probeDone); runProbe(probeCtx, t.view, t.lagDBs, t.c.probeEvery) }()
	t.markPhase(true)
	wctx, cancel := context.WithTimeout(ctx, d)
	runWriter(wctx, t.writers)
	cancel()
	logf("%s/%s %s: writer stopped; draining %v", t.name, t.kind, t.sc.label, t.c.drain)
	time.Sleep(t.c.drain)
	t.markPhase(false)
	stopProbe()
	<-probeDone
	t.commits, _, t.commitLat = t.collectWriters(t.writers)
}

// finish collects lags, counts replicated databases, restores and verifies.
func (t *scaleTool) finish(ctx context.Context) {
	if t.rep == nil {
		return // setup failed
	}
	t.scanLog()
	if b, err := os.ReadFile(t.logPath); err == nil {
		t.tooManyOpenFile = strings.Count(string(b), "too many open files")
	}
	if len(t.lastScrape) > 0 {
		ext := ".json"
		if t.name == "litestream" {
			ext = ".prom"
		}
		_ = os.WriteFile(filepath.Join(t.outDir, "last-scrape"+ext), t.lastScrape, 0o644)
	}
	if t.startErr != "" {
		return
	}

	// Lags: a last pass, then every sentinel of the probed writers.
	for _, d := range t.lagDBs {
		probeL0(ctx, t.view, d)
	}
	t.lagStats = t.collectLags(t.lagDBs, 5, 2)
	if t.unseen > 0 {
		t.note("%d committed sentinels of the probed writers never appeared in an L0 file", t.unseen)
	}

	if names, err := t.view.names(ctx); err != nil {
		t.note("listing the replica: %v", err)
	} else {
		missing := []string{}
		for _, tn := range t.tenants {
			if names[tn.name] > 0 {
				t.dbsReplicated++
			} else if len(missing) < 5 {
				missing = append(missing, tn.name)
			}
		}
		if t.dbsReplicated < t.sc.n {
			t.fail("%d of %d databases have nothing in the replica (e.g. %s)", t.sc.n-t.dbsReplicated, t.sc.n, strings.Join(missing, ", "))
		}
	}
	t.restoreAll()
}

// restoreAll restores the restore sample with the tool's own command and
// verifies each; the first five failures are kept, all are logged.
func (t *scaleTool) restoreAll() {
	dir := filepath.Join(t.work, "restore")
	_ = os.MkdirAll(dir, 0o755)
	logPath := filepath.Join(t.outDir, "restore.log")
	lf, _ := os.Create(logPath)
	var log io.Writer = io.Discard
	if lf != nil {
		defer lf.Close()
		log = lf
	}
	var total time.Duration
	shown := 0
	bad := func(format string, a ...any) {
		if shown < 5 {
			t.fail(format, a...)
		} else if shown == 5 {
			t.fail("(further restore failures in %s)", logPath)
		}
		shown++
	}
	endpoint := ""
	if t.s3s != nil {
		endpoint = t.s3s.srv.Endpoint
	}
	for _, tn := range t.restoreT {
		t.restored++
		out := filepath.Join(dir, strings.ReplaceAll(tn.rel, "/", "-"))
		cmd := restoreCmd(t.c, t.name, t.loc(endpoint), tn.name, out, time.Time{})
		_, took, err := runRestore(cmd, t.env(), log)
		total += took
		if err != nil {
			bad("%s restore %s: %v", t.name, tn.name, err)
			continue
		}
		if msg := t.verify(tn, out); msg != "" {
			fmt.Fprintf(log, "VERIFY FAILED: %s\n", msg)
			bad("restored %s: %s", tn.name, msg)
			continue
		}
		fmt.Fprintf(log, "verified\n\n")
		t.restoreOK++
	}
	if t.restored > 0 {
		t.restoreTime = total / time.Duration(t.restored)
	}
	logf("%s/%s %s: restores verified %d/%d", t.name, t.kind, t.sc.label, t.restoreOK, t.restored)
}

// verify checks a restored database against the source and the writer's
// record; it returns "" when everything matches.
func (t *scaleTool) verify(tn *scaleTenant, restored string) string {
	got, err := readRestored(restored)
	if err != nil {
		return err.Error()
	}
	src := tn.conn
	var srcDB *sql.DB
	if src != nil {
		srcDB = src.db
	} else {
		srcDB, err = sql.Open("sqlite3", "file:"+tn.path+"?mode=ro")
		if err != nil {
			return "source: " + err.Error()
		}
		defer srcDB.Close()
	}
	want, err := readContent(srcDB)
	if err != nil {
		return "source: " + err.Error()
	}
	// The writer's record: the template row, the watch sentinel, commits.
	expect := int64(1)
	if tn.watch && !tn.committed.IsZero() {
		expect++
	}
	if src != nil {
		expect += int64(src.commits)
	}
	switch {
	case want.rows != expect:
		return fmt.Sprintf("source has %d rows, the writer recorded %d", want.rows, expect)
	case got.rows != want.rows || got.maxSeq != want.maxSeq:
		return fmt.Sprintf("%d rows (max seq %d), source has %d rows (max seq %d)", got.rows, got.maxSeq, want.rows, want.maxSeq)
	case got.sum != want.sum:
		return fmt.Sprintf("%d rows as in the source but different contents", got.rows)
	}
	return ""
}
