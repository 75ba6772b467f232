package faults_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync/internal/testenv"
)

// ------------------------------------------------ databases walsync refuses

// notWAL checks that walsync refuses path with an error matching want, in
// "snapshot" (exit non-zero) and in "watch" (logged; it keeps running),
// and that neither changes the file nor writes to the replica.
func notWAL(t *testing.T, r *row, path, want string) {
	t.Helper()
	sum := fileSHA(t, path)
	tg := fileTarget(t)
	_, stderr, code := cli(t, tg, nil, "snapshot", path)
	if code == 0 || !regexp.MustCompile(want).MatchString(stderr) || !strings.Contains(stderr, path) {
		t.Errorf("walsync snapshot %s: exit %d, want an error naming it and matching %q:\n%s", path, code, want, stderr)
	}
	t.Logf("snapshot: %s", strings.TrimSpace(stderr))
	p := startWatch(t, tg, nil, path, "--sync-interval", "200ms")
	p.waitLog(t, want, 30*time.Second)
	time.Sleep(time.Second)
	p.mustBeAlive(t)
	p.stopClean(t)
	if fileSHA(t, path) != sum {
		t.Fatalf("walsync changed %s", path)
	}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Stat(path + suffix); err == nil {
			t.Errorf("walsync left %s%s behind", path, suffix)
		}
	}
	if entries, _ := os.ReadDir(tg.dir); len(entries) > 0 {
		t.Errorf("walsync wrote to the replica for a database it refused")
	}
	r.restored() // nothing to restore: the file itself is intact
}

func TestNotSQLite(t *testing.T) {
	r := scenario(t, "input: a file that is not SQLite")
	r.run()
	p := filepath.Join(t.TempDir(), "data", "notes.db")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, bytes.Repeat([]byte("just some text, not a database\n"), 300), 0o644)
	notWAL(t, r, p, `is not a SQLite database`)
	empty := filepath.Join(t.TempDir(), "data", "empty.db")
	os.MkdirAll(filepath.Dir(empty), 0o755)
	os.WriteFile(empty, nil, 0o644)
	notWAL(t, r, empty, `is not a SQLite database`)
}

func TestRollbackJournal(t *testing.T) {
	r := scenario(t, "input: SQLite database in rollback-journal mode")
	r.run()
	p := filepath.Join(t.TempDir(), "data", "legacy.db")
	os.MkdirAll(filepath.Dir(p), 0o755)
	sqlite3(t, p, "CREATE TABLE t(x); INSERT INTO t VALUES (1),(2);")
	r.wrote(1)
	notWAL(t, r, p, `is not in WAL mode`)
	if m := strings.TrimSpace(sqlite3(t, p, "PRAGMA journal_mode;")); m != "delete" {
		t.Fatalf("journal mode is now %q", m)
	}
	if n := strings.TrimSpace(sqlite3(t, p, "SELECT count(*) FROM t;")); n != "2" {
		t.Fatalf("the database holds %s rows", n)
	}
}

// TestSQLCipher: a SQLCipher 4 file is a 16-byte random salt followed by
// encrypted pages, indistinguishable from random bytes (with the sqlcipher
// binary, a real one is made).
func TestSQLCipher(t *testing.T) {
	r := scenario(t, "input: SQLCipher-encrypted database")
	r.run()
	p := filepath.Join(t.TempDir(), "data", "secret.db")
	os.MkdirAll(filepath.Dir(p), 0o755)
	if bin, err := exec.LookPath("sqlcipher"); err == nil {
		cmd := exec.Command(bin, p)
		cmd.Stdin = strings.NewReader("PRAGMA key='x'; PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sqlcipher: %v\n%s", err, out)
		}
		r.note("made with %s", bin)
	} else {
		b := make([]byte, 8*4096)
		rand.Read(b)
		os.WriteFile(p, b, 0o644)
		r.note("no sqlcipher binary: a SQLCipher 4 file's bytes (random salt + encrypted pages) stand in")
	}
	notWAL(t, r, p, `is not a SQLite database`)
}

// ---------------------------------------------- deleted or replaced files

// TestDatabaseDeletedWhileWatched: the application's database is deleted
// while walsync watches it. walsync must say so and keep running; the
// replica keeps every transaction committed before; a new database created
// at the path (and written by an application holding it open) is
// replicated as the database's new state, the old history still
// restorable by TXID.
func TestDatabaseDeletedWhileWatched(t *testing.T) {
	r := scenario(t, "input: database deleted while watched")
	r.run()
	tg := fileTarget(t)
	a := newApp(t, t.TempDir(), "app", defaultApp)
	a.start()
	p := startWatch(t, tg, nil, a.path, "--sync-interval", "200ms", "--levels", "1s")
	time.Sleep(2 * time.Second)
	a.stop(t)
	waitCaughtUp(t, r, tg, a, time.Minute)
	last := restoreLatestTXID(t, tg, a.name)
	mark := len(p.log.String())
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(a.path + suffix)
	}
	if !logsAbout(p, mark, a.path, `(?i)deleted|no such file|not found|missing|does not exist|gone|removed`, 20*time.Second) {
		t.Errorf("walsync said nothing within 20 s about its database %s being deleted (it must report it):\n%s", a.path, tail(p.log.String(), 2000))
	}
	p.mustBeAlive(t)
	// The old state stays restorable.
	lost, _, err := restoreCheck(t, tg, a)
	if err != nil || lost > 0 {
		t.Fatalf("after the delete: lost %d, %v", lost, err)
	}
	r.restored()
	// A new database at the same path, written by an application that
	// holds it open.
	h := holdOpen(t, a.path, "CREATE TABLE fresh(x, y)")
	for i := 0; i < 5; i++ {
		h.exec(t, "INSERT INTO fresh VALUES ('new database', randomblob(3000))")
		r.wrote(1)
	}
	waitFor(t, time.Minute, "the new database in the replica", func() bool {
		return sameDump(t, tg, a.name, a.path)
	})
	r.restored()
	p.stopClean(t)
	// History before the delete is still there.
	out := filepath.Join(t.TempDir(), "old.db")
	if _, stderr, code := cli(t, tg, nil, "restore", a.name, "-o", out, "--txid", fmt.Sprint(last)); code != 0 {
		t.Fatalf("restore --txid %d (before the delete): %s", last, stderr)
	}
	if _, err := a.wl.Verify(out); err != nil {
		t.Fatalf("restore --txid %d: %v", last, err)
	}
	r.restored()
	verifyReplica(t, tg, a.name)
}

// TestDatabaseReplacedWhileWatched: another database is renamed over the
// watched path (a restore put in place) and the application opens it.
// walsync must notice and replicate the new file; the old history stays
// restorable by TXID.
func TestDatabaseReplacedWhileWatched(t *testing.T) {
	r := scenario(t, "input: database replaced while watched")
	r.run()
	tg := fileTarget(t)
	a := newApp(t, t.TempDir(), "app", defaultApp)
	a.start()
	p := startWatch(t, tg, nil, a.path, "--sync-interval", "200ms", "--levels", "1s")
	time.Sleep(2 * time.Second)
	a.stop(t)
	waitCaughtUp(t, r, tg, a, time.Minute)
	last := restoreLatestTXID(t, tg, a.name)
	other := filepath.Join(filepath.Dir(a.path), "incoming.db")
	sqlite3(t, other, "PRAGMA journal_mode=WAL; CREATE TABLE other(x); INSERT INTO other VALUES ('replacement'), (randomblob(5000));")
	r.wrote(1)
	if err := os.Rename(other, a.path); err != nil {
		t.Fatal(err)
	}
	os.Remove(a.path + "-wal")
	os.Remove(a.path + "-shm")
	h := holdOpen(t, a.path, "")
	h.exec(t, "INSERT INTO other VALUES ('after the replace')")
	r.wrote(1)
	p.waitLog(t, `database file was replaced`, time.Minute)
	waitFor(t, time.Minute, "the replacement in the replica", func() bool {
		return sameDump(t, tg, a.name, a.path)
	})
	r.restored()
	h.exec(t, "INSERT INTO other VALUES ('later')")
	r.wrote(1)
	waitFor(t, time.Minute, "a later write in the replica", func() bool {
		return sameDump(t, tg, a.name, a.path)
	})
	r.restored()
	p.stopClean(t)
	out := filepath.Join(t.TempDir(), "old.db")
	if _, stderr, code := cli(t, tg, nil, "restore", a.name, "-o", out, "--txid", fmt.Sprint(last)); code != 0 {
		t.Fatalf("restore --txid %d (before the replace): %s", last, stderr)
	}
	if _, err := a.wl.Verify(out); err != nil {
		t.Fatalf("restore --txid %d: %v", last, err)
	}
	r.restored()
	verifyReplica(t, tg, a.name)
}

// logsAbout reports whether, within d, p logs after offset mark a line
// that names path and matches re (outside the path itself).
func logsAbout(p *proc, mark int, path, re string, d time.Duration) bool {
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(p.log.String()[mark:], "\n") {
			if strings.Contains(line, path) && rx.MatchString(strings.ReplaceAll(line, path, "")) {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// held is an application connection kept open, as a server's is: its WAL
// stays while it is open.
type held struct{ db *sql.DB }

func holdOpen(t *testing.T, path, init string) *held {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	h := &held{db: db}
	if init != "" {
		h.exec(t, init)
	}
	return h
}

func (h *held) exec(t *testing.T, q string) {
	t.Helper()
	if _, err := h.db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// sameDump reports whether the latest restore of name equals the database
// at src (sqlite3 .dump).
func sameDump(t *testing.T, tg *target, name, src string) bool {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dump.db")
	if _, _, code := cli(t, tg, nil, "restore", name, "-o", out); code != 0 {
		return false
	}
	return sqlite3(t, out, ".dump") == sqlite3(t, src, ".dump")
}

var restoredTXIDRE = regexp.MustCompile(`TXID (\d+)`)

// restoreLatestTXID returns the latest TXID restore reaches (--dry-run).
func restoreLatestTXID(t *testing.T, tg *target, name string) uint64 {
	t.Helper()
	out, stderr, code := cli(t, tg, nil, "restore", name, "--dry-run")
	m := restoredTXIDRE.FindAllStringSubmatch(out, -1)
	if code != 0 || m == nil {
		t.Fatalf("restore --dry-run %s: exit %d\n%s%s", name, code, out, stderr)
	}
	n, _ := strconv.ParseUint(m[len(m)-1][1], 10, 64)
	return n
}

// ------------------------------------------------------------- odd paths

// TestOddPaths: a database and a file replica under paths with spaces and
// Unicode, and an S3 replica of it, replicate and restore by that name.
func TestOddPaths(t *testing.T) {
	r := scenario(t, "input: paths with spaces and Unicode")
	r.run()
	dir := filepath.Join(t.TempDir(), "my data", "Ünïcødé 数据 ✓")
	a := newAppFile(t, dir, "tenant one", "app db.sqlite3", defaultApp)
	if a.name != "tenant one/app db" {
		t.Fatalf("name %q", a.name)
	}
	for _, tg := range []*target{
		{url: filepath.Join(t.TempDir(), "répl ica", "dir with spaces"), dir: filepath.Join(t.TempDir(), "x")},
		s3Target(t),
	} {
		if tg.srv == nil {
			tg.dir = tg.url
		}
		a.start()
		p := startWatch(t, tg, nil, a.path, "--sync-interval", "200ms", "--levels", "1s")
		time.Sleep(2 * time.Second)
		a.stop(t)
		waitCaughtUp(t, r, tg, a, time.Minute)
		p.stopClean(t)
		out, stderr, code := cli(t, tg, nil, "list")
		if code != 0 || !strings.Contains(out, a.name) {
			t.Fatalf("list does not show %q: exit %d\n%s%s", a.name, code, out, stderr)
		}
		finalCheck(t, r, tg, a)
		// The restore's output path is odd too.
		o := filepath.Join(t.TempDir(), "out put ✓", "réstored db.sqlite")
		os.MkdirAll(filepath.Dir(o), 0o755)
		if _, stderr, code := cli(t, tg, nil, "restore", a.name, "-o", o); code != 0 {
			t.Fatalf("restore to %q: %s", o, stderr)
		}
		if _, err := a.wl.Verify(o); err != nil {
			t.Fatal(err)
		}
		r.restored()
	}
}

// ------------------------------------------------------------- symlinks

// TestSymlinks: a database reached through a symlinked file or a symlinked
// directory is replicated like the file itself (SQLite resolves the link
// and keeps its -wal beside the real file); a restore onto an existing
// symlink is refused without --force, and with --force it replaces the
// link, never the file it points to.
func TestSymlinks(t *testing.T) {
	t.Run("symlinked_directory", func(t *testing.T) {
		r := scenario(t, "input: database in a symlinked directory")
		r.run()
		base := t.TempDir()
		a := newApp(t, base, "real", defaultApp)
		os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "link"))
		linked := &app{path: filepath.Join(base, "link", "app.db"), name: "link/app", wl: a.wl}
		symlinkRun(t, r, linked)
	})
	t.Run("symlinked_file", func(t *testing.T) {
		r := scenario(t, "input: database path that is a symlink")
		r.run()
		base := t.TempDir()
		a := newApp(t, base, "real", defaultApp)
		os.MkdirAll(filepath.Join(base, "link"), 0o755)
		os.Symlink(a.path, filepath.Join(base, "link", "app.db"))
		linked := &app{path: filepath.Join(base, "link", "app.db"), name: "link/app", wl: a.wl}
		symlinkRun(t, r, linked)
	})
	t.Run("restore_output_symlink", func(t *testing.T) {
		r := scenario(t, "input: restore output path is a symlink")
		r.run()
		tg := fileTarget(t)
		db := filepath.Join(t.TempDir(), "d", "app.db")
		os.MkdirAll(filepath.Dir(db), 0o755)
		sqlite3(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES ('replicated');")
		r.wrote(1)
		if _, stderr, code := cli(t, tg, nil, "snapshot", db); code != 0 {
			t.Fatal(stderr)
		}
		dir := t.TempDir()
		precious := filepath.Join(dir, "precious.txt")
		os.WriteFile(precious, []byte("do not touch"), 0o644)
		link := filepath.Join(dir, "out.db")
		os.Symlink(precious, link)
		_, stderr, code := cli(t, tg, nil, "restore", "d/app", "-o", link)
		if code == 0 || !strings.Contains(stderr, "--force") {
			t.Fatalf("restore onto an existing symlink: exit %d: %s", code, stderr)
		}
		if _, stderr, code := cli(t, tg, nil, "restore", "d/app", "-o", link, "--force"); code != 0 {
			t.Fatalf("restore --force onto a symlink: %s", stderr)
		}
		if b, _ := os.ReadFile(precious); string(b) != "do not touch" {
			t.Fatalf("restore wrote through the symlink into %s", precious)
		}
		if got := sqlite3(t, link, "SELECT x FROM t;"); strings.TrimSpace(got) != "replicated" {
			t.Fatalf("restored %q", got)
		}
		// A dangling symlink: the output replaces the link.
		dangling := filepath.Join(dir, "dangling.db")
		os.Symlink(filepath.Join(dir, "nowhere", "x.db"), dangling)
		if _, stderr, code := cli(t, tg, nil, "restore", "d/app", "-o", dangling); code != 0 {
			t.Fatalf("restore onto a dangling symlink: %s", stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "nowhere")); err == nil {
			t.Fatal("restore created the dangling symlink's target directory")
		}
		r.restored()
	})
}

func symlinkRun(t *testing.T, r *row, a *app) {
	t.Helper()
	tg := fileTarget(t)
	a.start()
	defer a.stop(t)
	p := startWatch(t, tg, nil, a.path, "--sync-interval", "200ms", "--levels", "1s")
	time.Sleep(2 * time.Second)
	a.stop(t)
	waitCaughtUp(t, r, tg, a, 20*time.Second)
	p.stopClean(t)
	finalCheck(t, r, tg, a)
}

// ----------------------------------------------------------- bad objects

// s3Object is an object read with the aws CLI.
type s3Object struct {
	key  string
	data []byte
	meta map[string]string
}

func s3Keys(t *testing.T, tg *target, prefix string) []string {
	t.Helper()
	out := tg.srv.AWS(t, "s3api", "list-objects-v2", "--bucket", tg.bucket, "--prefix", prefix, "--output", "json")
	var l struct{ Contents []struct{ Key string } }
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &l); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	for _, c := range l.Contents {
		keys = append(keys, c.Key)
	}
	slices.Sort(keys)
	return keys
}

func getObject(t *testing.T, tg *target, key string) s3Object {
	t.Helper()
	var head struct{ Metadata map[string]string }
	if err := json.Unmarshal(tg.srv.AWS(t, "s3api", "head-object", "--bucket", tg.bucket, "--key", key, "--output", "json"), &head); err != nil {
		t.Fatal(err)
	}
	body := filepath.Join(t.TempDir(), "object")
	tg.srv.AWS(t, "s3api", "get-object", "--bucket", tg.bucket, "--key", key, body)
	b, err := os.ReadFile(body)
	if err != nil {
		t.Fatal(err)
	}
	return s3Object{key: key, data: b, meta: head.Metadata}
}

func putObject(t *testing.T, tg *target, o s3Object) {
	t.Helper()
	body := filepath.Join(t.TempDir(), "object")
	if err := os.WriteFile(body, o.data, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"s3api", "put-object", "--bucket", tg.bucket, "--key", o.key, "--body", body}
	if len(o.meta) > 0 {
		var md []string
		for k, v := range o.meta {
			md = append(md, k+"="+v)
		}
		slices.Sort(md)
		args = append(args, "--metadata", strings.Join(md, ","))
	}
	tg.srv.AWS(t, args...)
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// replicated runs an application against a new S3 bucket until walsync
// has caught up, and returns the target and the app.
func replicated(t *testing.T, r *row, sub string, tg *target) *app {
	t.Helper()
	o := defaultApp
	o.vacuum = false
	a := newApp(t, t.TempDir(), sub, o)
	a.start()
	p := startWatch(t, tg, nil, a.path, "--sync-interval", "200ms", "--levels", "none")
	time.Sleep(2 * time.Second)
	a.stop(t)
	waitCaughtUp(t, r, tg, a, time.Minute)
	p.stopClean(t)
	return a
}

// restoreRefused checks that restoring name's latest state fails with an
// error matching want, and leaves neither the output nor a temp file.
func restoreRefused(t *testing.T, tg *target, name, want string) {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "restored.db")
	stdout, stderr, code := cli(t, tg, nil, "restore", name, "-o", out)
	if code == 0 || !regexp.MustCompile(want).MatchString(stderr) {
		t.Fatalf("restore of a damaged replica: exit %d, want an error matching %q:\n%s%s", code, want, stdout, stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Fatalf("a failed restore left %v in the output directory", entries)
	}
	t.Logf("restore: %s", strings.TrimSpace(stderr))
}

// TestBadObjects damages the newest L0 object of an S3 replica in ways a
// bucket can hold it: a flipped byte (SHA-256 metadata now wrong), a
// flipped byte with the metadata forged to match (LTX checksums catch it),
// truncated, and emptied. Each time a restore of the latest state must fail
// naming the object and leave no output; a restore to the TXID before it
// must still work; verify must name it. The object is put back between
// damages.
func TestBadObjects(t *testing.T) {
	tg := s3Target(t)
	setup := scenario(t, "input: bucket objects damaged: replica before and after")
	setup.run()
	a := replicated(t, setup, "app", tg)
	keys := s3Keys(t, tg, tg.prefix+"/"+a.name+"/0000/")
	if len(keys) < 3 {
		t.Fatalf("only %d L0 objects", len(keys))
	}
	good := getObject(t, tg, keys[len(keys)-1])
	prev := keys[len(keys)-2]
	_, maxHex, _ := strings.Cut(strings.TrimSuffix(path.Base(prev), ".ltx"), "-")
	prevTXID, _ := strconv.ParseUint(maxHex, 16, 64)
	damages := []struct {
		name string
		fn   func(o *s3Object)
		want string
	}{
		{"flipped byte", func(o *s3Object) { o.data[len(o.data)/2] ^= 0x20 }, `corrupt replica object .*SHA-256`},
		{"flipped byte, SHA-256 forged", func(o *s3Object) {
			o.data[len(o.data)/2] ^= 0x20
			o.meta["sha256"] = sha256hex(o.data)
		}, `corrupt replica object`},
		{"truncated", func(o *s3Object) { o.data = o.data[:len(o.data)/2]; o.meta["sha256"] = sha256hex(o.data) }, `corrupt replica object`},
		{"empty", func(o *s3Object) { o.data = nil; delete(o.meta, "sha256") }, `corrupt replica object`},
	}
	for _, d := range damages {
		t.Run(strings.ReplaceAll(d.name, " ", "_"), func(t *testing.T) {
			r := scenario(t, "input: bucket object "+d.name)
			r.run()
			o := s3Object{key: good.key, data: bytes.Clone(good.data), meta: map[string]string{}}
			for k, v := range good.meta {
				o.meta[k] = v
			}
			d.fn(&o)
			putObject(t, tg, o)
			defer putObject(t, tg, good)
			restoreRefused(t, tg, a.name, d.want+`.*`+regexp.QuoteMeta(path.Base(o.key))+`|`+regexp.QuoteMeta(path.Base(o.key))+`.*`+d.want)
			// The state before the damaged file restores.
			out := filepath.Join(t.TempDir(), "prev.db")
			if _, stderr, code := cli(t, tg, nil, "restore", a.name, "-o", out, "--txid", fmt.Sprint(prevTXID)); code != 0 {
				t.Fatalf("restore --txid %d (before the damaged object): %s", prevTXID, stderr)
			}
			if _, err := a.wl.Verify(out); err != nil {
				t.Fatal(err)
			}
			r.restored()
			stdout, _, code := cli(t, tg, nil, "verify", a.name)
			if code == 0 || !strings.Contains(stdout, path.Base(o.key)) {
				t.Fatalf("verify of a damaged replica: exit %d, want the object named:\n%s", code, stdout)
			}
		})
	}
	// Put back, the replica is whole again.
	lost, _, err := restoreCheck(t, tg, a)
	if err != nil || lost != 0 {
		t.Fatalf("after putting the object back: lost %d, %v", lost, err)
	}
	setup.restored()
}

// TestForeignObject puts an object of database B, with B's metadata, in
// place of database A's object of the same TXIDs. A restore of A must fail
// or produce A's data; never a mix.
func TestForeignObject(t *testing.T) {
	r := scenario(t, "input: bucket object from another database")
	r.run()
	tg := s3Target(t)
	a := replicated(t, r, "a", tg)
	b := replicated(t, r, "b", tg)
	aKeys := s3Keys(t, tg, tg.prefix+"/"+a.name+"/0000/")
	bKeys := s3Keys(t, tg, tg.prefix+"/"+b.name+"/0000/")
	var swapped string
	for i := len(aKeys) - 1; i >= 1 && swapped == ""; i-- {
		name := path.Base(aKeys[i])
		for _, k := range bKeys {
			if path.Base(k) == name {
				o := getObject(t, tg, k)
				o.key = aKeys[i]
				putObject(t, tg, o)
				swapped = name
				break
			}
		}
	}
	if swapped == "" {
		t.Fatal("no TXID range in common")
	}
	r.note("A's %s replaced by B's", swapped)
	dir := t.TempDir()
	out := filepath.Join(dir, "restored.db")
	stdout, stderr, code := cli(t, tg, nil, "restore", a.name, "-o", out)
	if code != 0 {
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Fatalf("a failed restore left %v", entries)
		}
		t.Logf("restore refused: %s", strings.TrimSpace(stderr))
		r.note("restore refused it: %s", firstLine(strings.TrimPrefix(regexp.MustCompile(`/tmp/\S+`).ReplaceAllString(stderr, "…"), "walsync restore: ")))
		return
	}
	if _, err := a.wl.Verify(out); err != nil {
		t.Fatalf("restore of A with B's object in its history produced a damaged database without an error (%s): %v", strings.TrimSpace(stdout), err)
	}
	r.restored()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// ------------------------------------------------------ escaping names

// hostileS3 sits in front of the S3 server and adds crafted keys to every
// ListObjectsV2 answer: names with "../" that a careless client would turn
// into paths outside its output (versitygw normalizes such keys on PUT, so
// a real bucket of ours cannot hold them; AWS S3 can).
func hostileS3(t *testing.T, upstream string, keys []string) string {
	t.Helper()
	u, _ := url.Parse(upstream)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet || resp.Request.URL.Query().Get("list-type") != "2" || resp.StatusCode != 200 {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		prefix := resp.Request.URL.Query().Get("prefix")
		var extra strings.Builder
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				fmt.Fprintf(&extra, "<Contents><Key>%s</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><Size>4096</Size><StorageClass>STANDARD</StorageClass></Contents>", xmlEscape(k))
			}
		}
		body = bytes.Replace(body, []byte("</ListBucketResult>"), []byte(extra.String()+"</ListBucketResult>"), 1)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// TestEscapingObjectNames: a bucket listing that holds object names with
// "../" (and a database name with "../" given to restore) never makes
// walsync write anywhere but the output file asked for: list, verify --all
// --restore and restore run in a sandbox directory whose tree, and the
// directories the names point at, are compared before and after.
func TestEscapingObjectNames(t *testing.T) {
	r := scenario(t, "input: object names that escape the output path (../)")
	r.run()
	tg := s3Target(t)
	a := replicated(t, r, "app", tg)
	sandbox := t.TempDir()
	escapeDir := filepath.Join(os.TempDir(), fmt.Sprintf("walsync-escape-%d", time.Now().UnixNano()))
	esc := strings.TrimPrefix(escapeDir, "/")
	crafted := []string{
		tg.prefix + "/" + a.name + "/0000/../../../../../../../../" + esc + "/0000000000000099-0000000000000099.ltx",
		tg.prefix + "/" + a.name + "/../../../../../../../../" + esc + "/0000/0000000000000001-0000000000000001.ltx",
		tg.prefix + "/../../../../../../../../" + esc + "/0000/0000000000000001-0000000000000001.ltx",
		tg.prefix + "/" + a.name + "/0000/0000000000000099-0000000000000099.ltx/../../../../" + esc + "/x",
		tg.prefix + "//" + escapeDir + "/0000/0000000000000001-0000000000000001.ltx",
	}
	ht := tg.via(hostileS3(t, tg.srv.Endpoint, crafted))
	before := tree(t, sandbox)
	run := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(testenv.WalsyncBinary(t), append(append(args, "-b", ht.url), ht.args...)...)
		cmd.Dir = sandbox
		cmd.Env = append(baseEnv(), ht.env...)
		outC, errC := newCapture(t.Name()+": "+strings.Join(args, " ")), newCapture(t.Name()+": stderr")
		cmd.Stdout, cmd.Stderr = outC, errC
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return outC.String(), errC.String(), code
	}
	out, stderr, code := run("list")
	t.Logf("list: exit %d\n%s%s", code, out, stderr)
	out, stderr, code = run("verify", "--all", "--restore", "--temp-dir", sandbox)
	t.Logf("verify --all: exit %d\n%s%s", code, out, stderr)
	// The real database restores, crafted names ignored.
	if _, stderr, code := run("restore", a.name, "-o", "out.db"); code != 0 {
		t.Fatalf("restore %s with crafted names in the listing: %s", a.name, stderr)
	}
	if _, err := a.wl.Verify(filepath.Join(sandbox, "out.db")); err != nil {
		t.Fatal(err)
	}
	r.restored()
	// Database names that climb out of the prefix.
	for _, name := range []string{"../../../../../../" + esc, a.name + "/../../../../../../../" + esc, "/" + esc} {
		_, stderr, code := run("restore", name, "-o", "escaped.db")
		t.Logf("restore %q: exit %d: %s", name, code, strings.TrimSpace(stderr))
		os.Remove(filepath.Join(sandbox, "escaped.db"))
	}
	after := tree(t, sandbox)
	for _, f := range []string{"out.db", "out.db-wal", "out.db-shm"} {
		delete(after, f) // the restore and the test's own check of it
	}
	if !maps.Equal(before, after) {
		t.Fatalf("the sandbox changed beyond out.db:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := os.Stat(escapeDir); err == nil {
		t.Fatalf("walsync created %s, a path named by a crafted object", escapeDir)
	}
}

// tree maps every path below dir to its size.
func tree(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		m[rel] = fi.Size()
		return nil
	})
	return m
}

// ------------------------------------------------------------- config

// TestBadConfig: "walsync watch --config FILE" with bad files must fail at
// once (exit 2, naming the file, and the line and key where there is one)
// and touch neither the database nor the replica. A key of neither schema
// (a typo) is a warning naming it, as documented in package config.
func TestBadConfig(t *testing.T) {
	r := scenario(t, "input: config file with bad values")
	out, stderr, _ := cli(t, nil, nil, "watch", "--help")
	if !strings.Contains(out+stderr, "-config") {
		t.Fatalf("walsync watch --help does not list --config:\n%s%s", out, stderr)
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "d", "app.db")
	os.MkdirAll(filepath.Dir(db), 0o755)
	sqlite3(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
	r.wrote(1)
	sum := fileSHA(t, db)
	replica := filepath.Join(dir, "replica")
	good := "dbs:\n  - path: " + db + "\n    replica:\n      url: file://" + replica + "\n"
	garbage := make([]byte, 512)
	rand.Read(garbage)
	cases := []struct {
		name    string
		content []byte
		want    string // regexp the error must match besides the file name
	}{
		{"missing.yml", nil, `no such file`},
		{"garbage.yml", garbage, ``},
		{"syntax.yml", []byte("dbs:\n  - path: [unclosed\n"), `line`},
		{"negative-interval.yml", []byte(good + "walsync:\n  sync-interval: -5s\n"), `line \d+.*sync-interval`},
		{"not-a-duration.yml", []byte(good + "l0-retention: banana\n"), `line \d+.*l0-retention`},
		{"bad-url.yml", []byte("dbs:\n  - path: " + db + "\n    replica:\n      url: gs://nowhere/x\n"), `line \d+`},
		{"no-replica.yml", []byte("dbs:\n  - path: " + db + "\n"), ``},
		{"exec.yml", []byte(good + "exec: ./app --serve\n"), `exec`},
		{"bad-level.yml", []byte(good + "levels: [{interval: -1s}]\n"), `line \d+`},
	}
	for _, c := range cases {
		r.run()
		cfg := filepath.Join(dir, c.name)
		if c.content != nil {
			os.WriteFile(cfg, c.content, 0o644)
		}
		done := make(chan struct{})
		var stderr string
		var code int
		go func() {
			defer close(done)
			_, stderr, code = cli(t, nil, nil, "watch", "--config", cfg)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("watch --config %s is still running after 30 s: a bad config must fail at start", c.name)
		}
		if code == 0 || !strings.Contains(stderr, cfg) || !regexp.MustCompile(c.want).MatchString(stderr) {
			t.Errorf("watch --config %s: exit %d, want an error naming the file (and matching %q):\n%s", c.name, code, c.want, stderr)
		}
		t.Logf("%s: exit %d: %s", c.name, code, firstLine(stderr))
	}
	if fileSHA(t, db) != sum {
		t.Fatal("the database changed")
	}
	if _, err := os.Stat(replica); err == nil {
		t.Fatal("a replica was written despite the bad config")
	}
	// A typo is a warning naming the key and the file; walsync runs.
	r.run()
	cfg := filepath.Join(dir, "typo.yml")
	os.WriteFile(cfg, []byte(good+"snapshot-intervall: 1h\n"), 0o644)
	p := startWatchRaw(t, nil, "watch", "--config", cfg)
	p.waitLog(t, `snapshot-intervall`, 30*time.Second)
	if !strings.Contains(p.log.String(), cfg) {
		t.Errorf("the warning does not name the file:\n%s", p.log.String())
	}
	p.waitLog(t, `writing the first full image \(L0\)`, 30*time.Second)
	p.stopClean(t)
	if fileSHA(t, db) != sum {
		t.Fatal("the database changed")
	}
	r.restored()
}
