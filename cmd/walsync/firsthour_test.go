package main

// A new user's first hour (issue 21): the names, replica URLs, errors and
// edges of the command line, each with its message and exit status.

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync/engine"
)

// cli runs walsync with args and returns its exit status and output.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// walDB creates a WAL-mode database at path holding rows rows.
func walDB(t *testing.T, path string, rows int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < rows; i++ {
		if _, err := db.Exec("INSERT INTO t (v) VALUES (?)", fmt.Sprint("row ", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// replicated returns a replica directory holding cli/wal, the replica of
// <dir>/cli/wal.db, and that database's path.
func replicated(t *testing.T) (rep, dbPath string) {
	t.Helper()
	dir := t.TempDir()
	dbPath = filepath.Join(dir, "cli", "wal.db")
	walDB(t, dbPath, 3)
	rep = filepath.Join(dir, "rep")
	if code, out, errOut := cli(t, "snapshot", dbPath, "-b", rep); code != 0 {
		t.Fatalf("snapshot: exit %d\n%s%s", code, out, errOut)
	}
	return rep, dbPath
}

// TestNamesANewcomerGuesses: restore, verify, compact and list take the
// database's path as well as its replica name; a name no database has is
// said to be unknown, with the closest names that exist.
func TestNamesANewcomerGuesses(t *testing.T) {
	rep, dbPath := replicated(t)
	out := filepath.Join(t.TempDir(), "out.db")

	// The newcomer's first try: the file name without its directory.
	code, _, errOut := cli(t, "restore", "wal", "-o", out, "-b", rep)
	if code != 1 || !strings.Contains(errOut, `no database named "wal"`) || !strings.Contains(errOut, "cli/wal") {
		t.Fatalf("restore by an unknown name: exit %d, want 1 with the unknown name and the closest (cli/wal):\n%s", code, errOut)
	}
	if strings.Contains(errOut, "no LTX files") {
		t.Fatalf("the unknown name is reported as an empty replica:\n%s", errOut)
	}
	// By the database's path, as watch was given it.
	code, stdout, errOut := cli(t, "restore", dbPath, "-o", out, "-b", rep)
	if code != 0 || !strings.Contains(stdout, "cli/wal") {
		t.Fatalf("restore by the database path: exit %d\n%s%s", code, stdout, errOut)
	}
	// By the replica name, with a trailing slash.
	if code, stdout, errOut := cli(t, "restore", "cli/wal/", "-o", out+"2", "-b", rep); code != 0 {
		t.Fatalf("restore by the replica name: exit %d\n%s%s", code, stdout, errOut)
	}
	for _, args := range [][]string{
		{"verify", dbPath, "-b", rep},
		{"compact", dbPath, "-b", rep},
		{"list", dbPath, "-b", rep},
		{"list", "cli/wal", "-b", rep},
	} {
		code, stdout, errOut := cli(t, args...)
		if code != 0 || !strings.Contains(stdout, "cli/wal") {
			t.Errorf("%s by path or name: exit %d\n%s%s", args[0], code, stdout, errOut)
		}
	}
	for _, verb := range []string{"verify", "compact", "list"} {
		code, stdout, errOut := cli(t, verb, "cli/wall", "-b", rep)
		if code != 1 || !strings.Contains(errOut, `no database named "cli/wall"`) || !strings.Contains(errOut, "cli/wal") {
			t.Errorf("%s by an unknown name: exit %d, want 1 naming cli/wal\n%s%s", verb, code, stdout, errOut)
		}
	}
}

// TestReplicaURLsMeanWhatTheySay: file:/abs and file:///abs are the
// directory; a mistyped or unsupported scheme is refused with the form
// walsync expects; a replica location that holds nothing is an error.
func TestReplicaURLsMeanWhatTheySay(t *testing.T) {
	rep, _ := replicated(t)
	for _, u := range []string{"file:" + rep, "file://" + rep, "file://localhost" + rep, rep} {
		code, stdout, errOut := cli(t, "list", "-b", u)
		if code != 0 || !strings.Contains(stdout, "cli/wal") {
			t.Errorf("list -b %s: exit %d, want the table with cli/wal\n%s%s", u, code, stdout, errOut)
		}
	}
	for _, c := range []struct{ url, want string }{
		{"s3:/bucket/x", "did you mean s3://bucket/x"},
		{"s3:bucket/x", "did you mean s3://bucket/x"},
		{"S3://bucket/x", "lower case, s3://bucket/x"},
		{"File:///tmp/x", "lower case, file:///tmp/x"},
		{"gs://bucket/x", "s3://bucket/prefix"},
		{"https://minio.local/bucket", "--endpoint"},
		{"file:tmp/x", "file:///"},
	} {
		code, stdout, errOut := cli(t, "list", "-b", c.url)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("list -b %s: exit %d, want 2 and %q in the error\n%s%s", c.url, code, c.want, stdout, errOut)
		}
		if _, err := os.Stat(c.url); err == nil {
			t.Errorf("list -b %s created a local directory", c.url)
		}
	}
	missing := filepath.Join(t.TempDir(), "nothing-here")
	code, stdout, errOut := cli(t, "list", "-b", missing)
	if code != 1 || !strings.Contains(errOut, "no databases under file://"+missing) || !strings.Contains(errOut, "does not exist") {
		t.Errorf("list on a missing directory: exit %d, want 1 saying it does not exist\n%s%s", code, stdout, errOut)
	}
	empty := t.TempDir()
	code, stdout, errOut = cli(t, "list", "-b", empty)
	if code != 1 || !strings.Contains(errOut, "no databases under file://"+empty) {
		t.Errorf("list on an empty directory: exit %d, want 1 and no databases under\n%s%s", code, stdout, errOut)
	}
	code, stdout, errOut = cli(t, "restore", "cli/wal", "-o", filepath.Join(empty, "out.db"), "-b", missing)
	if code != 1 || !strings.Contains(errOut, "no databases under") {
		t.Errorf("restore from a missing directory: exit %d, want 1 and no databases under\n%s%s", code, stdout, errOut)
	}
}

// TestVersion: --version and version print the build's module version,
// VCS revision and build time (from the binary's build info).
func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version", "-version"} {
		code, stdout, errOut := cli(t, arg)
		if code != 0 || !strings.HasPrefix(stdout, "walsync ") {
			t.Fatalf("%s: exit %d\n%s%s", arg, code, stdout, errOut)
		}
		for _, want := range []string{"commit", "built", "go"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("%s: no %q in %q", arg, want, stdout)
			}
		}
	}
	old := version
	version = "v9.8.7"
	defer func() { version = old }()
	if _, stdout, _ := cli(t, "version"); !strings.HasPrefix(stdout, "walsync v9.8.7") {
		t.Errorf("-X main.version does not override the version: %q", stdout)
	}
}

// TestUnknownFlag: a mistyped flag is the error, a "did you mean" and one
// line pointing to --help; not the whole usage between two copies.
func TestUnknownFlag(t *testing.T) {
	code, stdout, errOut := cli(t, "restore", "cli/wal", "-o", "x.db", "-b", t.TempDir(), "--timestmp", "2026-01-01T00:00:00Z")
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code != 2 || len(lines) > 3 || !strings.Contains(errOut, "--timestmp") ||
		!strings.Contains(errOut, "did you mean --timestamp") || !strings.Contains(errOut, "walsync restore --help") {
		t.Fatalf("exit %d, %d lines, want 2 with the error, a did-you-mean and a pointer to --help:\n%s%s", code, len(lines), stdout, errOut)
	}
	code, _, errOut = cli(t, "lsit", "-b", "x")
	if code != 2 || !strings.Contains(errOut, `did you mean "list"`) || strings.Count(errOut, "\n") > 3 {
		t.Errorf("unknown command: exit %d\n%s", code, errOut)
	}
}

// TestNoCommand: walsync alone prints the usage and exits 2; --help exits 0.
func TestNoCommand(t *testing.T) {
	code, stdout, errOut := cli(t)
	if code != 2 || !strings.Contains(stdout+errOut, "Usage:") {
		t.Errorf("no command: exit %d, want 2 with the usage\n%s%s", code, stdout, errOut)
	}
	if code, stdout, _ := cli(t, "--help"); code != 0 || !strings.Contains(stdout, "Usage:") {
		t.Errorf("--help: exit %d\n%s", code, stdout)
	}
}

// TestStatusTimeLikeList: status prints its time in list's form (UTC,
// RFC 3339) and says which time it is.
func TestStatusTimeLikeList(t *testing.T) {
	at := time.Date(2026, 11, 20, 13, 30, 27, 0, time.FixedZone("X", 5*3600))
	var out bytes.Buffer
	if err := printStatus(&out, engine.Status{Databases: 1, DBs: []engine.DBStatus{{Path: "/srv/t1/app.db", State: "hot", TXID: 26, LastSync: at}}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "CHECKED (UTC)") || !strings.Contains(out.String(), "2026-11-20T08:30:27Z") {
		t.Errorf("status does not show its check time as list shows times:\n%s", out.String())
	}
	rep, _ := replicated(t)
	_, stdout, _ := cli(t, "list", "-b", rep)
	if !strings.Contains(stdout, "LATEST TIME (UTC)") || !strings.Contains(stdout, "L9 SNAPSHOTS") {
		t.Errorf("list does not say which times and snapshots it shows:\n%s", stdout)
	}
}

// TestRestoreAtBoot: --if-db-not-exists and --if-replica-exists make
// restore-then-watch at boot a command that succeeds on every boot: the
// first of a new tenant (no replica), a restart (the database is there,
// untouched) and a new host (restored).
func TestRestoreAtBoot(t *testing.T) {
	rep, dbPath := replicated(t)
	out := filepath.Join(t.TempDir(), "boot.db")
	boot := func(name string) (int, string, string) {
		return cli(t, "restore", name, "-o", out, "-b", rep, "--if-db-not-exists", "--if-replica-exists")
	}
	// A new tenant: no replica by that name, nothing restored, exit 0.
	if code, stdout, stderr := boot("cli/nobody"); code != 0 || !strings.Contains(stdout, "nothing restored") {
		t.Fatalf("new tenant: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("new tenant: %s created (%v)", out, err)
	}
	// Without the flag, the same is an error.
	if code, _, _ := cli(t, "restore", "cli/nobody", "-o", out, "-b", rep); code == 0 {
		t.Fatal("restore of a name no replica has exited 0 without --if-replica-exists")
	}
	// An empty or missing replica location is also no replica.
	if code, stdout, stderr := cli(t, "restore", "cli/wal", "-o", out, "-b", filepath.Join(t.TempDir(), "none"), "--if-replica-exists"); code != 0 {
		t.Fatalf("missing replica directory: exit %d\n%s%s", code, stdout, stderr)
	}
	// A new host: restored by the database's path.
	if code, stdout, stderr := boot(dbPath); code != 0 || !strings.Contains(stdout, "restored") || strings.Contains(stdout, "nothing") {
		t.Fatalf("new host: exit %d\n%s%s", code, stdout, stderr)
	}
	before, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// A restart: the database is there and is not touched.
	if code, stdout, stderr := boot("cli/wal"); code != 0 || !strings.Contains(stdout, "exists: nothing restored") {
		t.Fatalf("restart: exit %d\n%s%s", code, stdout, stderr)
	}
	if after, err := os.ReadFile(out); err != nil || !bytes.Equal(before, after) {
		t.Fatalf("restart changed %s (%v)", out, err)
	}
	if code, _, _ := cli(t, "restore", "cli/wal", "-o", out, "-b", rep); code == 0 {
		t.Fatal("restore over an existing database exited 0 without --if-db-not-exists or --force")
	}
	if code, _, stderr := cli(t, "restore", "cli/wal", "-o", out, "-b", rep, "--if-db-not-exists", "--force"); code != 2 {
		t.Fatalf("--if-db-not-exists with --force: exit %d, want 2 (usage)\n%s", code, stderr)
	}
}

// TestHelpListsOptions: COMMAND --help prints every option of the command
// (it printed "Options:" and nothing after it once a mistake stopped
// printing the whole usage).
func TestHelpListsOptions(t *testing.T) {
	for cmd, opt := range map[string]string{"watch": "-config", "restore": "-txid", "list": "-b", "verify": "-restore"} {
		_, stdout, stderr := cli(t, cmd, "--help")
		if !strings.Contains(stdout+stderr, opt) {
			t.Errorf("walsync %s --help does not list %s:\n%s%s", cmd, opt, stdout, stderr)
		}
	}
}

// TestHostileNewcomer: what a careless operator types must not reach
// outside -b, paint the terminal, turn a URL into a directory, retry a
// directory forever, or boot an application on an empty file.
func TestHostileNewcomer(t *testing.T) {
	rep, dbPath := replicated(t)
	// A database whose replica exists only outside -b.
	other := filepath.Join(t.TempDir(), "t9", "app.db")
	walDB(t, other, 1)
	outside := filepath.Join(filepath.Dir(rep), "other")
	if code, _, _ := cli(t, "snapshot", other, "-b", outside); code != 0 {
		t.Fatal("snapshot to the other location failed")
	}
	for _, name := range []string{"../other/t9/app", "t9/../../other/t9/app", "../other/t9"} {
		out := filepath.Join(t.TempDir(), "x.db")
		if code, stdout, stderr := cli(t, "restore", name, "-o", out, "-b", rep); code == 0 {
			t.Errorf("restore %q -b %s reached outside it: exit 0\n%s%s", name, rep, stdout, stderr)
		}
	}
	// Path forms that stay below -b are the database at that path.
	if code, stdout, stderr := cli(t, "restore", "./cli/wal", "-o", filepath.Join(t.TempDir(), "y.db"), "-b", rep); code != 0 || !strings.Contains(stdout, "restored cli/wal") {
		t.Errorf("restore ./cli/wal: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := cli(t, "compact", "../other/t9/app", "-b", rep); code == 0 {
		t.Errorf("compact ../other/t9/app: exit 0\n%s%s", stdout, stderr)
	}

	esc := "ev\x1b[2Jil"
	code, _, stderr := cli(t, "restore", "cli/wal", "-o", filepath.Join(t.TempDir(), "nodir", esc, "x.db"), "-b", rep)
	if code == 0 || strings.Contains(stderr, "\x1b") {
		t.Errorf("an escape sequence in -o reached the terminal raw (exit %d): %q", code, stderr)
	}

	if code, _, stderr := cli(t, "list", "-b", " s3://bkt/x"); code != 2 || !strings.Contains(stderr, "white space") {
		t.Errorf("-b with a leading space: exit %d %q; want 2 and the reason", code, stderr)
	}
	if code, _, stderr := cli(t, "watch", filepath.Dir(dbPath), "-b", rep); code != 2 || !strings.Contains(stderr, "--dir") {
		t.Errorf("watch DIRECTORY: exit %d %q; want 2 pointing to --dir", code, stderr)
	}

	for what, make := range map[string]func(p string) error{
		"a directory":   func(p string) error { return os.Mkdir(p, 0o755) },
		"an empty file": func(p string) error { return os.WriteFile(p, nil, 0o644) },
		"a dangling link": func(p string) error {
			return os.Symlink(filepath.Join(filepath.Dir(p), "gone.db"), p)
		},
	} {
		out := filepath.Join(t.TempDir(), "boot.db")
		if err := make(out); err != nil {
			t.Fatal(err)
		}
		if code, stdout, stderr := cli(t, "restore", "cli/wal", "-o", out, "-b", rep, "--if-db-not-exists"); code == 0 {
			t.Errorf("--if-db-not-exists over %s: exit 0 (the application would boot empty)\n%s%s", what, stdout, stderr)
		}
	}
}
