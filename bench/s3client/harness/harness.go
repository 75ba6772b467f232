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
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/superfly/ltx"
)

const (
	Region = "us-east-1"
	Bucket = "bench"
	Prefix = "db" // keys are db/0000/<min>-<max>.ltx, walsync's layout

	pageSize = 4096
	pages    = 16 // 64 KiB of page data per object
)

// Server is a versitygw process with a posix backend.
type Server struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Dir       string // posix backend root; Dir/Bucket holds the objects

	base string
	cmd  *exec.Cmd
	done chan struct{}
}

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
	vgw := flag.String("versitygw", "", "versitygw binary (default: <repo>/.cache/bin/versitygw above the working directory)")
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
	if vgw == "" {
		var err error
		if vgw, err = findVersitygw(); err != nil {
			return err
		}
	}
	s, err := Start(vgw)
	if err != nil {
		return err
	}
	defer s.Stop()

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
	if err := s.check(n); err != nil {
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

func findVersitygw() (string, error) {
	if p := os.Getenv("WALSYNC_VERSITYGW"); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, ".cache", "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("versitygw not found in .cache/bin above the working directory: run scripts/test-deps.sh, or pass -versitygw")
		}
		dir = parent
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Start runs versitygw on a free 127.0.0.1 port with a posix backend in a
// new temporary directory and the bucket already there (a posix bucket is
// a directory), and waits until it answers.
func Start(bin string) (*Server, error) {
	base, err := os.MkdirTemp("", "walsync-s3client-bench-")
	if err != nil {
		return nil, err
	}
	s := &Server{
		AccessKey: "WB" + strings.ToUpper(randomHex(9)),
		SecretKey: randomHex(20),
		Dir:       filepath.Join(base, "data"),
		base:      base,
		done:      make(chan struct{}),
	}
	meta := filepath.Join(base, "meta")
	for _, d := range []string{filepath.Join(s.Dir, Bucket), meta} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			os.RemoveAll(base)
			return nil, err
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s.Endpoint = "http://" + addr

	args := []string{"--port", addr, "--region", Region, "--keep-alive", "posix"}
	if syscall.Setxattr(base, "user.walsync.probe", []byte("1"), 0) != nil {
		args = append(args, "--sidecar", meta) // no user xattrs here: keep metadata aside
	}
	args = append(args, s.Dir)
	logf, err := os.Create(filepath.Join(base, "versitygw.log"))
	if err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Dir = base
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // Pdeathsig follows the thread that started the child
		defer close(s.done)
		defer logf.Close()
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = s.cmd.Wait()
	}()
	if err := <-started; err != nil {
		os.RemoveAll(base)
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-s.done:
			log, _ := os.ReadFile(logf.Name())
			os.RemoveAll(base)
			return nil, fmt.Errorf("versitygw exited during startup:\n%s", log)
		default:
		}
		if resp, err := hc.Get(s.Endpoint + "/"); err == nil {
			resp.Body.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, errors.New("versitygw did not answer within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the server and removes its directory.
func (s *Server) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	os.RemoveAll(s.base)
}

// check verifies that n objects holding at least their page data are stored.
func (s *Server) check(n int) error {
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
