package main

// The workload: WAL databases written at 1 commit/s each, every commit
// with a sentinel value, and the probe that finds those values in the
// replica's L0 files to time the replication lag.

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"
)

// database is one workload database and, if sampled, its probe state.
type database struct {
	idx     int
	name    string // replica sub-path, "tN/app"
	path    string
	db      *sql.DB
	sampled bool

	// written by the writer goroutine
	commits   int
	commitLat []time.Duration
	writeErrs []string

	// sentinels: written by the writer, read by the probe
	mu        sync.Mutex
	pending   map[string]*sentinel // not yet seen in an L0 object
	all       []*sentinel
	lastKey   string // probe: last L0 key processed
	objects   int    // probe: L0 objects decoded
	probeErrs []string
}

// sentinel is a value one commit wrote, to find in the replica.
type sentinel struct {
	value     string
	committed time.Time // zero until the commit returned
	seenAt    time.Time // list response that first showed an object containing it
}

// eventsSchema is the table the writer appends to.
const eventsSchema = `CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, sentinel TEXT NOT NULL, at INTEGER NOT NULL, payload BLOB NOT NULL)`

// openWriter opens the one connection an application holds on a WAL
// database, creating the file if needed.
func openWriter(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		db.Close()
		return nil, fmt.Errorf("%s: journal_mode %q (%v)", path, mode, err)
	}
	return db, nil
}

// sampleIndexes returns max indexes of 0..n-1 spread evenly (all when n
// is at most max).
func sampleIndexes(n, max int) []int {
	if n <= max {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	idx := make([]int, max)
	for i := range idx {
		idx[i] = i * n / max
	}
	return idx
}

// createDatabases makes n WAL databases dir/tI/app.db with the schema and
// one initial row, and keeps a writer connection open on each.
func createDatabases(dir string, n int, sample []int) ([]*database, error) {
	sampled := map[int]bool{}
	for _, i := range sample {
		sampled[i] = true
	}
	dbs := make([]*database, 0, n)
	for i := range n {
		name := fmt.Sprintf("t%d", i+1)
		p := filepath.Join(dir, name, "app.db")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return dbs, err
		}
		db, err := openWriter(p)
		if err != nil {
			return dbs, err
		}
		dbs = append(dbs, &database{idx: i, name: name + "/app", path: p, db: db, sampled: sampled[i], pending: map[string]*sentinel{}})
		if _, err := db.Exec(eventsSchema); err != nil {
			return dbs, fmt.Errorf("%s: %w", p, err)
		}
		if _, err := db.Exec(`INSERT INTO events(seq, sentinel, at, payload) VALUES (0, 'init', ?, randomblob(1024))`, time.Now().UnixNano()); err != nil {
			return dbs, fmt.Errorf("%s: %w", p, err)
		}
	}
	return dbs, nil
}

// closeDatabases closes the writer connections.
func closeDatabases(dbs []*database) {
	for _, d := range dbs {
		if d != nil && d.db != nil {
			d.db.Close()
		}
	}
}

// runWriter commits one transaction per second per database until ctx ends,
// database i at offset i/n of each second.
func runWriter(ctx context.Context, dbs []*database) {
	n := len(dbs)
	start := time.Now().Truncate(time.Millisecond).Add(100 * time.Millisecond)
	var wg sync.WaitGroup
	for _, d := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, 1024)
			offset := time.Duration(d.idx) * time.Second / time.Duration(n)
			for seq := 1; ; seq++ {
				at := start.Add(offset + time.Duration(seq-1)*time.Second)
				if wait := time.Until(at); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-ctx.Done():
						t.Stop()
						return
					case <-t.C:
					}
				} else if ctx.Err() != nil {
					return
				}
				_, _ = cryptorand.Read(payload)
				s := &sentinel{value: fmt.Sprintf("SENTINEL-%05d-%07d-%s", d.idx, seq, randomHex(6))}
				if d.sampled {
					d.mu.Lock()
					d.pending[s.value] = s
					d.all = append(d.all, s)
					d.mu.Unlock()
				}
				t0 := time.Now()
				_, err := d.db.Exec(`INSERT INTO events(seq, sentinel, at, payload) VALUES (?, ?, ?, ?)`, seq, s.value, t0.UnixNano(), payload)
				t1 := time.Now()
				if err != nil {
					d.writeErrs = append(d.writeErrs, fmt.Sprintf("seq %d: %v", seq, err))
					if d.sampled {
						d.mu.Lock()
						delete(d.pending, s.value)
						d.all = d.all[:len(d.all)-1]
						d.mu.Unlock()
					}
					continue
				}
				d.commits++
				d.commitLat = append(d.commitLat, t1.Sub(t0))
				if d.sampled {
					d.mu.Lock()
					s.committed = t1
					d.mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
}

func (d *database) probeErr(format string, a ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.probeErrs) < 20 {
		d.probeErrs = append(d.probeErrs, fmt.Sprintf(format, a...))
	}
}

// probeL0 marks the writer sentinels found in new L0 files of d.
func probeL0(ctx context.Context, v replicaView, d *database) {
	keys, err := v.l0(ctx, d.name, d.lastKey)
	listedAt := time.Now()
	if err != nil {
		if ctx.Err() == nil {
			d.probeErr("list L0 of %s: %v", d.name, err)
		}
		return
	}
	for _, k := range keys {
		data, err := v.get(ctx, k)
		if err != nil {
			if ctx.Err() == nil {
				d.probeErr("get %s: %v", k, err)
			}
			return
		}
		pages, err := decodeLTXPages(data)
		if err != nil {
			d.probeErr("decode %s: %v", k, err)
			return // retried on the next pass
		}
		d.mu.Lock()
		d.objects++
		for val, s := range d.pending {
			if strings.Contains(string(pages), val) {
				s.seenAt = listedAt
				delete(d.pending, val)
			}
		}
		d.lastKey = k
		d.mu.Unlock()
	}
}

// runProbe runs probeL0 on each of dbs every interval until ctx ends.
func runProbe(ctx context.Context, v replicaView, dbs []*database, interval time.Duration) {
	var wg sync.WaitGroup
	for _, d := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := time.NewTicker(interval)
			defer tk.Stop()
			for {
				probeL0(ctx, v, d)
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
				}
			}
		}()
	}
	wg.Wait()
}

// decodeLTXPages returns the concatenated page images of an LTX file.
func decodeLTXPages(b []byte) ([]byte, error) {
	dec := ltx.NewDecoder(bytes.NewReader(b))
	if err := dec.DecodeHeader(); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	ps := dec.Header().PageSize
	var out []byte
	var hdr ltx.PageHeader
	buf := make([]byte, ps)
	for {
		err := dec.DecodePage(&hdr, buf)
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return out, fmt.Errorf("page: %w", err)
		}
		out = append(out, buf...)
	}
	if err := dec.Close(); err != nil {
		return out, fmt.Errorf("close: %w", err)
	}
	return out, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := cryptorand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// collectWriters adds up the writers' commits, notes their first errors
// and fails the run if any commit failed.
func (t *toolRun) collectWriters(dbs []*database) (commits, writeErrs int, lat []time.Duration) {
	for _, d := range dbs {
		commits += d.commits
		writeErrs += len(d.writeErrs)
		lat = append(lat, d.commitLat...)
		for j, e := range d.writeErrs {
			if j < 3 {
				t.note("writer %s: %s", d.name, e)
			}
		}
	}
	if writeErrs > 0 {
		t.fail("%d writer commits failed", writeErrs)
	}
	return commits, writeErrs, lat
}

// lagStats are the replication lags of the probed databases' sentinels.
type lagStats struct {
	lags   []time.Duration
	unseen int // committed, never seen in an L0 file
	probed int // databases
}

// collectLags gathers the lag of every committed sentinel of dbs, noting
// the first maxOutliers of more than 3 s and the first maxProbeErrs probe
// errors of each database.
func (t *toolRun) collectLags(dbs []*database, maxOutliers, maxProbeErrs int) lagStats {
	var ls lagStats
	var outliers []string
	for _, d := range dbs {
		ls.probed++
		d.mu.Lock()
		for _, s := range d.all {
			if s.committed.IsZero() {
				continue
			}
			if s.seenAt.IsZero() {
				ls.unseen++
				continue
			}
			lag := max(s.seenAt.Sub(s.committed), 0)
			ls.lags = append(ls.lags, lag)
			if lag > 3*time.Second && len(outliers) < maxOutliers {
				outliers = append(outliers, fmt.Sprintf("%s %s committed at +%.1fs: %v", d.name, s.value, s.committed.Sub(t.started).Seconds(), lag.Round(time.Millisecond)))
			}
		}
		for j, e := range d.probeErrs {
			if j < maxProbeErrs {
				t.note("probe %s: %s", d.name, e)
			}
		}
		d.mu.Unlock()
	}
	for _, o := range outliers {
		t.note("lag outlier: %s", o)
	}
	return ls
}
