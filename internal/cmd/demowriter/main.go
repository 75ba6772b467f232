// Command demowriter is the application of scripts/demo.sh: it creates a
// WAL-mode database and commits one row a second until stopped.
package main

import (
	"database/sql"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: demowriter DB")
		os.Exit(2)
	}
	db, err := sql.Open("sqlite3", "file:"+os.Args[1]+"?_journal_mode=WAL&_busy_timeout=5000")
	if err != nil {
		fail(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at TEXT NOT NULL, note TEXT)"); err != nil {
		fail(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			if _, err := db.Exec("INSERT INTO events (at, note) VALUES (?, ?)", now.UTC().Format(time.RFC3339Nano), fmt.Sprintf("event %d", n)); err != nil {
				fail(err)
			}
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "demowriter:", err)
	os.Exit(1)
}
