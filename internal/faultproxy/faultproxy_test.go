package faultproxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/faultproxy"
	"github.com/walsync/walsync/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newProxy(t *testing.T, s *testenv.S3Server) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// tryAWS runs the aws CLI against endpoint with at most maxAttempts
// attempts per call and returns stdout, stderr and the error.
func tryAWS(t *testing.T, s *testenv.S3Server, endpoint string, maxAttempts int, args ...string) ([]byte, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.AWSCommand(ctx, endpoint, args...)
	cmd.Env = append(cmd.Env, "AWS_RETRY_MODE=standard", "AWS_MAX_ATTEMPTS="+strconv.Itoa(maxAttempts))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.Bytes(), stderr.String(), err
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func headMetadata(t *testing.T, s *testenv.S3Server, bucket, key string) map[string]string {
	t.Helper()
	var head struct{ Metadata map[string]string }
	out := s.AWS(t, "s3api", "head-object", "--bucket", bucket, "--key", key, "--output", "json")
	if err := json.Unmarshal(out, &head); err != nil {
		t.Fatalf("decoding head-object output %q: %v", out, err)
	}
	return head.Metadata
}

// Signed requests pass through the proxy unchanged: the server accepts the
// signatures, made for the proxy's host, of every kind of request.
func TestPassThroughSignatureAccepted(t *testing.T) {
	s := testenv.S3(t)
	p := newProxy(t, s)
	ep := p.URL()

	s.AWSAt(t, ep, "s3api", "list-buckets")
	bucket := testenv.BucketName(t.Name())
	s.AWSAt(t, ep, "s3api", "create-bucket", "--bucket", bucket)

	// A key whose characters are escaped differently by different encoders:
	// the proxy must keep the client's raw path for the signature to match.
	key := "dir/a b+c!(x)*'~=;,@$&.txt"
	data := randomBytes(t, 100<<10)
	s.AWSAt(t, ep, "s3api", "put-object", "--bucket", bucket, "--key", key,
		"--body", writeFile(t, data), "--metadata", "sha256=abc")
	if md := headMetadata(t, s, bucket, key); md["sha256"] != "abc" {
		t.Fatalf("metadata through proxy = %v, want sha256=abc", md)
	}

	out := filepath.Join(t.TempDir(), "out")
	s.AWSAt(t, ep, "s3api", "get-object", "--bucket", bucket, "--key", key, out)
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get-object through proxy: %d bytes (err %v), want %d identical bytes", len(got), err, len(data))
	}
	s.AWSAt(t, ep, "s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "dir/")
	s.AWSAt(t, ep, "s3api", "delete-object", "--bucket", bucket, "--key", key)
	if _, stderr, err := tryAWS(t, s, s.Endpoint, 1, "s3api", "head-object", "--bucket", bucket, "--key", key); err == nil {
		t.Fatalf("object still exists after delete through proxy")
	} else if !strings.Contains(stderr, "404") {
		t.Fatalf("head-object after delete: %v: %s", err, stderr)
	}

	req := p.Requests()
	if req["PUT"] != 2 || req["GET"] != 3 || req["DELETE"] != 1 {
		t.Errorf("Requests() = %v, want PUT:2 GET:3 DELETE:1", req)
	}
	ops := p.Operations()
	for op, n := range map[string]int{
		"ListBuckets": 1, "CreateBucket": 1, "PutObject": 1, "GetObject": 1,
		"ListObjectsV2": 1, "DeleteObject": 1,
	} {
		if ops[op] != n {
			t.Errorf("Operations()[%s] = %d, want %d (all: %v)", op, ops[op], n, ops)
		}
	}
	if p.Injected() != 0 {
		t.Errorf("Injected() = %d with no fault armed", p.Injected())
	}
}

// A multipart upload (aws s3 cp of a file above the multipart threshold)
// works through the proxy.
func TestPassThroughMultipart(t *testing.T) {
	s := testenv.S3(t)
	p := newProxy(t, s)
	bucket := s.NewBucket(t)
	data := randomBytes(t, 12<<20) // two parts with the default 8 MiB chunks
	s.AWSAt(t, p.URL(), "s3", "cp", "--no-progress", writeFile(t, data), "s3://"+bucket+"/big")

	got, err := os.ReadFile(filepath.Join(s.Dir, bucket, "big"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object on the backend: %d bytes (err %v), want %d identical bytes", len(got), err, len(data))
	}
	ops := p.Operations()
	if ops["CreateMultipartUpload"] != 1 || ops["UploadPart"] != 2 || ops["CompleteMultipartUpload"] != 1 {
		t.Fatalf("Operations() = %v, want one CreateMultipartUpload, two UploadPart, one CompleteMultipartUpload", ops)
	}
}

func TestFailNext(t *testing.T) {
	s := testenv.S3(t)
	p := newProxy(t, s)

	// The raw response: status and S3 XML error body.
	p.FailNext(1, http.StatusServiceUnavailable, "SlowDown")
	resp, err := http.Get(p.URL() + "/some-bucket/key")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", resp.StatusCode)
	}
	var e struct{ Code, Resource string }
	if err := xml.Unmarshal(body, &e); err != nil || e.Code != "SlowDown" || e.Resource != "/some-bucket/key" {
		t.Fatalf("error body %q (decode error %v): want Code SlowDown, Resource /some-bucket/key", body, err)
	}

	// An S3 client sees the error code; the fault is used up after n.
	p.FailNext(1, http.StatusInternalServerError, "InternalError")
	if _, stderr, err := tryAWS(t, s, p.URL(), 1, "s3api", "list-buckets"); err == nil {
		t.Fatal("list-buckets succeeded with FailNext armed")
	} else if !strings.Contains(stderr, "InternalError") {
		t.Fatalf("aws error does not name InternalError: %s", stderr)
	}
	s.AWSAt(t, p.URL(), "s3api", "list-buckets")

	// An upload gets the error response too, not a connection reset, and
	// nothing is stored.
	bucket := s.NewBucket(t)
	p.FailNext(1, http.StatusServiceUnavailable, "SlowDown")
	if _, stderr, err := tryAWS(t, s, p.URL(), 1, "s3api", "put-object", "--bucket", bucket,
		"--key", "big", "--body", writeFile(t, randomBytes(t, 4<<20))); err == nil {
		t.Fatal("put-object succeeded with FailNext armed")
	} else if !strings.Contains(stderr, "SlowDown") {
		t.Fatalf("aws error does not name SlowDown: %s", stderr)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, bucket, "big")); err == nil {
		t.Fatal("failed upload reached the server")
	}

	// Failed requests never reach the server: a client that retries gets
	// through after n failures.
	p.Reset()
	p.FailNext(2, http.StatusServiceUnavailable, "SlowDown")
	if _, stderr, err := tryAWS(t, s, p.URL(), 3, "s3api", "list-buckets"); err != nil {
		t.Fatalf("list-buckets with 3 attempts and 2 failures: %v: %s", err, stderr)
	}
	if got := p.Requests()["GET"]; got != 3 {
		t.Errorf("GET requests = %d, want 3 (2 failed + 1 forwarded)", got)
	}
	if p.Injected() != 2 {
		t.Errorf("Injected() = %d, want 2", p.Injected())
	}
}

func TestDropNextMidBody(t *testing.T) {
	s := testenv.S3(t)
	p := newProxy(t, s)
	bucket := s.NewBucket(t)
	data := randomBytes(t, 1<<20)

	// A plain HTTP client sees a connection error, not a response.
	p.DropNextMidBody(1)
	resp, err := http.Post(p.URL()+"/"+bucket+"/x", "application/octet-stream", bytes.NewReader(data))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("POST through DropNextMidBody got a response: %s", resp.Status)
	}
	t.Logf("client error: %v", err)

	// Requests without a body are not affected and do not use the fault.
	p.DropNextMidBody(1)
	s.AWSAt(t, p.URL(), "s3api", "list-buckets")

	// The aws CLI fails the upload, and nothing reaches the server.
	_, stderr, err := tryAWS(t, s, p.URL(), 1, "s3api", "put-object", "--bucket", bucket,
		"--key", "obj", "--body", writeFile(t, data))
	if err == nil {
		t.Fatal("put-object succeeded through DropNextMidBody")
	}
	t.Logf("aws error: %s", strings.TrimSpace(stderr))
	if _, err := os.Stat(filepath.Join(s.Dir, bucket, "obj")); err == nil {
		t.Fatal("dropped upload reached the server")
	}

	// A retrying client gets through on the next attempt.
	p.Reset()
	p.DropNextMidBody(1)
	if _, stderr, err := tryAWS(t, s, p.URL(), 3, "s3api", "put-object", "--bucket", bucket,
		"--key", "obj", "--body", writeFile(t, data)); err != nil {
		t.Fatalf("put-object with retries: %v: %s", err, stderr)
	}
	if got := p.Requests()["PUT"]; got != 2 {
		t.Errorf("PUT requests = %d, want 2", got)
	}
	if got, err := os.ReadFile(filepath.Join(s.Dir, bucket, "obj")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object after retry: %d bytes (err %v), want %d identical bytes", len(got), err, len(data))
	}
}

func TestDropNextResponseMidBody(t *testing.T) {
	s := testenv.S3(t)
	p := newProxy(t, s)
	bucket := s.NewBucket(t)
	data := randomBytes(t, 1<<20)
	s.AWS(t, "s3api", "put-object", "--bucket", bucket, "--key", "obj", "--body", writeFile(t, data))

	// Plain HTTP: the headers arrive, the body is cut short. (The request
	// is unsigned, so the body is the server's AccessDenied error.)
	p.DropNextResponseMidBody(1)
	resp, err := http.Get(p.URL() + "/" + bucket + "/obj")
	if err != nil {
		t.Fatalf("GET: %v (want headers, then a body error)", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("read whole body (%d bytes, Content-Length %d) through DropNextResponseMidBody", len(got), resp.ContentLength)
	}
	if int64(len(got)) != resp.ContentLength/2 {
		t.Errorf("got %d body bytes before the reset, want half of %d", len(got), resp.ContentLength)
	}
	t.Logf("client error after %d of %d bytes: %v", len(got), resp.ContentLength, err)

	// The aws CLI's download fails.
	out := filepath.Join(t.TempDir(), "out")
	p.DropNextResponseMidBody(1)
	if _, stderr, err := tryAWS(t, s, p.URL(), 1, "s3api", "get-object", "--bucket", bucket, "--key", "obj", out); err == nil {
		t.Fatal("get-object succeeded through DropNextResponseMidBody")
	} else {
		t.Logf("aws error: %s", strings.TrimSpace(stderr))
	}
	if p.Injected() != 2 {
		t.Errorf("Injected() = %d, want 2", p.Injected())
	}

	// Responses without a body (HEAD) pass and do not use the fault; the
	// next response with a body does.
	p.DropNextResponseMidBody(1)
	s.AWSAt(t, p.URL(), "s3api", "head-object", "--bucket", bucket, "--key", "obj")
	if _, _, err := tryAWS(t, s, p.URL(), 1, "s3api", "get-object", "--bucket", bucket, "--key", "obj", out); err == nil {
		t.Fatal("get-object after head-object succeeded: HEAD used up the fault")
	}
	_ = os.Remove(out)
	// Once used up, downloads work again; the proxy itself is unharmed.
	if _, stderr, err := tryAWS(t, s, p.URL(), 1, "s3api", "get-object", "--bucket", bucket, "--key", "obj", out); err != nil {
		t.Fatalf("get-object after the fault was used: %v: %s", err, stderr)
	}
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("downloaded %d bytes (err %v), want %d identical bytes", len(b), err, len(data))
	}
}

func TestDelay(t *testing.T) {
	s := testenv.S3(t)
	p := newProxy(t, s)
	const d = 300 * time.Millisecond
	p.Delay(d)
	start := time.Now()
	resp, err := http.Get(p.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if el := time.Since(start); el < d {
		t.Fatalf("response after %v, want at least %v", el, d)
	}
	// A client that gives up early gets a timeout.
	c := &http.Client{Timeout: 50 * time.Millisecond}
	if resp, err := c.Get(p.URL() + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("client with 50ms timeout got a response despite a 300ms delay")
	}
}

func TestFilter(t *testing.T) {
	s := testenv.S3(t)
	p := newProxy(t, s)
	bucket := s.NewBucket(t)
	p.SetFilter(func(r *http.Request) bool { return faultproxy.Operation(r) == "PutObject" })
	p.FailNext(1, http.StatusServiceUnavailable, "SlowDown")

	s.AWSAt(t, p.URL(), "s3api", "list-objects-v2", "--bucket", bucket) // not selected
	body := writeFile(t, []byte("x"))
	if _, stderr, err := tryAWS(t, s, p.URL(), 1, "s3api", "put-object", "--bucket", bucket, "--key", "k", "--body", body); err == nil {
		t.Fatal("put-object succeeded; the filter should have selected it")
	} else if !strings.Contains(stderr, "SlowDown") {
		t.Fatalf("unexpected error: %s", stderr)
	}
	s.AWSAt(t, p.URL(), "s3api", "put-object", "--bucket", bucket, "--key", "k", "--body", body)
}

func TestReset(t *testing.T) {
	s := testenv.S3(t)
	p := newProxy(t, s)
	p.FailNext(5, 500, "InternalError")
	p.DropNextMidBody(5)
	p.DropNextResponseMidBody(5)
	p.Delay(time.Hour)
	p.SetFilter(func(*http.Request) bool { return true })
	p.Reset()
	s.AWSAt(t, p.URL(), "s3api", "list-buckets")
	if got := p.Requests(); len(got) != 1 || got["GET"] != 1 {
		t.Fatalf("Requests() after Reset and one call = %v", got)
	}
}

func TestNewRejectsBadTarget(t *testing.T) {
	for _, target := range []string{"", "127.0.0.1:80", "https://127.0.0.1:1", "http://"} {
		if p, err := faultproxy.New(target); err == nil {
			p.Close()
			t.Errorf("New(%q) succeeded", target)
		}
	}
}

func TestOperation(t *testing.T) {
	cases := []struct {
		method, target string
		copySource     bool
		want           string
	}{
		{"GET", "/", false, "ListBuckets"},
		{"PUT", "/b", false, "CreateBucket"},
		{"HEAD", "/b", false, "HeadBucket"},
		{"DELETE", "/b", false, "DeleteBucket"},
		{"GET", "/b?list-type=2&prefix=x", false, "ListObjectsV2"},
		{"GET", "/b?prefix=x", false, "ListObjects"},
		{"GET", "/b?uploads", false, "ListMultipartUploads"},
		{"GET", "/b?versioning", false, "GetBucketVersioning"},
		{"PUT", "/b?object-lock", false, "PutBucketObjectLock"},
		{"POST", "/b?delete", false, "DeleteObjects"},
		{"PUT", "/b/k/x", false, "PutObject"},
		{"PUT", "/b/k", true, "CopyObject"},
		{"POST", "/b/k?uploads", false, "CreateMultipartUpload"},
		{"PUT", "/b/k?partNumber=1&uploadId=u", false, "UploadPart"},
		{"PUT", "/b/k?partNumber=1&uploadId=u", true, "UploadPartCopy"},
		{"POST", "/b/k?uploadId=u", false, "CompleteMultipartUpload"},
		{"DELETE", "/b/k?uploadId=u", false, "AbortMultipartUpload"},
		{"GET", "/b/k?uploadId=u", false, "ListParts"},
		{"GET", "/b/k", false, "GetObject"},
		{"HEAD", "/b/k", false, "HeadObject"},
		{"DELETE", "/b/k", false, "DeleteObject"},
		{"PATCH", "/b/k", false, "PATCH object"},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.target, nil)
		if c.copySource {
			r.Header.Set("X-Amz-Copy-Source", "/b/src")
		}
		if got := faultproxy.Operation(r); got != c.want {
			t.Errorf("Operation(%s %s) = %q, want %q", c.method, c.target, got, c.want)
		}
	}
}
