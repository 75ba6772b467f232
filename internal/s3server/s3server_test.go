package s3server

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMissingBinaryNamesTheInstallScript(t *testing.T) {
	t.Setenv(EnvVersitygw, "/nonexistent/versitygw")
	_, err := Start(Options{})
	if err == nil {
		t.Fatal("Start with a missing binary succeeded")
	}
	if !strings.Contains(err.Error(), "scripts/test-deps.sh") {
		t.Fatalf("error %q does not say to run scripts/test-deps.sh", err)
	}
}

// A server in its own temporary directory starts, answers, has its
// buckets, and on stop leaves no process or directory behind.
func TestStartStop(t *testing.T) {
	s, err := Start(Options{Buckets: []string{"b1"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") || len(s.AccessKey) != 20 || len(s.SecretKey) != 40 || s.Region != Region {
		t.Errorf("server %+v", s)
	}
	resp, err := http.Get(s.Endpoint + "/b1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := os.Stat(filepath.Join(s.Dir, "b1")); err != nil {
		t.Fatalf("bucket directory missing: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if !s.proc.Exited() {
		t.Fatal("process still running after Stop")
	}
	if _, err := os.Stat(s.Base()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("server directory %s not removed: %v", s.Base(), err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// A directory the caller gives is kept, log included.
func TestCallersDirIsKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s3")
	s, err := Start(Options{Dir: dir, Sidecar: true})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Sidecar || s.Base() != dir {
		t.Errorf("Sidecar %v, Base %s", s.Sidecar, s.Base())
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.LogFile); err != nil {
		t.Fatalf("log removed with the caller's directory: %v", err)
	}
}
