package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/internal/workload"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage/file"
)

func sqlite3(t *testing.T, db string, sql string) string {
	t.Helper()
	cmd := exec.Command("sqlite3", "-batch", db)
	cmd.Stdin = strings.NewReader(".timeout 5000\n" + sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", db, err, out)
	}
	return string(out)
}

// walsyncCmd runs walsync and returns stdout, stderr and the exit code.
func walsyncCmd(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(testenv.WalsyncBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

type backendArgs struct {
	url  string
	args []string
	env  []string
}

func backends(t *testing.T) map[string]func() backendArgs {
	return map[string]func() backendArgs{
		"file": func() backendArgs { return backendArgs{url: filepath.Join(t.TempDir(), "replica")} },
		"s3": func() backendArgs {
			srv := testenv.S3(t)
			return backendArgs{
				url:  "s3://" + srv.NewBucket(t) + "/backups/app",
				args: []string{"--endpoint", srv.Endpoint},
				env:  []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_REGION=us-east-1"},
			}
		},
	}
}

// TestCLIWatchRestore is the README's story, black-box: databases written
// by the sqlite3 CLI, watched by walsync, stopped, restored, compared by
// .dump.
func TestCLIWatchRestore(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := mk()
			dir := t.TempDir()
			var dbs []string
			for _, tenant := range []string{"t1", "t2"} {
				p := filepath.Join(dir, tenant, "app.db")
				os.MkdirAll(filepath.Dir(p), 0o755)
				sqlite3(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, data BLOB);")
				dbs = append(dbs, p)
			}
			var logs bytes.Buffer
			args := append(append([]string{"watch"}, dbs...), append([]string{"-b", b.url, "--sync-interval", "200ms"}, b.args...)...)
			cmd := exec.Command(testenv.WalsyncBinary(t), args...)
			cmd.Env = append(os.Environ(), b.env...)
			cmd.Stderr = &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 30; i++ {
				for _, p := range dbs {
					sqlite3(t, p, fmt.Sprintf("INSERT INTO notes (body, data) VALUES ('note %d', randomblob(%d));", i, 100+i*300))
				}
				if i == 10 {
					sqlite3(t, dbs[0], "DELETE FROM notes WHERE id % 2 = 0; VACUUM;")
				}
				if i == 20 {
					sqlite3(t, dbs[1], "PRAGMA wal_checkpoint(TRUNCATE);")
				}
			}
			time.Sleep(time.Second)
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("watch did not exit cleanly on SIGTERM: %v\n%s", err, logs.String())
			}
			if strings.Contains(logs.String(), "level=ERROR") {
				t.Fatalf("watch logged errors:\n%s", logs.String())
			}

			out, stderr, code := walsyncCmd(t, b.env, append([]string{"list", "-b", b.url}, b.args...)...)
			if code != 0 || !strings.Contains(out, "t1/app") || !strings.Contains(out, "t2/app") {
				t.Fatalf("list (exit %d): %s %s", code, out, stderr)
			}
			for i, p := range dbs {
				name := []string{"t1/app", "t2/app"}[i]
				restored := filepath.Join(t.TempDir(), "restored.db")
				_, stderr, code := walsyncCmd(t, b.env, append([]string{"restore", name, "-o", restored, "-b", b.url}, b.args...)...)
				if code != 0 {
					t.Fatalf("restore %s: exit %d: %s", name, code, stderr)
				}
				if got, want := sqlite3(t, restored, ".dump"), sqlite3(t, p, ".dump"); got != want {
					t.Fatalf("restored %s differs from the source", name)
				}
				// The output exists now: no overwrite without --force.
				_, stderr, code = walsyncCmd(t, b.env, append([]string{"restore", name, "-o", restored, "-b", b.url}, b.args...)...)
				if code == 0 || !strings.Contains(stderr, "--force") {
					t.Fatalf("restore over an existing file: exit %d: %s", code, stderr)
				}
				_, stderr, code = walsyncCmd(t, b.env, append([]string{"restore", name, "-o", restored, "-b", b.url, "--force", "--txid", "1"}, b.args...)...)
				if code != 0 {
					t.Fatalf("restore --force --txid 1: exit %d: %s", code, stderr)
				}
			}
		})
	}
}

// TestCLIErrors: bad input gets a clear error naming the thing and what to
// do, and a non-zero exit.
func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	for _, verb := range []string{"watch", "snapshot", "restore", "list", "version"} {
		out, stderr, code := walsyncCmd(t, nil, verb, "--help")
		if code != 0 || !strings.Contains(out+stderr, "Usage: walsync "+verb) {
			t.Fatalf("%s --help: exit %d\n%s%s", verb, code, out, stderr)
		}
	}
	a, b := filepath.Join(dir, "a", "x", "app.db"), filepath.Join(dir, "b", "x", "app.db")
	for _, p := range []string{a, b} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		sqlite3(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
	}
	rollback := filepath.Join(dir, "rollback.db")
	sqlite3(t, rollback, "CREATE TABLE t(x);")
	replica := filepath.Join(dir, "replica")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"watch", a, b, "-b", replica}, "would share the replica name"},
		{[]string{"watch", a}, "no replica given"},
		{[]string{"snapshot", rollback, "-b", replica}, "not in WAL mode"},
		{[]string{"snapshot", filepath.Join(dir, "nope.db"), "-b", replica}, "nope.db"},
		{[]string{"restore", "x/app", "-o", filepath.Join(dir, "o.db"), "-b", replica}, "no databases under"},
		{[]string{"restore", "x/app", "-o", filepath.Join(dir, "o.db"), "-b", replica, "--timestamp", "yesterday"}, "RFC 3339"},
		{[]string{"restore", "x/app", "-o", filepath.Join(dir, "o.db"), "-b", "gs://bucket"}, "unsupported replica URL"},
		{[]string{"bogus"}, "unknown command"},
	}
	for _, c := range cases {
		_, stderr, code := walsyncCmd(t, []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="}, c.args...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("walsync %v: exit %d, stderr %q; want it to mention %q", c.args, code, stderr, c.want)
		}
	}
	// Credentials never show up in errors.
	secret := "s3cr3t-" + fmt.Sprint(rand.Uint64())
	_, stderr, _ := walsyncCmd(t, []string{"AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=" + secret},
		"list", "-b", "s3://walsync-no-such-bucket/x", "--endpoint", "http://127.0.0.1:1")
	if strings.Contains(stderr, secret) {
		t.Fatalf("the secret appears in the error output: %s", stderr)
	}
}

// TestCrashRecovery kills walsync with SIGKILL at random moments while
// writers run, restarts it each time, and checks that nothing committed is
// lost and that level 0 has no duplicate or overlapping TXIDs.
func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "crash", "app.db")
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := workload.Create(path, 4096); err != nil {
		t.Fatal(err)
	}
	replica := filepath.Join(dir, "replica")
	wl := workload.New(workload.Options{Path: path, Writers: 2, External: true, Checkpoints: true, Vacuum: true, Seed: rand.Uint64(), Pace: 5 * time.Millisecond, MaxBlob: 256 << 10})
	ctx, stop := context.WithTimeout(context.Background(), tortureDuration(t, 10*time.Second))
	defer stop()
	werr := make(chan error, 1)
	go func() { werr <- wl.Run(ctx) }()

	r := rand.New(rand.NewPCG(rand.Uint64(), 7))
	kills := 0
	start := func() (*exec.Cmd, *bytes.Buffer) {
		var logs bytes.Buffer
		cmd := exec.Command(testenv.WalsyncBinary(t), "watch", path, "-b", replica, "--sync-interval", "100ms")
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &logs
	}
	for ctx.Err() == nil {
		cmd, _ := start()
		time.Sleep(time.Duration(200+r.IntN(1500)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		kills++
	}
	if err := <-werr; err != nil {
		t.Fatalf("workload: %v", err)
	}
	// A last run catches up and stops cleanly.
	cmd, logs := start()
	time.Sleep(2 * time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final watch: %v\n%s", err, logs)
	}
	client := file.New(replica).Sub("crash/app")
	checkContiguous(t, client)
	out := filepath.Join(dir, "restored.db")
	if _, err := restore.Restore(context.Background(), restore.Options{Client: client, Output: out}); err != nil {
		t.Fatal(err)
	}
	got, err := wl.Verify(out)
	if err != nil {
		t.Fatal(err)
	}
	for w, n := range wl.Committed() {
		if got[w] != n {
			t.Fatalf("writer %d committed %d transactions, the restore holds %d", w, n, got[w])
		}
	}
	t.Logf("%d kills, %d transactions, all restored", kills, wl.Total())
}
