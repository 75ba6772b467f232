package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/faultproxy"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/s3"
	"github.com/walsync/walsync/storage/storagetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testTime is the LTX header timestamp of the files the tests write.
var testTime = time.Date(2026, 11, 20, 10, 0, 0, 123_000_000, time.UTC)

// newClient returns a client for bucket/prefix at endpoint with the test
// server's credentials. mod, if not nil, adjusts the configuration.
func newClient(t testing.TB, s *testenv.S3Server, endpoint, bucket, prefix string, mod func(*s3.Config)) *s3.Client {
	t.Helper()
	cfg := s3.Config{
		Bucket:      bucket,
		Prefix:      prefix,
		Endpoint:    endpoint,
		Region:      s.Region,
		Credentials: &s3.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey, Source: "test"},
		TempDir:     t.TempDir(),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// headObject is the part of "aws s3api head-object" output the tests use.
type headObject struct {
	ContentLength int64
	Metadata      map[string]string
}

func awsHead(t testing.TB, s *testenv.S3Server, bucket, key string) headObject {
	t.Helper()
	out := s.AWS(t, "s3api", "head-object", "--bucket", bucket, "--key", key, "--output", "json")
	var h headObject
	if err := json.Unmarshal(out, &h); err != nil {
		t.Fatalf("decoding head-object output %q: %v", out, err)
	}
	return h
}

// awsKeys lists the keys under prefix with "aws s3api list-objects-v2".
func awsKeys(t testing.TB, s *testenv.S3Server, bucket, prefix string) []string {
	t.Helper()
	out := s.AWS(t, "s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix, "--output", "json")
	if len(bytes.TrimSpace(out)) == 0 {
		return nil // the CLI prints nothing for an empty listing
	}
	var l struct{ Contents []struct{ Key string } }
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatalf("decoding list-objects-v2 output %q: %v", out, err)
	}
	var keys []string
	for _, c := range l.Contents {
		keys = append(keys, c.Key)
	}
	return keys
}

// awsGet downloads an object with "aws s3api get-object".
func awsGet(t testing.TB, s *testenv.S3Server, bucket, key string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "object")
	s.AWS(t, "s3api", "get-object", "--bucket", bucket, "--key", key, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// awsPut uploads data under key with "aws s3api put-object", with the given
// user metadata ("k=v,k2=v2"; empty for none).
func awsPut(t testing.TB, s *testenv.S3Server, bucket, key string, data []byte, metadata string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"s3api", "put-object", "--bucket", bucket, "--key", key, "--body", path}
	if metadata != "" {
		args = append(args, "--metadata", metadata)
	}
	s.AWS(t, args...)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func writeFile(t testing.TB, c storage.Client, level int, minTXID, maxTXID ltx.TXID, data []byte) *storage.FileInfo {
	t.Helper()
	fi, err := c.WriteLTXFile(context.Background(), level, minTXID, maxTXID, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("write L%d %d-%d: %v", level, minTXID, maxTXID, err)
	}
	return fi
}

func readFile(t testing.TB, c storage.Client, level int, minTXID, maxTXID ltx.TXID) []byte {
	t.Helper()
	rc, err := c.OpenLTXFile(context.Background(), level, minTXID, maxTXID)
	if err != nil {
		t.Fatalf("open L%d %d-%d: %v", level, minTXID, maxTXID, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func listFiles(t testing.TB, c storage.Client, level int, after ltx.TXID) []*storage.FileInfo {
	t.Helper()
	it, err := c.LTXFiles(context.Background(), level, after)
	if err != nil {
		t.Fatal(err)
	}
	files, err := storage.Collect(it)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// newProxy starts a fault proxy in front of the test server.
func newProxy(t testing.TB, s *testenv.S3Server) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestConformance(t *testing.T) {
	s := testenv.S3(t)
	bucket := s.NewBucket(t)
	var seq atomic.Int64
	storagetest.Run(t, storagetest.Backend{
		// A fresh prefix in one bucket: "conformance/<n>" and
		// "conformance/<n+1>" never list each other's files, as every
		// listing ends its prefix with "/<level>/".
		New: func(t *testing.T) storage.Client {
			return newClient(t, s, s.Endpoint, bucket, fmt.Sprintf("conformance/%d", seq.Add(1)), nil)
		},
		Replace: func(t *testing.T, c storage.Client, level int, minTXID, maxTXID ltx.TXID, data []byte, keepSHA bool) {
			sc := c.(*s3.Client)
			key := sc.Key(level, minTXID, maxTXID)
			meta := ""
			if keepSHA {
				sum := awsHead(t, s, sc.Bucket(), key).Metadata[s3.MetaSHA256]
				if sum == "" {
					t.Fatalf("%s has no %s metadata to keep", key, s3.MetaSHA256)
				}
				meta = s3.MetaSHA256 + "=" + sum
			}
			// Without keepSHA the new object has no metadata at all, as
			// put-object replaces it. (The suite's last step proves it:
			// a valid file under a stale SHA-256 would read as corrupt.)
			awsPut(t, s, sc.Bucket(), key, data, meta)
		},
	})
}

func TestMetadataVisibleToAWSCLI(t *testing.T) {
	s := testenv.S3(t)
	bucket := s.NewBucket(t)
	c := newClient(t, s, s.Endpoint, bucket, "apps/db", nil)
	ts := time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.FixedZone("CET", 3600))

	for _, level := range []int{0, 9} {
		data := storagetest.LTX(t, 1, 1, 4, 4096, ts, true)
		fi := writeFile(t, c, level, 1, 1, data)
		key := c.Key(level, 1, 1)
		want := fmt.Sprintf("apps/db/%04d/0000000000000001-0000000000000001.ltx", level)
		if key != want {
			t.Fatalf("key %q, want %q", key, want)
		}

		h := awsHead(t, s, bucket, key)
		got := awsGet(t, s, bucket, key)
		if !bytes.Equal(got, data) {
			t.Fatalf("L%d: aws get-object returned %d bytes that differ from the %d written", level, len(got), len(data))
		}
		if h.Metadata["sha256"] != fi.SHA256 || fi.SHA256 != sha256Hex(got) {
			t.Fatalf("L%d: metadata sha256 %q, FileInfo.SHA256 %q, sha256 of the object %q: want all equal",
				level, h.Metadata["sha256"], fi.SHA256, sha256Hex(got))
		}
		wantTS := time.UnixMilli(ts.UnixMilli()).UTC().Format(time.RFC3339Nano)
		if wantTS != "2026-01-02T02:04:05.678Z" {
			t.Fatalf("test bug: timestamp formats as %s", wantTS)
		}
		if got := h.Metadata["litestream-timestamp"]; got != wantTS {
			t.Fatalf("L%d: metadata litestream-timestamp %q, want %q (all metadata: %v)", level, got, wantTS, h.Metadata)
		}
		if h.ContentLength != int64(len(data)) || fi.Size != int64(len(data)) {
			t.Fatalf("L%d: ContentLength %d, FileInfo.Size %d, want %d", level, h.ContentLength, fi.Size, len(data))
		}
		if !fi.CreatedAt.Equal(ts) {
			t.Fatalf("L%d: CreatedAt %v, want %v", level, fi.CreatedAt, ts)
		}
	}

	keys := awsKeys(t, s, bucket, "")
	want := []string{
		"apps/db/0000/0000000000000001-0000000000000001.ltx",
		"apps/db/0009/0000000000000001-0000000000000001.ltx",
	}
	if strings.Join(keys, "\n") != strings.Join(want, "\n") {
		t.Fatalf("bucket holds %q, want %q", keys, want)
	}
	// A sub-path's client uses the same layout under its own prefix.
	sub := c.Sub("tenant/x").(*s3.Client)
	if got := sub.Key(9, 0x10, 0xff); got != "apps/db/tenant/x/0009/0000000000000010-00000000000000ff.ltx" {
		t.Fatalf("Sub key %q", got)
	}
	if got := c.String(); got != "s3://"+bucket+"/apps/db" {
		t.Fatalf("String() = %q", got)
	}
}

// errFromList returns the error of the first listing call.
func errFromList(t *testing.T, c storage.Client) (error, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	it, err := c.LTXFiles(ctx, 0, 0)
	if err != nil {
		return err, time.Since(start)
	}
	defer it.Close()
	if it.Next() {
		t.Fatalf("listing returned %v", it.Item())
	}
	if it.Err() == nil {
		t.Fatal("listing failed with no error")
	}
	return it.Err(), time.Since(start)
}

func TestWrongCredentials(t *testing.T) {
	s := testenv.S3(t)
	bucket := s.NewBucket(t)
	p := newProxy(t, s)
	const wrongSecret = "wrongSECRETwrongSECRETwrongSECRET0123456"

	for _, tc := range []struct {
		name       string
		keyID      string
		secret     string
		token      string
		wantStatus int
	}{
		{"wrong secret", s.AccessKey, wrongSecret, "", 403},
		// AWS answers 403 InvalidAccessKeyId, versitygw 404 XAdminUserNotFound.
		{"unknown key ID", "WTUNKNOWNKEYID000000", wrongSecret, "", 404},
		// An expired or rotated session token: 400 ExpiredToken at AWS,
		// InvalidToken at versitygw.
		{"invalid session token", s.AccessKey, s.SecretKey, "expiredSESSIONtoken0123456789", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Reset()
			// Default retry settings: a retried failure would take seconds.
			c := newClient(t, s, p.URL(), bucket, "db", func(cfg *s3.Config) {
				cfg.Credentials = &s3.Credentials{AccessKeyID: tc.keyID, SecretAccessKey: tc.secret, SessionToken: tc.token}
			})
			err, took := errFromList(t, c)
			msg := err.Error()
			t.Logf("error: %s", msg)
			if took > 3*time.Second {
				t.Fatalf("refused credentials took %v to report: retried?", took)
			}
			if n := p.Operations()["ListObjectsV2"]; n != 1 {
				t.Fatalf("%d list requests were sent, want 1 (no retry of a refusal)", n)
			}
			for _, want := range []string{bucket, p.URL(), "access", "AWS_SECRET_ACCESS_KEY"} {
				if !strings.Contains(msg, want) {
					t.Fatalf("error %q does not mention %q", msg, want)
				}
			}
			for _, secret := range []string{tc.secret, s.SecretKey, tc.token} {
				if secret != "" && strings.Contains(msg, secret) {
					t.Fatalf("error %q contains a secret", msg)
				}
			}
			var se *s3.Error
			if !errors.As(err, &se) || se.Status != tc.wantStatus {
				t.Fatalf("error %T %v is not an *s3.Error with status %d", err, err, tc.wantStatus)
			}
			if errors.Is(err, storage.ErrNotFound) {
				t.Fatal("refused credentials are reported as a missing file")
			}

			// Reads and writes fail the same way; a refused read is not a
			// missing file.
			p.Reset()
			data := storagetest.LTX(t, 1, 1, 1, 4096, testTime, false)
			if _, err := c.WriteLTXFile(context.Background(), 0, 1, 1, bytes.NewReader(data)); err == nil ||
				!strings.Contains(err.Error(), "access") || strings.Contains(err.Error(), tc.secret) {
				t.Fatalf("write with refused credentials: %v", err)
			}
			if _, err := c.OpenLTXFile(context.Background(), 0, 1, 1); err == nil || errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("open with refused credentials: %v, want an error that is not ErrNotFound", err)
			}
			if ops := p.Operations(); ops["PutObject"] != 1 || ops["GetObject"] != 1 {
				t.Fatalf("requests %v, want one PutObject and one GetObject", ops)
			}
		})
	}
	if keys := awsKeys(t, s, bucket, ""); len(keys) != 0 {
		t.Fatalf("refused writes stored %q", keys)
	}
}

func TestMissingBucket(t *testing.T) {
	s := testenv.S3(t)
	p := newProxy(t, s)
	bucket := testenv.BucketName("missing") // never created
	c := newClient(t, s, p.URL(), bucket, "db", nil)

	err, took := errFromList(t, c)
	msg := err.Error()
	t.Logf("error: %s", msg)
	if took > 3*time.Second {
		t.Fatalf("missing bucket took %v to report: retried?", took)
	}
	for _, want := range []string{"does not exist", `"` + bucket + `"`, p.URL()} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error %q does not mention %q", msg, want)
		}
	}
	if errors.Is(err, storage.ErrNotFound) {
		t.Fatal("a missing bucket is reported as a missing file")
	}

	data := storagetest.LTX(t, 1, 1, 1, 4096, testTime, false)
	if _, err := c.WriteLTXFile(context.Background(), 0, 1, 1, bytes.NewReader(data)); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("write to a missing bucket: %v", err)
	}
	// A restore must not take a missing bucket for an empty replica.
	if _, err := c.OpenLTXFile(context.Background(), 0, 1, 1); err == nil || errors.Is(err, storage.ErrNotFound) ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("open in a missing bucket: %v, want a does-not-exist error that is not ErrNotFound", err)
	}
	if ops := p.Operations(); ops["ListObjectsV2"] != 1 || ops["PutObject"] != 1 || ops["GetObject"] != 1 {
		t.Fatalf("requests %v, want exactly one of each (no retries)", ops)
	}
}

func TestRetries(t *testing.T) {
	s := testenv.S3(t)
	bucket := s.NewBucket(t)
	p := newProxy(t, s)
	fast := func(cfg *s3.Config) { cfg.RetryBaseDelay = 10 * time.Millisecond }
	c := newClient(t, s, p.URL(), bucket, "retries", fast)
	// 16 random pages: big enough that a drop really happens mid-body.
	var txid atomic.Uint64
	newData := func(t *testing.T) (ltx.TXID, []byte) {
		id := ltx.TXID(txid.Add(1))
		return id, storagetest.LTX(t, id, id, 16, 4096, testTime, true)
	}

	for _, tc := range []struct {
		name   string
		arm    func()
		faults int
	}{
		{"SlowDown", func() { p.FailNext(3, 503, "SlowDown") }, 3},
		{"InternalError", func() { p.FailNext(2, 500, "InternalError") }, 2},
		{"ServiceUnavailableNoCode", func() { p.FailNext(1, 503, "") }, 1},
		{"TooManyRequests", func() { p.FailNext(1, 429, "TooManyRequests") }, 1},
		{"DropMidUpload", func() { p.DropNextMidBody(1) }, 1},
		{"DropMidUploadTwice", func() { p.DropNextMidBody(2) }, 2},
	} {
		t.Run("Write"+tc.name, func(t *testing.T) {
			id, data := newData(t)
			p.Reset()
			tc.arm()
			fi := writeFile(t, c, 0, id, id, data)
			if fi.SHA256 != sha256Hex(data) {
				t.Fatalf("returned sha %s", fi.SHA256)
			}
			if got, want := p.Operations()["PutObject"], tc.faults+1; got != want || p.Injected() != tc.faults {
				t.Fatalf("%d PutObject requests with %d faults injected, want %d with %d", got, p.Injected(), want, tc.faults)
			}
			if got := awsGet(t, s, bucket, c.Key(0, id, id)); !bytes.Equal(got, data) {
				t.Fatal("the stored object differs from the file written")
			}
			if got := readFile(t, c, 0, id, id); !bytes.Equal(got, data) {
				t.Fatal("read back differs")
			}
		})
	}

	t.Run("DropMidDownload", func(t *testing.T) {
		id, data := newData(t)
		writeFile(t, c, 0, id, id, data)
		p.Reset()
		p.SetFilter(func(r *http.Request) bool { return faultproxy.Operation(r) == "GetObject" })
		p.DropNextResponseMidBody(1)
		if got := readFile(t, c, 0, id, id); !bytes.Equal(got, data) {
			t.Fatal("read back differs")
		}
		if n := p.Operations()["GetObject"]; n != 2 || p.Injected() != 1 {
			t.Fatalf("%d GetObject requests, %d faults; want 2 and 1", n, p.Injected())
		}
	})

	t.Run("GetFailsThenSucceeds", func(t *testing.T) {
		id, data := newData(t)
		writeFile(t, c, 0, id, id, data)
		p.Reset()
		p.FailNext(2, 503, "SlowDown")
		if got := readFile(t, c, 0, id, id); !bytes.Equal(got, data) {
			t.Fatal("read back differs")
		}
		p.Reset()
		p.FailNext(1, 500, "InternalError")
		if got := listFiles(t, c, 0, id-1); len(got) != 1 || got[0].MinTXID != id {
			t.Fatalf("listing after a 500 gave %v", got)
		}
		if n := p.Operations()["ListObjectsV2"]; n != 2 {
			t.Fatalf("%d list requests, want 2", n)
		}
	})

	t.Run("DownloadAlwaysCut", func(t *testing.T) {
		id, data := newData(t)
		writeFile(t, c, 0, id, id, data)
		c2 := newClient(t, s, p.URL(), bucket, "retries", func(cfg *s3.Config) { fast(cfg); cfg.MaxRetries = 2 })
		p.Reset()
		p.SetFilter(func(r *http.Request) bool { return faultproxy.Operation(r) == "GetObject" })
		p.DropNextResponseMidBody(100)
		_, err := c2.OpenLTXFile(context.Background(), 0, id, id)
		if err == nil || storage.IsCorrupt(err) || errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("open with every download cut: %v, want a download error", err)
		}
		if !strings.Contains(err.Error(), c2.Key(0, id, id)) {
			t.Fatalf("error %q does not name the object", err)
		}
		if n := p.Operations()["GetObject"]; n != 3 {
			t.Fatalf("%d GetObject requests, want 3 (MaxRetries 2)", n)
		}
	})

	for _, tc := range []struct {
		name    string
		arm     func()
		wantMsg []string
	}{
		{"GiveUpSlowDown", func() { p.FailNext(100, 503, "SlowDown") }, []string{"giving up after 3 attempts", "SlowDown", "HTTP 503"}},
		{"GiveUpDrops", func() { p.DropNextMidBody(100) }, []string{"giving up after 3 attempts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c2 := newClient(t, s, p.URL(), bucket, "giveup-"+tc.name, func(cfg *s3.Config) { fast(cfg); cfg.MaxRetries = 2 })
			id, data := newData(t)
			p.Reset()
			tc.arm()
			start := time.Now()
			_, err := c2.WriteLTXFile(context.Background(), 0, id, id, bytes.NewReader(data))
			if err == nil {
				t.Fatal("write succeeded through a permanent fault")
			}
			t.Logf("error after %v: %v", time.Since(start), err)
			for _, want := range append(tc.wantMsg, bucket, c2.Key(0, id, id)) {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not mention %q", err, want)
				}
			}
			if n := p.Operations()["PutObject"]; n != 3 {
				t.Fatalf("%d PutObject requests, want 3 (MaxRetries 2)", n)
			}
			p.Reset()
			if files := listFiles(t, c2, 0, 0); len(files) != 0 {
				t.Fatalf("a failed write left %v", files)
			}
			if keys := awsKeys(t, s, bucket, "giveup-"+tc.name+"/"); len(keys) != 0 {
				t.Fatalf("a failed write left %q", keys)
			}
		})
	}

	t.Run("NoRetriesConfigured", func(t *testing.T) {
		c2 := newClient(t, s, p.URL(), bucket, "noretry", func(cfg *s3.Config) { fast(cfg); cfg.MaxRetries = -1 })
		id, data := newData(t)
		p.Reset()
		p.FailNext(1, 503, "SlowDown")
		if _, err := c2.WriteLTXFile(context.Background(), 0, id, id, bytes.NewReader(data)); err == nil {
			t.Fatal("write succeeded through a fault with retries off")
		}
		if n := p.Operations()["PutObject"]; n != 1 {
			t.Fatalf("%d PutObject requests, want 1", n)
		}
	})

	t.Run("ContextCancelStopsRetrying", func(t *testing.T) {
		c2 := newClient(t, s, p.URL(), bucket, "cancel", func(cfg *s3.Config) { cfg.RetryBaseDelay = time.Second })
		id, data := newData(t)
		p.Reset()
		p.FailNext(100, 503, "SlowDown")
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c2.WriteLTXFile(ctx, 0, id, id, bytes.NewReader(data))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("write with a deadline: %v, want DeadlineExceeded", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("cancelled write returned after %v", took)
		}
	})
}

func TestMultipart(t *testing.T) {
	s := testenv.S3(t)
	bucket := s.NewBucket(t)
	p := newProxy(t, s)
	c := newClient(t, s, p.URL(), bucket, "big", func(cfg *s3.Config) {
		cfg.PartSize = 5 << 20
		cfg.MultipartThreshold = 5 << 20
		cfg.RetryBaseDelay = 10 * time.Millisecond
	})
	data := storagetest.LTX(t, 1, 1, 3000, 4096, testTime, true)
	if len(data) <= 2*(5<<20) || len(data) > 13<<20 {
		t.Fatalf("test file is %d bytes, want about 12 MB (three 5 MiB parts)", len(data))
	}

	t.Run("RoundTrip", func(t *testing.T) {
		p.Reset()
		// One part upload fails and is retried.
		p.SetFilter(func(r *http.Request) bool { return faultproxy.Operation(r) == "UploadPart" })
		p.FailNext(1, 503, "SlowDown")
		fi := writeFile(t, c, 9, 1, 1, data)
		ops := p.Operations()
		if ops["CreateMultipartUpload"] != 1 || ops["UploadPart"] != 4 || ops["CompleteMultipartUpload"] != 1 || ops["PutObject"] != 0 {
			t.Fatalf("requests %v: want 1 create, 3 parts + 1 retry, 1 complete", ops)
		}
		if fi.Size != int64(len(data)) || fi.SHA256 != sha256Hex(data) {
			t.Fatalf("FileInfo %+v", fi)
		}
		key := c.Key(9, 1, 1)
		h := awsHead(t, s, bucket, key)
		if h.ContentLength != int64(len(data)) {
			t.Fatalf("stored size %d, want %d", h.ContentLength, len(data))
		}
		if h.Metadata["sha256"] != fi.SHA256 {
			t.Fatalf("metadata %v, want sha256 %s", h.Metadata, fi.SHA256)
		}
		if h.Metadata["litestream-timestamp"] != testTime.Format(time.RFC3339Nano) {
			t.Fatalf("metadata %v, want litestream-timestamp %s", h.Metadata, testTime.Format(time.RFC3339Nano))
		}
		if st, err := os.Stat(filepath.Join(s.Dir, bucket, filepath.FromSlash(key))); err != nil || st.Size() != int64(len(data)) {
			t.Fatalf("server's object file: %v, %v", st, err)
		}
		if got := readFile(t, c, 9, 1, 1); !bytes.Equal(got, data) {
			t.Fatal("read back differs")
		}
		if got := awsGet(t, s, bucket, key); !bytes.Equal(got, data) {
			t.Fatal("aws get-object returns different bytes")
		}
	})

	t.Run("FailedUploadIsAborted", func(t *testing.T) {
		c2 := newClient(t, s, p.URL(), bucket, "big-fail", func(cfg *s3.Config) {
			cfg.PartSize = 5 << 20
			cfg.MultipartThreshold = 5 << 20
			cfg.RetryBaseDelay = 10 * time.Millisecond
			cfg.MaxRetries = 1
		})
		p.Reset()
		p.SetFilter(func(r *http.Request) bool { return faultproxy.Operation(r) == "UploadPart" })
		p.FailNext(100, 500, "InternalError")
		if _, err := c2.WriteLTXFile(context.Background(), 9, 1, 1, bytes.NewReader(data)); err == nil ||
			!strings.Contains(err.Error(), "InternalError") {
			t.Fatalf("write through failing part uploads: %v", err)
		}
		if ops := p.Operations(); ops["AbortMultipartUpload"] != 1 || ops["CompleteMultipartUpload"] != 0 {
			t.Fatalf("requests %v: want the upload aborted", ops)
		}
		p.Reset()
		out := s.AWS(t, "s3api", "list-multipart-uploads", "--bucket", bucket, "--output", "json")
		if bytes.Contains(out, []byte("big-fail/")) {
			t.Fatalf("an aborted upload is still listed: %s", out)
		}
		if keys := awsKeys(t, s, bucket, "big-fail/"); len(keys) != 0 {
			t.Fatalf("a failed upload left %q", keys)
		}
	})

	t.Run("DropMidPart", func(t *testing.T) {
		c2 := c.Sub("drop")
		p.Reset()
		p.SetFilter(func(r *http.Request) bool { return faultproxy.Operation(r) == "UploadPart" })
		p.DropNextMidBody(1)
		writeFile(t, c2, 9, 1, 1, data)
		if n := p.Operations()["UploadPart"]; n != 4 || p.Injected() != 1 {
			t.Fatalf("%d part uploads, %d faults; want 4 and 1", n, p.Injected())
		}
		if got := readFile(t, c2, 9, 1, 1); !bytes.Equal(got, data) {
			t.Fatal("read back differs")
		}
	})
}

// TestSpecialCharacterKeys proves that keys which need escaping are signed
// the way the server checks them: every call is a real round trip.
func TestSpecialCharacterKeys(t *testing.T) {
	s := testenv.S3(t)
	bucket := s.NewBucket(t)
	for _, prefix := range []string{
		"my dir/ü",
		"sp ace/plus+eq=amp&semi;/tilde~(paren)!star*'quote'/日本語/$dollar,comma@at",
	} {
		t.Run(prefix, func(t *testing.T) {
			c := newClient(t, s, s.Endpoint, bucket, prefix, nil)
			data := storagetest.LTX(t, 3, 7, 2, 4096, testTime, true)
			writeFile(t, c, 1, 3, 7, data)
			writeFile(t, c.Sub("nested ö"), 0, 1, 1, storagetest.LTX(t, 1, 1, 1, 512, testTime, false))

			want := prefix + "/0001/0000000000000003-0000000000000007.ltx"
			if keys := awsKeys(t, s, bucket, prefix+"/0001/"); len(keys) != 1 || keys[0] != want {
				t.Fatalf("aws lists %q, want %q", keys, want)
			}
			if h := awsHead(t, s, bucket, want); h.Metadata["sha256"] != sha256Hex(data) {
				t.Fatalf("metadata %v", h.Metadata)
			}
			files := listFiles(t, c, 1, 0)
			if len(files) != 1 || files[0].MinTXID != 3 || files[0].MaxTXID != 7 || files[0].Size != int64(len(data)) {
				t.Fatalf("listing %v", files)
			}
			if got := readFile(t, c, 1, 3, 7); !bytes.Equal(got, data) {
				t.Fatal("read back differs")
			}
			rc, err := c.OpenLTXRange(context.Background(), 1, 3, 7, 0, ltx.HeaderSize)
			if err != nil {
				t.Fatal(err)
			}
			hdr, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(hdr, data[:ltx.HeaderSize]) {
				t.Fatal("range read differs")
			}
			if got := listFiles(t, c.Sub("nested ö"), 0, 0); len(got) != 1 {
				t.Fatalf("nested listing %v", got)
			}
			if err := c.DeleteLTXFiles(context.Background(), files); err != nil {
				t.Fatal(err)
			}
			if keys := awsKeys(t, s, bucket, prefix+"/0001/"); len(keys) != 0 {
				t.Fatalf("after delete aws lists %q", keys)
			}
		})
	}
}

// TestIncrementalListing writes more files than one listing page holds and
// checks that a listing after a TXID starts there rather than re-reading
// the earlier pages.
func TestIncrementalListing(t *testing.T) {
	s := testenv.S3(t)
	bucket := s.NewBucket(t)
	p := newProxy(t, s)
	c := newClient(t, s, p.URL(), bucket, "inc", nil)
	const n = 1005
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 1; i <= n; i++ {
		id := ltx.TXID(i)
		data := storagetest.LTX(t, id, id, 1, 512, testTime, false)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := c.WriteLTXFile(context.Background(), 0, id, id, bytes.NewReader(data)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	p.Reset()
	if got := listFiles(t, c, 0, 0); len(got) != n {
		t.Fatalf("listed %d, want %d", len(got), n)
	}
	if l := p.Operations()["ListObjectsV2"]; l != 2 {
		t.Fatalf("a full listing of %d files took %d requests, want 2", n, l)
	}
	p.Reset()
	got := listFiles(t, c, 0, 1000)
	if len(got) != 5 || got[0].MinTXID != 1001 {
		t.Fatalf("listing after 1000: %v", got)
	}
	if l := p.Operations()["ListObjectsV2"]; l != 1 {
		t.Fatalf("listing after 1000 took %d requests, want 1 (start-after skips the first page)", l)
	}
}

// TestCABundleTLS talks to the server over TLS through a proxy whose
// certificate only AWS_CA_BUNDLE vouches for.
func TestCABundleTLS(t *testing.T) {
	s := testenv.S3(t)
	bucket := s.NewBucket(t)
	target, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	// The director keeps the client's Host header, which SigV4 signs.
	srv := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	defer srv.Close()
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	data := storagetest.LTX(t, 1, 1, 2, 4096, testTime, true)
	fast := func(cfg *s3.Config) { cfg.RetryBaseDelay = 10 * time.Millisecond; cfg.MaxRetries = 1 }

	t.Setenv("AWS_CA_BUNDLE", bundle)
	c := newClient(t, s, srv.URL, bucket, "tls", fast)
	if !strings.HasPrefix(c.Endpoint(), "https://127.0.0.1:") {
		t.Fatalf("endpoint %s", c.Endpoint())
	}
	writeFile(t, c, 0, 1, 1, data)
	if got := readFile(t, c, 0, 1, 1); !bytes.Equal(got, data) {
		t.Fatal("read back over TLS differs")
	}

	// The system roots alone do not trust the proxy's certificate.
	t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
	c = newClient(t, s, srv.URL, bucket, "tls", fast)
	_, err = c.OpenLTXFile(context.Background(), 0, 1, 1)
	if err == nil || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("TLS to an untrusted certificate: %v, want a certificate error naming the endpoint", err)
	}

	t.Setenv("AWS_CA_BUNDLE", filepath.Join(t.TempDir(), "missing.pem"))
	if _, err := s3.New(s3.Config{Bucket: bucket, Endpoint: srv.URL, Credentials: &s3.Credentials{AccessKeyID: "a", SecretAccessKey: "b"}}); err == nil ||
		!strings.Contains(err.Error(), "AWS_CA_BUNDLE") {
		t.Fatalf("a missing CA bundle: %v, want an error naming AWS_CA_BUNDLE", err)
	}
}

// TestConditionalWrites: versitygw refuses to replace an object created
// with If-None-Match, and the probe says so; behind a proxy that strips the
// header (a server without conditional writes) the probe reports it.
func TestConditionalWrites(t *testing.T) {
	s := testenv.S3(t)
	bucket := s.NewBucket(t)
	ctx := context.Background()
	p := newProxy(t, s)
	c := newClient(t, s, p.URL(), bucket, "probe", nil)
	if ok, err := c.ProbeConditionalWrites(ctx); err != nil || !ok {
		t.Fatalf("probe against versitygw: %v, %v; want supported", ok, err)
	}
	if keys := awsKeys(t, s, bucket, "probe/"); len(keys) != 0 {
		t.Fatalf("the probe left %q", keys)
	}
	ops := p.Operations()
	if ops["PutObject"] != 2 || ops["DeleteObject"] != 1 || len(ops) != 2 {
		t.Fatalf("probe requests %v: want 2 PUTs and 1 DELETE", ops)
	}

	p.Reset()
	p.StripRequestHeaders("If-None-Match")
	if ok, err := c.ProbeConditionalWrites(ctx); err != nil || ok {
		t.Fatalf("probe through a proxy that strips If-None-Match: %v, %v; want unsupported", ok, err)
	}
	// Without the header the server replaces the object: what the probe
	// is there to report.
	data := storagetest.LTX(t, 1, 1, 1, 4096, testTime, false)
	writeFile(t, c, 0, 1, 1, data)
	other := storagetest.LTX(t, 1, 1, 2, 4096, testTime, false)
	if _, err := c.WriteLTXFile(ctx, 0, 1, 1, bytes.NewReader(other)); err != nil {
		t.Fatalf("unconditional write: %v", err)
	}

	// With the header back, the multipart path is refused too.
	p.Reset()
	mp := newClient(t, s, p.URL(), bucket, "probe-mp", func(cfg *s3.Config) {
		cfg.PartSize = 5 << 20
		cfg.MultipartThreshold = 5 << 20
	})
	big := storagetest.LTX(t, 1, 1, 1500, 4096, testTime, true)
	writeFile(t, mp, 0, 1, 1, big)
	bigOther := storagetest.LTX(t, 1, 1, 1501, 4096, testTime, true)
	_, err := mp.WriteLTXFile(ctx, 0, 1, 1, bytes.NewReader(bigOther))
	if !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("multipart write over an existing L0 file: %v, want ErrConflict", err)
	}
	if got := readFile(t, mp, 0, 1, 1); !bytes.Equal(got, big) {
		t.Fatal("the multipart completion replaced the object")
	}
	if ops := p.Operations(); ops["CompleteMultipartUpload"] != 2 || ops["AbortMultipartUpload"] != 1 {
		t.Fatalf("requests %v: want the refused upload aborted", ops)
	}
	// Our own multipart write retried: success.
	if fi, err := mp.WriteLTXFile(ctx, 0, 1, 1, bytes.NewReader(big)); err != nil || fi.SHA256 != sha256Hex(big) {
		t.Fatalf("retrying our own multipart write: %+v, %v", fi, err)
	}
}
