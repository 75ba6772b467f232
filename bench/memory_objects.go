package main

// Memory with many objects (run.sh --memory --size objects): a replica
// whose level 0 holds a large number of objects it should not (a long
// outage without compaction, or objects planted in the bucket), and the
// peak RSS of each command that lists it, beside Litestream's. walsync
// holds at most storage.MaxListedFiles files of one level from one
// listing and fails that database with a clear error past it; before
// that bound, 150,000 empty objects took `list` to 73 MB, `verify` to
// 187 MB and `restore --txid` to 89 MB.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/superfly/ltx"
)

// strayObjects is how many empty L0 objects the case plants.
const strayObjects = 150_000

func (r *memRunner) memObjects(c *config, useLS bool) ([]*memRow, error) {
	ctx := context.Background()
	work, err := os.MkdirTemp(c.tmpDir, "walsync-bench-objects-")
	if err != nil {
		return nil, err
	}
	if !c.keep {
		defer os.RemoveAll(work)
	}
	db := filepath.Join(work, "db", "app.db")
	name := "db/app"
	if err := os.MkdirAll(filepath.Dir(db), 0o755); err != nil {
		return nil, err
	}
	if _, err := createBigDB(db, 4096, 256); err != nil {
		return nil, err
	}
	wsRep := filepath.Join(work, "walsync-replica")
	replica := filepath.Join(wsRep, filepath.FromSlash(name))
	long := 30 * time.Minute
	if m := r.run(ctx, "walsync-snapshot", []string{c.walsync, "snapshot", db, "-b", wsRep}, nil, long); m.err != nil {
		return nil, fmt.Errorf("snapshot: %v (%s)", m.err, m.logPath)
	}
	// Empty objects after the snapshot's TXID, as a crash or a hostile
	// writer leaves them; both tools read this one replica.
	l0 := filepath.Join(replica, "ltx", "0")
	if err := os.MkdirAll(l0, 0o755); err != nil {
		return nil, err
	}
	logf("memory: planting %d empty L0 objects in %s", strayObjects, l0)
	for i := ltx.TXID(100); i < 100+strayObjects; i++ {
		if err := os.WriteFile(filepath.Join(l0, ltx.FormatFilename(i, i)), nil, 0o644); err != nil {
			return nil, err
		}
	}

	var rows []*memRow
	add := func(op string, ws, ls *measured, lsNote string) {
		rows = append(rows, &memRow{op: op, ws: ws, ls: ls, lsNote: lsNote, comparable: ws != nil && ls != nil})
	}
	// Each walsync command must report the listing over its bound (list
	// as its database's ERROR row, the others by failing), and stay small
	// doing it.
	expectRefusal := func(m *measured) *measured {
		if b, _ := os.ReadFile(m.logPath); strings.Contains(string(b), "too many LTX files") {
			m.err = nil
		} else if m.err == nil {
			m.err = fmt.Errorf("did not report the level of %d objects as too many", strayObjects)
		}
		return m
	}
	note := "not run (--tools)"
	var ls *measured
	if useLS {
		ls = r.run(ctx, "litestream-ltx", []string{c.litestream, "ltx", "file://" + replica}, nil, long)
		ls.err = nil // listing only: its exit status is not what is measured
		note = ""
	}
	add("list", expectRefusal(r.run(ctx, "walsync-list", []string{c.walsync, "list", "-b", wsRep}, nil, long)), ls, note)

	out := filepath.Join(work, "restored.db")
	ls = nil
	if useLS {
		ls = r.run(ctx, "litestream-restore-txid", []string{c.litestream, "restore", "-o", out + ".ls", "-txid", ltx.TXID(1).String(), "file://" + replica}, nil, long)
		ls.err = nil // it may restore TXID 1 or refuse; its memory is what is measured
	}
	add("restore --txid 1", expectRefusal(r.run(ctx, "walsync-restore-txid", []string{c.walsync, "restore", name, "-o", out, "-b", wsRep, "--txid", "1"}, nil, long)), ls, note)
	add("verify", expectRefusal(r.run(ctx, "walsync-verify", []string{c.walsync, "verify", name, "-b", wsRep}, nil, long)), nil, "no such command")
	return rows, nil
}
