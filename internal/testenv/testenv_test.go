package testenv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// headObject is the part of "aws s3api head-object" output the tests use.
type headObject struct {
	ContentLength int64
	ETag          string
	Metadata      map[string]string
}

func TestS3PutObjectMetadataRoundTrip(t *testing.T) {
	s := testenv.S3(t)
	if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("Endpoint = %q, want http://127.0.0.1:PORT", s.Endpoint)
	}
	bucket := s.NewBucket(t)

	body := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(body, []byte("hello walsync\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.AWS(t, "s3api", "put-object", "--bucket", bucket, "--key", "dir/obj.bin",
		"--body", body, "--metadata", "sha256=abc")

	var head headObject
	out := s.AWS(t, "s3api", "head-object", "--bucket", bucket, "--key", "dir/obj.bin", "--output", "json")
	if err := json.Unmarshal(out, &head); err != nil {
		t.Fatalf("decoding head-object output %q: %v", out, err)
	}
	if got := head.Metadata["sha256"]; got != "abc" {
		t.Errorf("metadata sha256 = %q, want %q (head-object: %s)", got, "abc", out)
	}
	if head.ContentLength != int64(len("hello walsync\n")) {
		t.Errorf("ContentLength = %d, want %d", head.ContentLength, len("hello walsync\n"))
	}

	// The object is a plain file under the posix backend root.
	data, err := os.ReadFile(filepath.Join(s.Dir, bucket, "dir", "obj.bin"))
	if err != nil {
		t.Fatalf("reading object file from backend: %v", err)
	}
	if string(data) != "hello walsync\n" {
		t.Errorf("backend file = %q", data)
	}
}

func TestS3IsShared(t *testing.T) {
	a, b := testenv.S3(t), testenv.S3(t)
	if a != b {
		t.Fatalf("S3 returned two servers: %s and %s", a.Endpoint, b.Endpoint)
	}
	if a.AccessKey == "" || a.SecretKey == "" || a.Region != "us-east-1" {
		t.Fatalf("bad credentials: %+v", a)
	}
}

func TestNewBucketIsFreshAndListed(t *testing.T) {
	s := testenv.S3(t)
	b1, b2 := s.NewBucket(t), s.NewBucket(t)
	if b1 == b2 {
		t.Fatalf("NewBucket returned %q twice", b1)
	}
	var list struct{ Buckets []struct{ Name string } }
	out := s.AWS(t, "s3api", "list-buckets", "--output", "json")
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("decoding list-buckets output %q: %v", out, err)
	}
	found := map[string]bool{}
	for _, b := range list.Buckets {
		found[b.Name] = true
	}
	if !found[b1] || !found[b2] {
		t.Fatalf("buckets %q, %q not in list-buckets: %s", b1, b2, out)
	}
}

var dnsBucket = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

func TestBucketNameIsValid(t *testing.T) {
	for _, hint := range []string{
		"TestFoo", "TestFoo/sub_test#01", "", "---", "ÜnïcødeTest",
		strings.Repeat("VeryLongTestName/", 20),
	} {
		name := testenv.BucketName(hint)
		if len(name) < 3 || len(name) > 63 || !dnsBucket.MatchString(name) || strings.Contains(name, "--") {
			t.Errorf("BucketName(%q) = %q: not a valid bucket name", hint, name)
		}
	}
	if a, b := testenv.BucketName("x"), testenv.BucketName("x"); a == b {
		t.Errorf("BucketName returned %q twice", a)
	}
}

// The machines running the tests set AWS_CA_BUNDLE; the aws CLI must still
// talk plain http to the local endpoint with it set.
func TestAWSWithCABundle(t *testing.T) {
	s := testenv.S3(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := s.AWSCommand(ctx, s.Endpoint, "s3api", "list-buckets", "--output", "json")
	cmd.Env = append(cmd.Env, "AWS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("aws list-buckets with AWS_CA_BUNDLE: %v\n%s", err, stderr.String())
	}
	if !bytes.Contains(out, []byte(`"Buckets"`)) {
		t.Fatalf("unexpected list-buckets output: %s", out)
	}
}

func TestRepoRoot(t *testing.T) {
	root := testenv.RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("RepoRoot = %q has no go.mod: %v", root, err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "test-deps.sh")); err != nil {
		t.Fatalf("RepoRoot = %q is not the walsync root: %v", root, err)
	}
}
