package main

// The S3 side of a run: a local versitygw with a bucket, an SDK client
// that reads the replica directly, and a counting proxy the replicator
// talks to.

import (
	"context"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walsync/walsync/internal/s3server"
)

// s3Side is a versitygw in <work>/s3 with one bucket, a client for it and
// a counting proxy in front of it.
type s3Side struct {
	srv    *s3server.Server
	c      *s3.Client
	bucket string
	proxy  *countingProxy
}

// startS3Side starts the server, creates the bucket and starts the proxy;
// on error it stops what it started.
func startS3Side(ctx context.Context, c *config, work, bucket string) (*s3Side, error) {
	srv, err := s3server.Start(s3server.Options{Bin: c.versitygw, Dir: filepath.Join(work, "s3")})
	if err != nil {
		return nil, fmt.Errorf("versitygw: %w", err)
	}
	s := &s3Side{srv: srv, c: newS3Client(srv), bucket: bucket}
	if _, err = s.c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		err = fmt.Errorf("create bucket: %w", err)
	} else if s.proxy, err = startProxy(srv.Endpoint); err != nil {
		err = fmt.Errorf("proxy: %w", err)
	}
	if err != nil {
		_ = srv.Stop()
		return nil, err
	}
	return s, nil
}

// close stops the proxy and the server and keeps the server's log in
// outDir.
func (s *s3Side) close(outDir string) error {
	s.proxy.close()
	err := s.srv.Stop()
	if b, rerr := os.ReadFile(s.srv.LogFile); rerr == nil {
		_ = os.WriteFile(filepath.Join(outDir, "versitygw.log"), b, 0o644)
	}
	return err
}

// loc is the replica of the database name (of every database when name
// is "") as a replicator reaches it: through endpoint.
func (s *s3Side) loc(endpoint, name string) replicaLoc {
	return replicaLoc{bucket: s.bucket, endpoint: endpoint, path: name}
}

// waitReplicated waits until every database of dbs has at least one
// object under its replica path, at least minWait and at most maxWait, or
// until exited reports true.
func (s *s3Side) waitReplicated(ctx context.Context, dbs []*database, minWait, maxWait time.Duration, exited func() bool) time.Duration {
	start := time.Now()
	ready := map[int]bool{}
	for time.Since(start) < maxWait && !exited() {
		all := true
		for _, d := range dbs {
			if ready[d.idx] {
				continue
			}
			objs, _, _, err := bucketStats(ctx, s.c, s.bucket, d.name+"/")
			if err == nil && objs > 0 {
				ready[d.idx] = true
			} else {
				all = false
			}
		}
		if all && time.Since(start) >= minWait {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// newS3Client returns an SDK client for the server itself (not the proxy):
// the lag probe and bucket creation are not counted as replicator requests.
func newS3Client(s *s3server.Server) *s3.Client {
	hc := &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}}
	return s3.New(s3.Options{
		Region:       s3server.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		HTTPClient:   hc,
		// Avoid extra CRC trailers/validation work; versitygw supports both.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RetryMaxAttempts:           3,
	})
}

// eachObject calls f with every object under prefix after the key after.
func eachObject(ctx context.Context, c *s3.Client, bucket, prefix, after string, f func(key string, size int64)) error {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)}
	if after != "" {
		in.StartAfter = aws.String(after)
	}
	p := s3.NewListObjectsV2Paginator(c, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing %s/%s: %w", bucket, prefix, err)
		}
		for _, o := range out.Contents {
			f(aws.ToString(o.Key), aws.ToInt64(o.Size))
		}
	}
	return nil
}

// levelStat counts the objects of one level directory.
type levelStat struct {
	objects int
	bytes   int64
}

// bucketStats lists prefix: object count and bytes, in all and per level
// directory ("0000", "0001", ..., "0009"; walsync and Litestream v0.5 both
// keep a level's files in one).
func bucketStats(ctx context.Context, c *s3.Client, bucket, prefix string) (objects int, bytes int64, levels map[string]levelStat, err error) {
	levels = map[string]levelStat{}
	err = eachObject(ctx, c, bucket, prefix, "", func(key string, size int64) {
		objects++
		bytes += size
		l := levels[path.Base(path.Dir(key))]
		l.objects++
		l.bytes += size
		levels[path.Base(path.Dir(key))] = l
	})
	return objects, bytes, levels, err
}

// levelCounts is the object count of each level directory.
func levelCounts(levels map[string]levelStat) map[string]int {
	m := map[string]int{}
	for k, l := range levels {
		m[k] = l.objects
	}
	return m
}

func getObject(ctx context.Context, c *s3.Client, bucket, key string) ([]byte, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// countingProxy forwards everything to the S3 server and counts requests
// by kind, so that the replicator's S3 traffic can be compared.
type countingProxy struct {
	URL   string
	srv   *http.Server
	ln    net.Listener
	mu    sync.Mutex
	kinds map[string]int64
	total atomic.Int64
	inB   atomic.Int64 // request body bytes (uploads)
	outB  atomic.Int64 // response body bytes (downloads)
	errs  map[int]int64
	outK  map[string]int64 // response body bytes by request kind
}

func startProxy(target string) (*countingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{URL: "http://" + ln.Addr().String(), ln: ln, kinds: map[string]int64{}, errs: map[int]int64{}, outK: map[string]int64{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // the request is signed for the proxy's host
		},
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        512,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     90 * time.Second,
		},
		// A client that hangs up (a replicator stopping) is not ours to
		// log; transport errors are counted as 502s.
		ErrorLog: log.New(io.Discard, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.mu.Lock()
			p.errs[http.StatusBadGateway]++
			p.mu.Unlock()
			w.WriteHeader(http.StatusBadGateway)
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode >= 300 {
				p.mu.Lock()
				p.errs[resp.StatusCode]++
				p.mu.Unlock()
			}
			if resp.ContentLength > 0 {
				p.outB.Add(resp.ContentLength)
				k := classify(resp.Request)
				p.mu.Lock()
				p.outK[k] += resp.ContentLength
				p.mu.Unlock()
			}
			return nil
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.total.Add(1)
		if r.ContentLength > 0 {
			p.inB.Add(r.ContentLength)
		}
		k := classify(r)
		p.mu.Lock()
		p.kinds[k]++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	return p, nil
}

func classify(r *http.Request) string {
	path := strings.Trim(r.URL.Path, "/")
	hasKey := strings.Contains(path, "/")
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet:
		if !hasKey {
			return "LIST"
		}
		return "GET"
	case http.MethodPut:
		if q.Has("partNumber") {
			return "PUT(part)"
		}
		return "PUT"
	case http.MethodDelete:
		return "DELETE"
	case http.MethodPost:
		if q.Has("delete") {
			return "DELETE(multi)"
		}
		return "POST"
	case http.MethodHead:
		return "HEAD"
	}
	return r.Method
}

// reqSnap is what the proxy counted up to a moment.
type reqSnap struct {
	total     int64
	kinds     map[string]int64 // requests by kind
	errs      map[int]int64    // error responses by status
	inB, outB int64            // request and response body bytes
	outByKind map[string]int64 // response body bytes by request kind
}

// snapshot returns the counts so far; those of a nil proxy are zero.
func (p *countingProxy) snapshot() reqSnap {
	if p == nil {
		return reqSnap{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return reqSnap{
		total: p.total.Load(), kinds: maps.Clone(p.kinds), errs: maps.Clone(p.errs),
		inB: p.inB.Load(), outB: p.outB.Load(), outByKind: maps.Clone(p.outK),
	}
}

// minus returns the requests counted since b: their number and kinds.
func (a reqSnap) minus(b reqSnap) reqSnap {
	d := reqSnap{total: a.total - b.total, kinds: map[string]int64{}}
	for k, v := range a.kinds {
		if v != b.kinds[k] {
			d.kinds[k] = v - b.kinds[k]
		}
	}
	return d
}

func (p *countingProxy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
}
