// Package harness is what both client benchmarks share: it starts a local
// versitygw, builds the LTX objects, runs the PUTs and reports memory.
//
// Each benchmark program links only its own S3 client plus this package, so
// that the difference in binary size and memory between the two programs is
// the difference between the clients.
package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/s3server"
)

const (
	// Region is the server's signing region.
	Region = s3server.Region
	// Bucket is the bucket every object goes to.
	Bucket = "bench"
	// Prefix starts every key: db/0000/<min>-<max>.ltx, walsync's layout.
	Prefix = "db"

	pageSize = 4096
	pages    = 16 // 64 KiB of page data per object
)

// Server is the local versitygw; Dir/Bucket holds the objects.
type Server = s3server.Server

// Object is one LTX file to PUT.
type Object struct {
	TXID      ltx.TXID
	Key       string // Prefix/0000/<TXID>-<TXID>.ltx
	Data      []byte
	SHA256    string // hex
	Timestamp string // RFC 3339 (nano) of the LTX header time, UTC
}

// Client is the S3 client under test.
type Client interface {
	Put(ctx context.Context, o *Object) error
}

// Result is one run's measurements, printed as a JSON line.
type Result struct {
	Client      string `json:"client"`
	GOMEMLIMIT  string `json:"gomemlimit"`
	Puts        int    `json:"puts"`
	ObjectBytes int    `json:"object_bytes"`
	VmRSSKB     int64  `json:"vmrss_kb"`
	VmHWMKB     int64  `json:"vmhwm_kb"`
	NumGC       uint32 `json:"num_gc"`
	TotalAlloc  uint64 `json:"total_alloc"`
	HeapSys     uint64 `json:"heap_sys"`
	BinaryBytes int64  `json:"binary_bytes"`
	PutMillis   int64  `json:"put_ms"`
}

// Main runs the benchmark for the client that newClient creates and prints
// the Result. It exits the process.
func Main(name string, newClient func(s *Server) (Client, error)) {
	vgw := flag.String("versitygw", "", "versitygw binary (default: $WALSYNC_VERSITYGW, else <repo>/.cache/bin/versitygw)")
	n := flag.Int("n", 100, "number of PUTs")
	memprofile := flag.String("memprofile", "", "write an allocation profile of the PUTs to this file")
	flag.Parse()
	if *memprofile != "" {
		runtime.MemProfileRate = 4096
	}
	if err := run(name, *vgw, *n, newClient); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err == nil {
			err = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: memory profile: %v\n", name, err)
			os.Exit(1)
		}
	}
}

func run(name, vgw string, n int, newClient func(s *Server) (Client, error)) error {
	// The bucket is made before the server starts: a posix bucket is a
	// directory, and no client request runs before the measured ones.
	s, err := s3server.Start(s3server.Options{Bin: vgw, Buckets: []string{Bucket}})
	if err != nil {
		return err
	}
	defer func() {
		if err := s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
	}()

	c, err := newClient(s)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var buf bytes.Buffer
	var o Object
	start := time.Now()
	for i := 1; i <= n; i++ {
		if err := BuildObject(&buf, ltx.TXID(i), &o); err != nil {
			return err
		}
		if err := c.Put(ctx, &o); err != nil {
			return fmt.Errorf("PUT %d (%s): %w", i, o.Key, err)
		}
	}
	took := time.Since(start)

	// Measure while the client is still held.
	res := Result{Client: name, GOMEMLIMIT: os.Getenv("GOMEMLIMIT"), Puts: n, ObjectBytes: len(o.Data), PutMillis: took.Milliseconds()}
	if res.VmRSSKB, res.VmHWMKB, err = procStatus(); err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.NumGC, res.TotalAlloc, res.HeapSys = ms.NumGC, ms.TotalAlloc, ms.HeapSys
	if exe, err := os.Executable(); err == nil {
		if fi, err := os.Stat(exe); err == nil {
			res.BinaryBytes = fi.Size()
		}
	}
	runtime.KeepAlive(c)

	// Both clients must have stored the same objects.
	if err := check(s, n); err != nil {
		return err
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}

// BuildObject encodes the LTX file for txid into buf (reused) and fills o.
// Pages are pseudo-random, so they do not compress.
func BuildObject(buf *bytes.Buffer, txid ltx.TXID, o *Object) error {
	buf.Reset()
	ts := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).Add(time.Duration(txid) * time.Millisecond)
	enc, err := ltx.NewEncoder(buf)
	if err != nil {
		return err
	}
	if err := enc.EncodeHeader(ltx.Header{
		Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: pageSize, Commit: pages,
		MinTXID: txid, MaxTXID: txid, Timestamp: ts.UnixMilli(),
	}); err != nil {
		return err
	}
	rng := mrand.New(mrand.NewPCG(uint64(txid), 1))
	page := make([]byte, pageSize)
	for pgno := uint32(1); pgno <= pages; pgno++ {
		for i := 0; i < len(page); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				page[i+j] = byte(v >> (8 * j))
			}
		}
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, page); err != nil {
			return err
		}
	}
	if err := enc.Close(); err != nil {
		return err
	}
	sum := sha256.Sum256(buf.Bytes())
	*o = Object{
		TXID:      txid,
		Key:       fmt.Sprintf("%s/%04x/%s", Prefix, 0, ltx.FormatFilename(txid, txid)),
		Data:      buf.Bytes(),
		SHA256:    hex.EncodeToString(sum[:]),
		Timestamp: ts.UTC().Format(time.RFC3339Nano),
	}
	return nil
}

func procStatus() (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			hwm, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, errors.New("no VmRSS/VmHWM in /proc/self/status")
	}
	return rss, hwm, nil
}

// check verifies that n objects holding at least their page data are stored.
func check(s *Server, n int) error {
	dir := filepath.Join(s.Dir, Bucket, Prefix, "0000")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("checking stored objects: %w", err)
	}
	if len(ents) != n {
		return fmt.Errorf("%d objects stored in %s, want %d", len(ents), dir, n)
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if fi.Size() < pages*pageSize {
			return fmt.Errorf("object %s is %d bytes, want at least %d", e.Name(), fi.Size(), pages*pageSize)
		}
	}
	return nil
}
