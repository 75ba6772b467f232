package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/testenv"
)

// TestCLICompact is walsync compact, black-box on both backends: a replica
// made by five walsync snapshot runs; a dry run prints what it would
// delete and deletes nothing; --force deletes it, the latest restore
// still matches the database and an old TXID no longer restores; bad flag
// combinations fail with a usage error.
func TestCLICompact(t *testing.T) {
	for _, backend := range []string{"file", "s3"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			var url string
			var args, env []string
			var objects func() int // .ltx objects in the replica, counted independently
			switch backend {
			case "file":
				url = filepath.Join(dir, "replica")
				objects = func() int {
					n := 0
					filepath.WalkDir(url, func(p string, d fs.DirEntry, err error) error {
						if err == nil && !d.IsDir() && strings.HasSuffix(p, ".ltx") {
							n++
						}
						return nil
					})
					return n
				}
			case "s3":
				srv := testenv.S3(t)
				bucket := srv.NewBucket(t)
				url = "s3://" + bucket + "/backups"
				args = []string{"--endpoint", srv.Endpoint}
				env = []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_REGION=us-east-1"}
				objects = func() int {
					return strings.Count(string(srv.AWS(t, "s3", "ls", "--recursive", "s3://"+bucket+"/backups/")), ".ltx\n")
				}
			}
			run := func(a ...string) (string, string, int) {
				t.Helper()
				return walsyncCmd(t, env, append(a, append([]string{"-b", url}, args...)...)...)
			}

			db := filepath.Join(dir, "t1", "app.db")
			os.MkdirAll(filepath.Dir(db), 0o755)
			sqlite3(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, data BLOB);")
			for i := 1; i <= 5; i++ {
				sqlite3(t, db, fmt.Sprintf("INSERT INTO notes (body, data) VALUES ('note %d', randomblob(%d));", i, 1000*i))
				if _, stderr, code := run("snapshot", db); code != 0 {
					t.Fatalf("snapshot %d: exit %d: %s", i, code, stderr)
				}
			}
			// TXIDs 1..5, each in L0 and as a snapshot 1-N.
			if n := objects(); n != 10 {
				t.Fatalf("%d objects after five snapshots, want 10", n)
			}
			restoreTo := func(extra ...string) (string, string, int) {
				t.Helper()
				out := filepath.Join(t.TempDir(), "restored.db")
				stdout, stderr, code := run(append([]string{"restore", "t1/app", "-o", out}, extra...)...)
				if code == 0 {
					return sqlite3(t, out, ".dump"), stderr, 0
				}
				return stdout, stderr, code
			}

			// Keep only the newest hour's newest snapshot: deterministic
			// whenever the test runs. Everything older than TXID 5 goes,
			// except L0 5, the newest L0 file.
			policy := []string{"--hourly", "1", "--daily", "0", "--weekly", "0", "--monthly", "0"}
			out, stderr, code := run(append([]string{"compact", "t1/app"}, policy...)...)
			if code != 0 {
				t.Fatalf("dry run: exit %d: %s", code, stderr)
			}
			for _, want := range []string{
				"would delete 8 files", "2 files would be left", "dry run: nothing was deleted",
				"L9     0000000000000001-0000000000000004.ltx", "L0     0000000000000004-0000000000000004.ltx",
				"snapshots kept: 1", "TXID 5", "latest,hourly",
			} {
				if !strings.Contains(out, want) {
					t.Fatalf("dry run output lacks %q:\n%s", want, out)
				}
			}
			if n := objects(); n != 10 {
				t.Fatalf("the dry run deleted objects: %d left of 10", n)
			}
			if _, stderr, code := restoreTo("--txid", "2"); code != 0 {
				t.Fatalf("restore --txid 2 after the dry run: exit %d: %s", code, stderr)
			}

			// Litestream's policy keeps everything this recent; it cannot be
			// combined with GFS counts.
			out, stderr, code = run("compact", "t1/app", "--retention", "1h")
			if code != 0 || !strings.Contains(out, "nothing to delete") || !strings.Contains(out, "snapshots kept: 5") {
				t.Fatalf("--retention 1h: exit %d\n%s%s", code, out, stderr)
			}

			out, stderr, code = run(append([]string{"compact", "t1/app", "--force"}, policy...)...)
			if code != 0 || !strings.Contains(out, "deleted 8 files") || strings.Contains(out, "dry run") {
				t.Fatalf("--force: exit %d\n%s%s", code, out, stderr)
			}
			if n := objects(); n != 2 {
				t.Fatalf("%d objects after --force, want 2 (L9 1-5, L0 5)", n)
			}
			got, stderr, code := restoreTo()
			if code != 0 {
				t.Fatalf("latest restore after compact: exit %d: %s", code, stderr)
			}
			if want := sqlite3(t, db, ".dump"); got != want {
				t.Fatal("the latest restore after compact differs from the database")
			}
			if _, stderr, code := restoreTo("--txid", "2"); code == 0 || !strings.Contains(stderr, "0000000000000002") {
				t.Fatalf("restore --txid 2 after compact: exit %d, %q; want an error naming the TXID", code, stderr)
			}
			out, _, code = run(append([]string{"compact", "t1/app", "--force"}, policy...)...)
			if code != 0 || !strings.Contains(out, "nothing to delete") {
				t.Fatalf("a second --force: exit %d\n%s", code, out)
			}
		})
	}
}

// TestCLICompactErrors: --help, and every bad combination is a usage error
// (exit 2) that says what to do.
func TestCLICompactErrors(t *testing.T) {
	out, stderr, code := walsyncCmd(t, nil, "compact", "--help")
	if code != 0 || !strings.Contains(out+stderr, "Usage: walsync compact") || !strings.Contains(out+stderr, "does not merge") {
		t.Fatalf("compact --help: exit %d\n%s%s", code, out, stderr)
	}
	replica := filepath.Join(t.TempDir(), "replica")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"compact", "x/app", "-b", replica, "--retention", "24h", "--hourly", "3", "--monthly", "1"}, 2, "--retention and --hourly, --monthly select two different policies"},
		{[]string{"compact", "x/app", "-b", replica, "--retention", "0s"}, 2, "invalid --retention 0s"},
		{[]string{"compact", "x/app", "-b", replica, "--retention", "-1h"}, 2, "invalid --retention"},
		{[]string{"compact", "x/app", "-b", replica, "--weekly", "-1"}, 2, "invalid --weekly -1"},
		{[]string{"compact", "-b", replica}, 2, "give exactly one database NAME"},
		{[]string{"compact", "a", "b", "-b", replica}, 2, "give exactly one database NAME"},
		{[]string{"compact", "x/app"}, 2, "no replica given"},
		{[]string{"compact", "x/app", "-b", replica, "--hourly", "x"}, 2, "invalid value"},
		{[]string{"compact", "x/app", "-b", replica}, 1, "no databases under"},
	} {
		_, stderr, code := walsyncCmd(t, nil, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("walsync %v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.want)
		}
	}
}
