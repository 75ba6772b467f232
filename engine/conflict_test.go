package engine_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/storage/file"
)

// TestConflictRefuses: two engines (two processes in real life) replicate
// two copies of a database to one replica under steady writes. One of them
// meets the other's file at level 0: that database is refused for good,
// logged once at ERROR naming the replica, shown as refused in status, and
// it makes no further write, not even at stop. On main neither noticed.
func TestConflictRefuses(t *testing.T) {
	dir := t.TempDir()
	rep := file.New(filepath.Join(dir, "replica")).Sub("t1/app")
	type proc struct {
		path   string
		eng    *engine.Engine
		logs   string // the log file (an *os.File is safe for concurrent writes)
		writes atomic.Int64
		done   chan error
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(name string) *proc {
		p := &proc{path: filepath.Join(dir, name, "app.db"), logs: filepath.Join(dir, name+".log"), done: make(chan error, 1)}
		lf, err := os.Create(p.logs)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lf.Close() })
		if err := mkdir(p.path); err != nil {
			t.Fatal(err)
		}
		app := openApp(t, p.path)
		go func() {
			for i := 0; ctx.Err() == nil; i++ {
				app.Exec("INSERT INTO t (v) VALUES (?)", name)
				time.Sleep(5 * time.Millisecond)
			}
		}()
		c := counting{Client: rep, n: &p.writes, writes: &sync.Map{}}
		eng, err := engine.New(engine.Options{Databases: []engine.Database{{Path: p.path, Client: c}},
			SyncInterval: 50 * time.Millisecond, PollInterval: 10 * time.Millisecond, Workers: 1,
			Logger: slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelInfo}))})
		if err != nil {
			t.Fatal(err)
		}
		p.eng = eng
		go func() { p.done <- eng.Run(ctx) }()
		return p
	}
	a := start("a")
	waitFor(t, func() bool { return a.writes.Load() > 3 }, "A's first uploads")
	b := start("b")

	refused := func(p *proc) string {
		st, err := p.eng.Status(ctx)
		if err != nil || len(st.DBs) != 1 || st.DBs[0].State != "refused" || st.Refused != 1 {
			return ""
		}
		return st.DBs[0].Error
	}
	var loser, winner *proc
	waitFor(t, func() bool {
		switch {
		case refused(a) != "":
			loser, winner = a, b
		case refused(b) != "":
			loser, winner = b, a
		}
		return loser != nil
	}, "one of the two to be refused")
	if msg := refused(loser); !strings.Contains(msg, "another walsync (or Litestream) process writes this replica") || !strings.Contains(msg, rep.String()) {
		t.Fatalf("status error %q does not say what happened", msg)
	}
	n := loser.writes.Load()
	time.Sleep(time.Second)
	if refused(winner) != "" {
		t.Fatal("both were refused")
	}
	cancel()
	for _, p := range []*proc{a, b} {
		if err := <-p.done; err != nil {
			t.Fatalf("%s stopped with %v", p.path, err)
		}
	}
	if got := loser.writes.Load(); got != n {
		t.Fatalf("the refused database wrote %d more files after the conflict", got-n)
	}
	logBytes, _ := os.ReadFile(loser.logs)
	logs := string(logBytes)
	if c := strings.Count(logs, "another process writes this database's replica"); c != 1 || !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "replica="+rep.String()) {
		t.Fatalf("want one ERROR naming the replica, got %d:\n%s", c, logs)
	}
}
