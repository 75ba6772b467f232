package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// TestCLIConfig: a Litestream v0.5 config file, unchanged (directory mode,
// an S3 replica given by type/bucket/path/endpoint, ${VAR} credentials, a
// snapshot block, addr), drives walsync watch: databases found in the
// directory, new ones included, are replicated where Litestream would put
// them; status answers on localhost; unknown keys are warnings naming
// their line.
func TestCLIConfig(t *testing.T) {
	srv := testenv.S3(t)
	bucket := srv.NewBucket(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "tenants")
	for _, tenant := range []string{"t1", "t2"} {
		p := filepath.Join(root, tenant, "app.db")
		os.MkdirAll(filepath.Dir(p), 0o755)
		sqlite3(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);")
	}
	addr := freePort(t)
	cfg := fmt.Sprintf(`# a Litestream v0.5 config
access-key-id: ${TEST_KEY_ID}
secret-access-key: ${TEST_SECRET}
addr: "%s"
snapshot:
  interval: 1h
  retention: 24h
dbs:
  - dir: %s
    pattern: "*.db"
    recursive: true
    watch: true
    monitor-interval: 1s
    replica:
      type: s3
      bucket: %s
      path: backups
      endpoint: %s
      region: us-east-1
      force-path-style: true
      sync-interval: 200ms
walsync:
  idle-timeout: 2s
`, addr, root, bucket, srv.Endpoint)
	cfgPath := filepath.Join(dir, "litestream.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"TEST_KEY_ID=" + srv.AccessKey, "TEST_SECRET=" + srv.SecretKey,
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="}
	var logs bytes.Buffer
	cmd := exec.Command(testenv.WalsyncBinary(t), "watch", "--config", cfgPath)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for i := 0; i < 5; i++ {
		for _, tenant := range []string{"t1", "t2"} {
			sqlite3(t, filepath.Join(root, tenant, "app.db"), fmt.Sprintf("INSERT INTO notes (body) VALUES ('%s %d');", tenant, i))
		}
	}
	// A tenant created while running.
	p3 := filepath.Join(root, "t3", "app.db")
	os.MkdirAll(filepath.Dir(p3), 0o755)
	sqlite3(t, p3, "PRAGMA journal_mode=WAL; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('new tenant');")

	var status string
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		out, _, code := walsyncCmd(t, nil, "status", "--addr", addr)
		if code == 0 && strings.Contains(out, "3 databases") && strings.Contains(out, "oldest unsynced change 0s") {
			status = out
			break
		}
	}
	if status == "" {
		t.Fatalf("status never showed 3 databases fully synced\n%s", logs.String())
	}
	if !strings.Contains(status, filepath.Join(root, "t3", "app.db")) {
		t.Fatalf("status does not list the new tenant:\n%s", status)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch --config did not exit cleanly: %v\n%s", err, logs.String())
	}
	log := logs.String()
	if !strings.Contains(log, "line 13: key dbs[0].monitor-interval is not supported by walsync") {
		t.Fatalf("no warning naming the unsupported key and its line:\n%s", log)
	}
	if strings.Contains(log, srv.SecretKey) {
		t.Fatal("the secret from the config file appears in the log")
	}
	// Where Litestream's directory mode puts them: <path>/<relative path>.
	for _, tenant := range []string{"t1", "t2", "t3"} {
		restored := filepath.Join(t.TempDir(), "r.db")
		_, stderr, code := walsyncCmd(t, []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey},
			"restore", tenant+"/app.db", "-o", restored, "-b", "s3://"+bucket+"/backups", "--endpoint", srv.Endpoint)
		if code != 0 {
			t.Fatalf("restore %s: exit %d: %s", tenant, code, stderr)
		}
		if got, want := sqlite3(t, restored, ".dump"), sqlite3(t, filepath.Join(root, tenant, "app.db"), ".dump"); got != want {
			t.Fatalf("restored %s differs from the source", tenant)
		}
	}

	// Bad values: exit 2, the file, line and key named, nothing started.
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("dbs:\n  - path: /srv/a.db\n    replica:\n      url: s3://b/a\n      sync-interval: soon\n"), 0o600)
	_, stderr, code := walsyncCmd(t, nil, "watch", "--config", bad)
	if code != 2 || !strings.Contains(stderr, "bad.yml line 5") || !strings.Contains(stderr, "sync-interval") {
		t.Fatalf("bad config: exit %d: %s", code, stderr)
	}
}
