package main

// Errors that cannot heal fail at once with their fix; a database that is
// not there yet is waited for, quietly (issue 21).

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// TestEndpointWithoutScheme: an endpoint written without http:// in front
// of a plain-HTTP server fails at once, saying what to write, instead of
// retrying for seconds.
func TestEndpointWithoutScheme(t *testing.T) {
	s3 := testenv.S3(t)
	t.Cleanup(func() { _ = testenv.Stop() })
	bucket := s3.NewBucket(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	t.Setenv("AWS_REGION", s3.Region)
	hostPort := strings.TrimPrefix(s3.Endpoint, "http://")
	start := time.Now()
	code, stdout, errOut := cli(t, "list", "-b", "s3://"+bucket+"/x", "--endpoint", hostPort)
	took := time.Since(start)
	if code != 1 || !strings.Contains(errOut, "http://"+hostPort) || strings.Contains(errOut, "retrying") || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
		t.Errorf("exit %d, want 1 and one line naming http://%s\n%s%s", code, hostPort, stdout, errOut)
	}
	if took > time.Second {
		t.Errorf("took %v to fail, want under 1 s", took)
	}
	// The same endpoint with its scheme reaches the bucket: the fix works.
	code, stdout, errOut = cli(t, "list", "-b", "s3://"+bucket+"/x", "--endpoint", "http://"+hostPort)
	if code != 1 || !strings.Contains(errOut, "no databases under s3://"+bucket+"/x") {
		t.Errorf("with http://: exit %d, want 1 and no databases under\n%s%s", code, stdout, errOut)
	}
}

// TestWatchMissingDirectory: watch on an explicit path whose directory does
// not exist is a usage error (exit 2), as a missing --dir is.
func TestWatchMissingDirectory(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no", "such", "app.db")
	code, stdout, errOut := cli(t, "watch", missing, "-b", t.TempDir())
	if code != 2 || !strings.Contains(errOut, filepath.Dir(missing)) || !strings.Contains(errOut, "does not exist") {
		t.Fatalf("exit %d, want 2 naming the missing directory\n%s%s", code, stdout, errOut)
	}
}

// TestWatchWaitsForMissingFile: a database file that does not exist yet in
// an existing directory is one WARN, no ERROR per retry, and it is
// replicated once it appears.
func TestWatchWaitsForMissingFile(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app", "later.db")
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o755); err != nil {
		t.Fatal(err)
	}
	rep := filepath.Join(dir, "rep")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"watch", dbPath, "-b", rep, "--sync-interval", "100ms"}, &stdout, &stderr)
	}()
	time.Sleep(3 * time.Second) // longer than the first retry back-offs (200 ms, 400 ms, …)
	walDB(t, dbPath, 2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if files, _ := filepath.Glob(filepath.Join(rep, "app", "later", "ltx", "*", "*.ltx")); len(files) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("the database was not replicated after it appeared\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	code := <-done
	logs := stderr.String()
	if code != 0 {
		t.Errorf("exit %d\n%s", code, logs)
	}
	if n := strings.Count(logs, "waiting for it to be created"); n != 1 {
		t.Errorf("%d WARNs about the missing file, want 1\n%s", n, logs)
	}
	if strings.Contains(logs, "level=ERROR") {
		t.Errorf("ERRORs while waiting for the file\n%s", logs)
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `\n`) {
			t.Errorf("a log line holds a literal \\n: %s", line)
		}
	}
}

// TestLogLinesSingleLine: an error written over several lines (the
// not-in-WAL advice) is logged on one line, without a literal \n.
func TestLogLinesSingleLine(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app", "rollback.db")
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+dbPath) // rollback journal: not WAL
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE t (v TEXT)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var stdout, stderr syncBuffer
	run(ctx, []string{"watch", dbPath, "-b", filepath.Join(dir, "rep")}, &stdout, &stderr)
	logs := stderr.String()
	if !strings.Contains(logs, "not in WAL mode") || !strings.Contains(logs, "PRAGMA journal_mode=WAL") {
		t.Fatalf("no not-in-WAL error logged\n%s", logs)
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `\n`) {
			t.Errorf("a log line holds a literal \\n: %s", line)
		}
	}
}
