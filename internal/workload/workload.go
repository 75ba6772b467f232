// Package workload drives a SQLite database the way hostile applications
// do — concurrent writers in this process and in a separate sqlite3
// process, random transactions with blobs up to 1 MB, rollbacks, VACUUM and
// checkpoints of every mode — and records what every committed transaction
// wrote, so that any restored copy can be checked row by row.
package workload

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // the real SQLite
)

// Options configure a workload.
type Options struct {
	Path        string
	Writers     int  // in-process writer connections
	External    bool // one more writer: the sqlite3 CLI in its own process
	MaxBlob     int  // largest blob, bytes (default 1 MiB)
	Checkpoints bool // a connection firing random checkpoints of every mode
	Vacuum      bool // occasional VACUUM
	Seed        uint64
	Pace        time.Duration // pause between a writer's transactions
}

// change is one row's state after a transaction: nil hash means deleted.
type change struct {
	id   int64
	hash []byte
	size int
}

// txn is one committed transaction of one writer.
type txn struct {
	seq     int64
	changes []change
}

// Workload runs the writers and keeps their records.
type Workload struct {
	opts  Options
	mu    sync.Mutex
	log   map[int64][]txn // writer -> committed transactions in order
	state map[int64]*writerState
	errs  []error
}

// writerState is where a writer stands, so that a later Run continues its
// sequence numbers and row IDs instead of starting over (which would reuse
// them and corrupt the record).
type writerState struct {
	r      *rand.Rand
	live   map[int64]bool
	nextID int64
}

// writer returns writer w's state, creating it on first use. Its next
// sequence number is one more than its committed transactions.
func (wl *Workload) writer(w int64) (*writerState, int64) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	st := wl.state[w]
	if st == nil {
		st = &writerState{r: rand.New(rand.NewPCG(wl.opts.Seed, uint64(w))), live: map[int64]bool{}}
		wl.state[w] = st
	}
	return st, int64(len(wl.log[w])) + 1
}

// Create makes a new WAL-mode database with the workload's schema.
func Create(path string, pageSize int) error {
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		fmt.Sprintf("PRAGMA page_size=%d", pageSize),
		"PRAGMA journal_mode=WAL",
		"CREATE TABLE rows (id INTEGER PRIMARY KEY, w INTEGER NOT NULL, seq INTEGER NOT NULL, h TEXT NOT NULL, v BLOB)",
		"CREATE TABLE progress (w INTEGER PRIMARY KEY, seq INTEGER NOT NULL)",
		"CREATE INDEX rows_w ON rows (w, seq)",
	} {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// New returns a workload on an existing database made by Create.
func New(opts Options) *Workload {
	if opts.MaxBlob <= 0 {
		opts.MaxBlob = 1 << 20
	}
	return &Workload{opts: opts, log: map[int64][]txn{}, state: map[int64]*writerState{}}
}

// Committed returns how many transactions each writer committed.
func (wl *Workload) Committed() map[int64]int64 {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	out := map[int64]int64{}
	for w, ts := range wl.log {
		out[w] = int64(len(ts))
	}
	return out
}

// Total returns the number of committed transactions.
func (wl *Workload) Total() int64 {
	var n int64
	for _, c := range wl.Committed() {
		n += c
	}
	return n
}

// Run writes until ctx ends. It returns the first unexpected error. A later
// Run (not a concurrent one) continues where the previous one stopped.
func (wl *Workload) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := 0; i < wl.opts.Writers; i++ {
		wg.Add(1)
		go func(w int64) {
			defer wg.Done()
			wl.fail(wl.runWriter(ctx, w))
		}(int64(i + 1))
	}
	if wl.opts.External {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wl.fail(wl.runExternal(ctx, int64(wl.opts.Writers+1)))
		}()
	}
	if wl.opts.Checkpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wl.fail(wl.runCheckpointer(ctx))
		}()
	}
	wg.Wait()
	wl.mu.Lock()
	defer wl.mu.Unlock()
	if len(wl.errs) > 0 {
		return wl.errs[0]
	}
	return nil
}

func (wl *Workload) fail(err error) {
	if err == nil || err == context.Canceled || err == context.DeadlineExceeded {
		return
	}
	wl.mu.Lock()
	wl.errs = append(wl.errs, err)
	wl.mu.Unlock()
}

// blob returns the deterministic payload of (writer, seq, id).
func blob(w, seq, id int64, n int) []byte {
	r := rand.New(rand.NewPCG(uint64(w)<<40^uint64(seq), uint64(id)))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func hashOf(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// plan draws a random transaction for writer w over its live rows.
func (wl *Workload) plan(r *rand.Rand, w, seq int64, live map[int64]bool, nextID *int64, maxBlob int) []change {
	var out []change
	n := 1 + r.IntN(5)
	ids := make([]int64, 0, len(live))
	for id := range live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	touched := map[int64]bool{}
	for i := 0; i < n; i++ {
		size := 16 + r.IntN(2000)
		switch p := r.IntN(100); {
		case p < 3:
			size = r.IntN(maxBlob + 1) // a large one: spills to the WAL before commit
		case p < 15:
			size = r.IntN(64 << 10)
		}
		op := r.IntN(10)
		if len(ids) == 0 || op < 5 {
			*nextID++
			id := w*1_000_000_000 + *nextID
			out = append(out, change{id: id, hash: hashOf(blob(w, seq, id, size)), size: size})
			touched[id] = true
			continue
		}
		id := ids[r.IntN(len(ids))]
		if touched[id] {
			continue
		}
		touched[id] = true
		if op < 8 {
			out = append(out, change{id: id, hash: hashOf(blob(w, seq, id, size)), size: size})
		} else {
			out = append(out, change{id: id})
		}
	}
	return out
}

func (wl *Workload) record(w int64, t txn, live map[int64]bool) {
	for _, c := range t.changes {
		if c.hash == nil {
			delete(live, c.id)
		} else {
			live[c.id] = true
		}
	}
	wl.mu.Lock()
	wl.log[w] = append(wl.log[w], t)
	wl.mu.Unlock()
}

func (wl *Workload) pause(ctx context.Context, r *rand.Rand) {
	if wl.opts.Pace <= 0 {
		return
	}
	d := wl.opts.Pace/2 + time.Duration(r.Int64N(int64(wl.opts.Pace)))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (wl *Workload) runWriter(ctx context.Context, w int64) error {
	db, err := sql.Open("sqlite3", "file:"+wl.opts.Path+"?_busy_timeout=10000&_txlock=immediate&_cache_size=20")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	st, seq := wl.writer(w)
	r, live := st.r, st.live
	for ctx.Err() == nil {
		wl.pause(ctx, r)
		if wl.opts.Vacuum && r.IntN(200) == 0 {
			if _, err := db.Exec("VACUUM"); err != nil && !isBusy(err) {
				return fmt.Errorf("writer %d: VACUUM: %w", w, err)
			}
			continue
		}
		changes := wl.plan(r, w, seq, live, &st.nextID, wl.opts.MaxBlob)
		rollback := r.IntN(20) == 0
		committed, err := wl.apply(db, w, seq, changes, rollback)
		if err != nil {
			return fmt.Errorf("writer %d txn %d: %w", w, seq, err)
		}
		if committed {
			wl.record(w, txn{seq: seq, changes: changes}, live)
			seq++
		}
	}
	return nil
}

func (wl *Workload) apply(db *sql.DB, w, seq int64, changes []change, rollback bool) (bool, error) {
	tx, err := db.Begin()
	if err != nil {
		if isBusy(err) {
			return false, nil
		}
		return false, err
	}
	for _, c := range changes {
		if c.hash == nil {
			_, err = tx.Exec("DELETE FROM rows WHERE id = ?", c.id)
		} else {
			_, err = tx.Exec("INSERT OR REPLACE INTO rows (id, w, seq, h, v) VALUES (?, ?, ?, ?, ?)",
				c.id, w, seq, hex.EncodeToString(c.hash), blob(w, seq, c.id, c.size))
		}
		if err != nil {
			tx.Rollback()
			if isBusy(err) {
				return false, nil
			}
			return false, err
		}
	}
	if _, err := tx.Exec("INSERT OR REPLACE INTO progress (w, seq) VALUES (?, ?)", w, seq); err != nil {
		tx.Rollback()
		return false, err
	}
	if rollback {
		return false, tx.Rollback()
	}
	if err := tx.Commit(); err != nil {
		if isBusy(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

func isBusy(err error) bool {
	s := err.Error()
	return strings.Contains(s, "database is locked") || strings.Contains(s, "busy")
}

// runExternal writes through the sqlite3 CLI: another process, with its own
// POSIX locks and its own view of the WAL index.
func (wl *Workload) runExternal(ctx context.Context, w int64) error {
	cmd := exec.Command("sqlite3", "-batch", wl.opts.Path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sqlite3 CLI (apt-get install sqlite3): %w", err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	out := bufio.NewReader(stdout)
	if _, err := io.WriteString(stdin, ".timeout 10000\n"); err != nil {
		return err
	}
	st, seq := wl.writer(w)
	r, live := st.r, st.live
	for ctx.Err() == nil {
		wl.pause(ctx, r)
		changes := wl.plan(r, w, seq, live, &st.nextID, 32<<10)
		var sb strings.Builder
		sb.WriteString("BEGIN IMMEDIATE;\n")
		for _, c := range changes {
			if c.hash == nil {
				fmt.Fprintf(&sb, "DELETE FROM rows WHERE id = %d;\n", c.id)
			} else {
				fmt.Fprintf(&sb, "INSERT OR REPLACE INTO rows (id, w, seq, h, v) VALUES (%d, %d, %d, '%s', X'%s');\n",
					c.id, w, seq, hex.EncodeToString(c.hash), hex.EncodeToString(blob(w, seq, c.id, c.size)))
			}
		}
		fmt.Fprintf(&sb, "INSERT OR REPLACE INTO progress (w, seq) VALUES (%d, %d);\nCOMMIT;\n", w, seq)
		// Whatever happened, end any open transaction and report the
		// committed sequence number.
		fmt.Fprintf(&sb, "ROLLBACK;\nSELECT 'ack:' || coalesce((SELECT seq FROM progress WHERE w = %d), 0);\n", w)
		if _, err := io.WriteString(stdin, sb.String()); err != nil {
			return fmt.Errorf("sqlite3 CLI: %w (stderr: %s)", err, stderr.String())
		}
		line, err := out.ReadString('\n')
		if err != nil {
			return fmt.Errorf("sqlite3 CLI: %w (stderr: %s)", err, stderr.String())
		}
		var got int64
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "ack:%d", &got); err != nil {
			return fmt.Errorf("sqlite3 CLI said %q", line)
		}
		if got == seq {
			wl.record(w, txn{seq: seq, changes: changes}, live)
			seq++
		} else if got != seq-1 {
			return fmt.Errorf("sqlite3 CLI writer: progress is %d, expected %d or %d", got, seq-1, seq)
		}
	}
	return nil
}

func (wl *Workload) runCheckpointer(ctx context.Context) error {
	db, err := sql.Open("sqlite3", "file:"+wl.opts.Path+"?_busy_timeout=200")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("PRAGMA journal_size_limit = 65536"); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(wl.opts.Seed, 999))
	modes := []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(20+r.IntN(300)) * time.Millisecond):
		}
		mode := modes[r.IntN(len(modes))]
		if _, err := db.Exec("PRAGMA wal_checkpoint(" + mode + ")"); err != nil && !isBusy(err) {
			return fmt.Errorf("checkpoint %s: %w", mode, err)
		}
	}
	return nil
}

// Verify checks a (restored) database against the record: every writer's
// rows must be exactly what its first n committed transactions wrote, where
// n is the sequence number in the database's progress table. It returns
// the per-writer n found.
func (wl *Workload) Verify(path string) (map[int64]int64, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		return nil, fmt.Errorf("integrity_check: %q %v", ok, err)
	}
	progress := map[int64]int64{}
	rows, err := db.Query("SELECT w, seq FROM progress")
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var w, s int64
		if err := rows.Scan(&w, &s); err != nil {
			rows.Close()
			return nil, err
		}
		progress[w] = s
	}
	rows.Close()

	wl.mu.Lock()
	defer wl.mu.Unlock()
	want := map[int64]change{}
	for w, s := range progress {
		log := wl.log[w]
		if int64(len(log)) < s {
			return nil, fmt.Errorf("writer %d: database says %d transactions committed, the record has %d", w, s, len(log))
		}
		for _, t := range log[:s] {
			for _, c := range t.changes {
				if c.hash == nil {
					delete(want, c.id)
				} else {
					want[c.id] = c
				}
			}
		}
	}
	got := map[int64]bool{}
	rows, err = db.Query("SELECT id, w, h, v FROM rows")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, w int64
		var h string
		var v []byte
		if err := rows.Scan(&id, &w, &h, &v); err != nil {
			return nil, err
		}
		c, ok := want[id]
		if !ok {
			return nil, fmt.Errorf("row %d (writer %d) should not exist at writer %d's transaction %d", id, w, w, progress[w])
		}
		if hex.EncodeToString(c.hash) != h || !slices.Equal(hashOf(v), c.hash) {
			return nil, fmt.Errorf("row %d (writer %d) holds the wrong data at transaction %d", id, w, progress[w])
		}
		got[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for id := range want {
		if !got[id] {
			return nil, fmt.Errorf("row %d is missing (writer %d at transaction %d)", id, id/1_000_000_000, progress[id/1_000_000_000])
		}
	}
	return progress, nil
}
