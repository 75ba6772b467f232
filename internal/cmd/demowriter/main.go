// Command demowriter is the application of scripts/demo.sh. It creates a
// WAL-mode database and commits one row a second until stopped, printing a
// line for each sync it sees land in the replica (TXID, bytes, lag):
//
//	demowriter DB REPLICA-DIR
//
// and compares a restored copy with the database, row by row:
//
//	demowriter compare DB RESTORED
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/replicaurl"
)

func main() {
	switch {
	case len(os.Args) == 4 && os.Args[1] == "compare":
		os.Exit(compare(os.Args[2], os.Args[3]))
	case len(os.Args) == 3:
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := write(ctx, os.Args[1], os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "demowriter:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: demowriter DB REPLICA-DIR | demowriter compare DB RESTORED")
		os.Exit(2)
	}
}

// write commits a row a second into path until ctx ends, and reports each
// new TXID that appears in the replica of path under replicaDir.
func write(ctx context.Context, path, replicaDir string) error {
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at TEXT NOT NULL, note TEXT)"); err != nil {
		return err
	}
	name, err := replicaurl.Name(path)
	if err != nil {
		return err
	}
	root, err := replicaurl.Open(replicaDir, replicaurl.Options{})
	if err != nil {
		return err
	}
	rep := replicaSeen{client: root.Sub(name)}
	// Where an earlier run left the replica: not a sync of this run.
	rep.info, _ = restore.Describe(ctx, rep.client)
	var pending []time.Time // commits not yet seen in the replica
	commit := time.NewTicker(time.Second)
	defer commit.Stop()
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-commit.C:
			if _, err := db.Exec("INSERT INTO events (at, note) VALUES (?, ?)", now.UTC().Format(time.RFC3339Nano), "event"); err != nil {
				return err
			}
			pending = append(pending, time.Now())
		case <-poll.C:
			pending = rep.look(ctx, pending)
		}
	}
}

// replicaSeen follows the replica's latest TXID.
type replicaSeen struct {
	client storage.Client
	info   *restore.DatabaseInfo
}

// look reads the replica and, when its latest TXID moved, prints a line
// for the sync: its TXID, the commits it shipped, the database size, the
// bytes stored, and how long the oldest of those commits waited. It
// returns the commits still not shipped.
func (r *replicaSeen) look(ctx context.Context, pending []time.Time) []time.Time {
	info, err := restore.Describe(ctx, r.client)
	if err != nil || info == nil || (r.info != nil && info.TXID == r.info.TXID) {
		return pending
	}
	r.info = info
	var stored int64
	for _, b := range info.BytesPerLevel {
		stored += b
	}
	// The sync's time is when walsync read the WAL: commits before it are
	// in the sync, and the oldest of them waited longest.
	n := 0
	for n < len(pending) && !pending[n].After(info.Time) {
		n++
	}
	lag := time.Duration(0)
	if n > 0 {
		lag = info.Time.Sub(pending[0])
	}
	fmt.Printf("%s  synced TXID %-4d %d commit(s)  database %d B  replica %d B  lag %.1fs\n",
		info.Time.Local().Format("15:04:05"), info.TXID, n, info.Size, stored, lag.Seconds())
	return pending[n:]
}

// compare reads every row of the database at live and of the restored
// copy (both read-only) and says whether they match, row by row.
func compare(live, restored string) int {
	a, err := rows(live, false)
	if err == nil {
		var b [][3]string
		if b, err = rows(restored, true); err == nil {
			err = sameRows(a, b)
		}
	}
	if err != nil {
		fmt.Printf("MISMATCH: %s and %s differ: %v\n", restored, live, err)
		return 1
	}
	last := "none"
	if len(a) > 0 {
		last = a[len(a)-1][0]
	}
	fmt.Printf("OK: %s matches %s row by row: %d rows, the last id %s\n", restored, live, len(a), last)
	return 0
}

// rows returns every row of events, in id order. The file is opened
// read-only: the comparison writes into neither database. A restored file,
// which nothing else has open, is read as immutable, leaving no -wal or
// -shm beside it.
func rows(path string, immutable bool) ([][3]string, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	dsn := "file:" + path + "?mode=ro"
	if immutable {
		dsn += "&immutable=1"
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rs, err := db.Query("SELECT id, at, coalesce(note, '') FROM events ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer rs.Close()
	var out [][3]string
	for rs.Next() {
		var r [3]string
		if err := rs.Scan(&r[0], &r[1], &r[2]); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

// sameRows names the first row that differs.
func sameRows(live, restored [][3]string) error {
	for i := 0; i < min(len(live), len(restored)); i++ {
		if live[i] != restored[i] {
			return fmt.Errorf("row %d: the database has %q, the restore %q", i+1, live[i], restored[i])
		}
	}
	if len(live) != len(restored) {
		return errors.New(fmt.Sprint("the database has ", len(live), " rows, the restore ", len(restored)))
	}
	return nil
}
