package testenv

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

func TestMissingBinaryNamesTheInstallScript(t *testing.T) {
	t.Setenv(EnvVersitygw, "/nonexistent/versitygw")
	_, err := startS3()
	if err == nil {
		t.Fatal("startS3 with a missing binary succeeded")
	}
	if !strings.Contains(err.Error(), "scripts/test-deps.sh") {
		t.Fatalf("error %q does not say to run scripts/test-deps.sh", err)
	}
}

// A private server (not the shared one) makes buckets with the aws CLI and
// on stop leaves no directory behind.
func TestStartStop(t *testing.T) {
	s, err := startS3()
	if err != nil {
		t.Fatal(err)
	}
	bucket := s.NewBucket(t)
	if _, err := os.Stat(s.Dir + "/" + bucket); err != nil {
		t.Fatalf("bucket directory missing: %v", err)
	}
	if err := s.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.srv.Base()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("server directory %s not removed: %v", s.srv.Base(), err)
	}
}

func TestSidecarMode(t *testing.T) {
	t.Setenv(EnvSidecar, "1")
	s, err := startS3()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.srv.Stop(); err != nil {
			t.Error(err)
		}
	}()
	if !s.Sidecar {
		t.Fatal("Sidecar = false with WALSYNC_S3_SIDECAR=1")
	}
	bucket := s.NewBucket(t)
	body := t.TempDir() + "/b"
	if err := os.WriteFile(body, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.AWS(t, "s3api", "put-object", "--bucket", bucket, "--key", "k", "--body", body, "--metadata", "sha256=abc")
	out := s.AWS(t, "s3api", "head-object", "--bucket", bucket, "--key", "k")
	if !strings.Contains(string(out), `"sha256": "abc"`) {
		t.Fatalf("metadata not kept in sidecar mode: %s", out)
	}
}
