package main

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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
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

type sentinel struct {
	value     string
	committed time.Time // zero until the commit returned
	seenAt    time.Time // list response that first showed an object containing it
}

func openDSN(path string) string {
	return "file:" + path + "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_txlock=immediate"
}

// createDatabases makes n WAL databases dir/tI/app.db with the schema and
// one initial row, and keeps a writer connection open on each.
func createDatabases(dir string, n int, sample []int) ([]*database, error) {
	sampled := map[int]bool{}
	for _, i := range sample {
		sampled[i] = true
	}
	dbs := make([]*database, n)
	for i := range n {
		name := fmt.Sprintf("t%d", i+1)
		p := filepath.Join(dir, name, "app.db")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		db, err := sql.Open("sqlite3", openDSN(p))
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
		if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, sentinel TEXT NOT NULL, at INTEGER NOT NULL, payload BLOB NOT NULL)`); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if _, err := db.Exec(`INSERT INTO events(seq, sentinel, at, payload) VALUES (0, 'init', ?, randomblob(1024))`, time.Now().UnixNano()); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		var mode string
		if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			return nil, fmt.Errorf("%s: journal_mode %q (%v)", p, mode, err)
		}
		dbs[i] = &database{idx: i, name: name + "/app", path: p, db: db, sampled: sampled[i], pending: map[string]*sentinel{}}
	}
	return dbs, nil
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

// runProbe polls the L0 prefix of each sampled database every interval and
// marks the sentinels found in new objects. It returns when ctx ends.
func runProbe(ctx context.Context, c *s3.Client, bucket string, dbs []*database, interval time.Duration) {
	var wg sync.WaitGroup
	for _, d := range dbs {
		if !d.sampled {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				probeOnce(ctx, c, bucket, d)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
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

func probeOnce(ctx context.Context, c *s3.Client, bucket string, d *database) {
	prefix := d.name + "/0000/"
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)}
	if d.lastKey != "" {
		in.StartAfter = aws.String(d.lastKey)
	}
	var keys []string
	var listedAt time.Time
	for {
		out, err := c.ListObjectsV2(ctx, in)
		if err != nil {
			if ctx.Err() == nil {
				d.probeErr("list %s: %v", prefix, err)
			}
			return
		}
		if listedAt.IsZero() {
			listedAt = time.Now()
		}
		for _, o := range out.Contents {
			k := aws.ToString(o.Key)
			if strings.HasSuffix(k, ".ltx") {
				keys = append(keys, k)
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.ContinuationToken = out.NextContinuationToken
	}
	for _, k := range keys {
		data, err := getObject(ctx, c, bucket, k)
		if err != nil {
			if ctx.Err() == nil {
				// Litestream deletes L0 files after compaction + retention;
				// a vanished object is not an error of the replicator.
				d.probeErr("get %s: %v", k, err)
			}
			return
		}
		pages, err := decodeLTXPages(data)
		if err != nil {
			d.probeErr("decode %s: %v", k, err)
		}
		d.mu.Lock()
		d.objects++
		for v, s := range d.pending {
			if bytes.Contains(pages, []byte(v)) {
				s.seenAt = listedAt
				delete(d.pending, v)
			}
		}
		d.lastKey = k
		d.mu.Unlock()
	}
}

func getObject(ctx context.Context, c *s3.Client, bucket, key string) ([]byte, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
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
