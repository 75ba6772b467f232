package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// corruptLTX overwrites the start of every LTX file below dir.
func corruptLTX(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".ltx") {
			return err
		}
		n++
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteAt([]byte("garbage!"), 0)
		return err
	})
	if err != nil || n == 0 {
		t.Fatalf("corrupt the LTX files below %s: %d files, %v", dir, n, err)
	}
}

// TestListOneBadDatabase: one database whose objects have a bad header,
// among several. list prints every database, the bad one as a row with
// its error, and exits 0; with --strict it prints the same table and
// exits 1.
func TestListOneBadDatabase(t *testing.T) {
	for _, backend := range []string{"file", "s3"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			var url, objects string // objects: where t2/app's objects are on disk
			var args, env []string
			switch backend {
			case "file":
				url = filepath.Join(dir, "replica")
				objects = filepath.Join(url, "t2", "app")
			case "s3":
				srv := testenv.S3(t)
				bucket := srv.NewBucket(t)
				url = "s3://" + bucket + "/backups"
				objects = filepath.Join(srv.Dir, bucket, "backups", "t2", "app")
				args = []string{"--endpoint", srv.Endpoint}
				env = []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_REGION=us-east-1"}
			}
			for _, tenant := range []string{"t1", "t2", "t3"} {
				db := filepath.Join(dir, tenant, "app.db")
				os.MkdirAll(filepath.Dir(db), 0o755)
				sqlite3(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
				if _, stderr, code := walsyncCmd(t, env, append([]string{"snapshot", db, "-b", url}, args...)...); code != 0 {
					t.Fatalf("snapshot %s: exit %d: %s", db, code, stderr)
				}
			}
			corruptLTX(t, objects)

			for _, strict := range []bool{false, true} {
				argv := append([]string{"list", "-b", url}, args...)
				if strict {
					argv = append(argv, "--strict")
				}
				out, stderr, code := walsyncCmd(t, env, argv...)
				if want := map[bool]int{false: 0, true: 1}[strict]; code != want {
					t.Errorf("list (strict %v): exit %d, want %d\n%s%s", strict, code, want, out, stderr)
				}
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "ERROR") {
					t.Fatalf("list (strict %v): want a header and three rows:\n%s%s", strict, out, stderr)
				}
				for i, name := range []string{"t1/app", "t2/app", "t3/app"} {
					row := lines[i+1]
					if !strings.HasPrefix(row, name+" ") {
						t.Errorf("list (strict %v): row %d is not %s: %q", strict, i+1, name, row)
					}
					bad := strings.Contains(row, "corrupt") || strings.Contains(row, "invalid")
					if bad != (name == "t2/app") {
						t.Errorf("list (strict %v): row %q: error shown %v, want %v", strict, row, bad, name == "t2/app")
					}
				}
				if !strings.Contains(stderr, "1 of 3 databases could not be read") {
					t.Errorf("list (strict %v): stderr does not count the unreadable database: %q", strict, stderr)
				}
			}
		})
	}
}

// TestNamesEscapedForTheTerminal: a database whose directory is named
// "app\x1b[2J\x1b[31mFAKE-OK" (an escape sequence that would clear the
// screen and print a red FAKE-OK) is printed quoted by list, verify and
// status, never with a raw ESC.
func TestNamesEscapedForTheTerminal(t *testing.T) {
	const evil = "app\x1b[2J\x1b[31mFAKE-OK"
	const quoted = `"app\x1b[2J\x1b[31mFAKE-OK/db"`
	dir := t.TempDir()
	replica := filepath.Join(dir, "replica")
	root := filepath.Join(dir, "tenants")
	db := filepath.Join(root, evil, "db.db")
	plain := filepath.Join(root, "plain", "db.db")
	for _, p := range []string{db, plain} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		sqlite3(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
		if _, stderr, code := walsyncCmd(t, nil, "snapshot", p, "-b", replica); code != 0 {
			t.Fatalf("snapshot: exit %d: %s", code, stderr)
		}
	}
	noESC := func(what, out string) {
		t.Helper()
		if strings.ContainsRune(out, '\x1b') {
			t.Errorf("%s printed a raw ESC:\n%q", what, out)
		}
	}
	out, stderr, code := walsyncCmd(t, nil, "list", "-b", replica)
	noESC("list", out+stderr)
	if code != 0 || !strings.Contains(out, quoted) || !strings.Contains(out, "plain/db ") {
		t.Errorf("list: exit %d; want the name quoted as %s and plain/db as is:\n%s%s", code, quoted, out, stderr)
	}
	out, stderr, code = walsyncCmd(t, nil, "verify", "--all", "-b", replica)
	noESC("verify", out+stderr)
	if code != 0 || !strings.Contains(out, quoted+": ") {
		t.Errorf("verify --all: exit %d; want the name quoted as %s:\n%s%s", code, quoted, out, stderr)
	}

	// status shows paths found by --dir.
	addr := freePort(t)
	p := startStatusWatch(t, addr, testenv.WalsyncBinary(t), "watch", "--dir", root, "--recursive", "-b", filepath.Join(dir, "replica2"),
		"--addr", addr, "--sync-interval", "200ms")
	waitUntil(t, 30*time.Second, "both databases in status", func() bool {
		st, err := fetchStatus(addr)
		return err == nil && st.Databases == 2
	})
	out, stderr, code = walsyncCmd(t, nil, "status", "--addr", addr)
	noESC("status", out+stderr)
	if want := `"` + filepath.Join(root, `app\x1b[2J\x1b[31mFAKE-OK`, "db.db") + `"`; code != 0 || !strings.Contains(out, want) {
		t.Errorf("status: exit %d; want the path quoted as %s:\n%s%s", code, want, out, stderr)
	}
	p.stop(t)
}
