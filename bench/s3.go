package main

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walsync/walsync/internal/s3server"
)

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

func createBucket(ctx context.Context, c *s3.Client, name string) error {
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	return err
}

// bucketStats lists the whole bucket: object count and bytes per level
// directory ("0000", "0001", ..., "0009").
func bucketStats(ctx context.Context, c *s3.Client, bucket string) (objects int, bytes int64, perLevel map[string]int, err error) {
	return bucketStatsPrefix(ctx, c, bucket, "")
}

func bucketStatsPrefix(ctx context.Context, c *s3.Client, bucket, prefix string) (objects int, bytes int64, perLevel map[string]int, err error) {
	perLevel = map[string]int{}
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return 0, 0, nil, err
		}
		for _, o := range out.Contents {
			objects++
			bytes += aws.ToInt64(o.Size)
			parts := strings.Split(aws.ToString(o.Key), "/")
			if len(parts) >= 2 {
				perLevel[parts[len(parts)-2]]++
			}
		}
	}
	return objects, bytes, perLevel, nil
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

func (p *countingProxy) snapshot() (total int64, kinds map[string]int64, errs map[int]int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kinds = map[string]int64{}
	for k, v := range p.kinds {
		kinds[k] = v
	}
	errs = map[int]int64{}
	for k, v := range p.errs {
		errs[k] = v
	}
	return p.total.Load(), kinds, errs
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (p *countingProxy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
}

// outBytesByKind returns the response body bytes by request kind.
func (p *countingProxy) outBytesByKind() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]int64{}
	for k, v := range p.outK {
		m[k] = v
	}
	return m
}
