package faults_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsync/walsync/internal/faultproxy"
)

// ------------------------------------------------------------- mounts

var (
	mountOnce sync.Once
	mountErr  error
)

// canMount reports whether this process may mount filesystems (root with
// CAP_SYS_ADMIN, as in CI's sandbox). Without it the disk-full scenarios
// fall back to RLIMIT_FSIZE and the read-only ones skip.
func canMount(t *testing.T) error {
	mountOnce.Do(func() {
		dir, err := os.MkdirTemp("", "walsync-mount-probe-")
		if err != nil {
			mountErr = err
			return
		}
		defer os.Remove(dir)
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
			mountErr = fmt.Errorf("mount -t tmpfs: %w", err)
			return
		}
		mountErr = unix.Unmount(dir, 0)
	})
	return mountErr
}

// tmpfs mounts a tmpfs of size bytes at a new directory and returns it.
func tmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("mount tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// setReadOnly remounts the tmpfs at dir read-only or read-write.
func setReadOnly(t *testing.T, dir string, ro bool) {
	t.Helper()
	flags := uintptr(unix.MS_REMOUNT)
	if ro {
		flags |= unix.MS_RDONLY
	}
	// A read-only remount fails (EBUSY) while a file on it is open for
	// writing — walsync's spool file between capture and upload: retry
	// until one lands between two syncs.
	var err error
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if err = unix.Mount("tmpfs", dir, "tmpfs", flags, ""); err != unix.EBUSY {
			break
		}
	}
	if err != nil {
		t.Fatalf("remount %s (read-only %v): %v", dir, ro, err)
	}
}

// fill writes a file into dir's filesystem that leaves about free bytes,
// and returns its path: remove it to free the space.
func fill(t *testing.T, dir string, free int64) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * int64(st.Bsize)
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for n := avail - free; n > 0; {
		k, err := f.Write(buf[:min(int64(len(buf)), n)])
		n -= int64(k)
		if err != nil {
			break
		}
	}
	return path
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ------------------------------------------------------------- disk full

// TestDiskFull fills the filesystem walsync stages its spool files on
// (TMPDIR), then the one a file replica lives on, while the application
// writes transactions of up to 256 KiB. walsync must report the failure,
// keep running and leave no partial file in the replica, and catch up once
// space is freed.
func TestDiskFull(t *testing.T) {
	for _, where := range []string{"staging", "replica"} {
		t.Run(where, func(t *testing.T) {
			r := scenario(t, "resources: disk full ("+where+" directory)")
			for i := 0; i < runs(1, 3); i++ {
				r.run()
				diskFull(t, r, where)
				if t.Failed() {
					return
				}
			}
		})
	}
}

func diskFull(t *testing.T, r *row, where string) {
	o := defaultApp
	o.maxBlob = 256 << 10
	a := newApp(t, t.TempDir(), "app", o)
	tg := fileTarget(t)
	var env []string
	var full string // the filesystem that gets full
	var limitFsize bool
	if err := canMount(t); err != nil {
		if where == "replica" {
			t.Skipf("needs a size-limited filesystem (%v); RLIMIT_FSIZE cannot tell the replica from the staging files", err)
		}
		// Fallback: RLIMIT_FSIZE on the walsync process makes its writes
		// past the limit fail with EFBIG, as a full disk fails them with
		// ENOSPC.
		limitFsize = true
		r.note("mounts not permitted (%v): RLIMIT_FSIZE (EFBIG) stands in for ENOSPC", err)
	} else {
		full = tmpfs(t, 32<<20)
		if where == "staging" {
			env = []string{"TMPDIR=" + full}
			r.note("TMPDIR on a 32 MiB tmpfs, filled to 32 KiB free")
		} else {
			tg = &target{url: filepath.Join(full, "replica"), dir: filepath.Join(full, "replica")}
			r.note("file replica on a 32 MiB tmpfs, filled to 32 KiB free")
		}
	}
	a.start()
	defer a.stop(t)
	p := startWatch(t, tg, env, a.path, "--sync-interval", "200ms", "--levels", "1s")
	p.waitLog(t, `writing the first full image \(L0\)`, time.Minute)
	waitFor(t, time.Minute, "the first upload", func() bool {
		_, _, code := cli(t, tg, nil, "restore", a.name, "--dry-run")
		return code == 0
	})
	var filler string
	want := "no space left on device"
	if limitFsize {
		want = "file too large"
		lim := unix.Rlimit{Cur: 32 << 10, Max: unix.RLIM_INFINITY}
		if err := unix.Prlimit(p.pid(), unix.RLIMIT_FSIZE, &lim, nil); err != nil {
			t.Fatalf("prlimit RLIMIT_FSIZE: %v", err)
		}
	} else {
		filler = fill(t, full, 32<<10)
	}
	before := a.wl.Total()
	p.waitLog(t, want, time.Minute)
	time.Sleep(pick(3*time.Second, 15*time.Second))
	p.mustBeAlive(t)
	if a.wl.Total() == before {
		t.Fatal("the application committed nothing while the disk was full")
	}
	if limitFsize {
		lim := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
		if err := unix.Prlimit(p.pid(), unix.RLIMIT_FSIZE, &lim, nil); err != nil {
			t.Fatal(err)
		}
	} else {
		os.Remove(filler)
	}
	a.stop(t)
	waitCaughtUp(t, r, tg, a, 2*time.Minute)
	p.stopClean(t)
	finalCheck(t, r, tg, a)
	if _, tmps := checkObjects(t, tg); tmps > 0 {
		t.Errorf("%d partial temp files were left in the replica directory", tmps)
	}
}

// ------------------------------------------------------------- read-only

// TestReadOnly makes the replica directory and then the staging directory
// read-only (a read-only remount: root ignores permission bits) while
// walsync runs; it must report it, keep running and catch up once they are
// writable again. A database on a read-only filesystem is refused with a
// clear error and left unchanged.
func TestReadOnly(t *testing.T) {
	if err := canMount(t); err != nil {
		t.Skipf("read-only filesystems need mount permission (%v); permission bits do not stop root", err)
	}
	for _, where := range []string{"replica", "staging"} {
		t.Run(where, func(t *testing.T) {
			r := scenario(t, "resources: read-only "+where+" directory")
			for i := 0; i < runs(1, 3); i++ {
				r.run()
				a := newApp(t, t.TempDir(), "app", defaultApp)
				fs := tmpfs(t, 256<<20)
				tg := fileTarget(t)
				var env []string
				if where == "replica" {
					tg = &target{url: filepath.Join(fs, "replica"), dir: filepath.Join(fs, "replica")}
				} else {
					env = []string{"TMPDIR=" + fs}
				}
				a.start()
				p := startWatch(t, tg, env, a.path, "--sync-interval", "200ms", "--levels", "1s")
				p.waitLog(t, `writing the first full image \(L0\)`, time.Minute)
				waitFor(t, time.Minute, "the first upload", func() bool {
					_, _, code := cli(t, tg, nil, "restore", a.name, "--dry-run")
					return code == 0
				})
				setReadOnly(t, fs, true)
				p.waitLog(t, "read-only file system", time.Minute)
				time.Sleep(pick(2*time.Second, 10*time.Second))
				p.mustBeAlive(t)
				setReadOnly(t, fs, false)
				a.stop(t)
				waitCaughtUp(t, r, tg, a, 2*time.Minute)
				p.stopClean(t)
				finalCheck(t, r, tg, a)
			}
		})
	}
	t.Run("database", func(t *testing.T) {
		r := scenario(t, "resources: database on a read-only filesystem")
		r.run()
		fs := tmpfs(t, 16<<20)
		db := filepath.Join(fs, "ro", "app.db")
		os.MkdirAll(filepath.Dir(db), 0o755)
		sqlite3(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);")
		r.wrote(1)
		sum := fileSHA(t, db)
		setReadOnly(t, fs, true)
		defer setReadOnly(t, fs, false)
		tg := fileTarget(t)
		_, stderr, code := cli(t, tg, nil, "snapshot", db)
		if code == 0 || !strings.Contains(stderr, db) {
			t.Errorf("snapshot of a database on a read-only filesystem: exit %d, want an error naming it:\n%s", code, stderr)
		}
		t.Logf("snapshot: %s", strings.TrimSpace(stderr))
		p := startWatch(t, tg, nil, db, "--sync-interval", "200ms")
		p.waitLog(t, `replication failed; will retry.*`+regexp.QuoteMeta(db), time.Minute)
		p.mustBeAlive(t)
		p.stopClean(t)
		setReadOnly(t, fs, false)
		if fileSHA(t, db) != sum {
			t.Fatal("the database file changed")
		}
		if got := sqlite3(t, db, "SELECT count(*) FROM t;"); strings.TrimSpace(got) != "3" {
			t.Fatalf("the database holds %q rows", got)
		}
		r.restored()
	})
}

// ------------------------------------------------------------- fd limit

// TestFDLimit runs walsync on eight databases under an fd limit too low
// for all of them (prlimit --nofile=40:40 at start): it must keep running,
// replicate the databases it could open and name the others' error. Then,
// restarted without that limit, its soft limit is lowered while it runs to
// what it has open (new spool files and connections fail with EMFILE) and
// raised again. Every database must be replicated completely in the end.
func TestFDLimit(t *testing.T) {
	r := scenario(t, "resources: fd limit reached")
	for i := 0; i < runs(1, 3); i++ {
		r.run()
		fdLimit(t, r)
		if t.Failed() {
			return
		}
	}
}

func fdLimit(t *testing.T, r *row) {
	dir := t.TempDir()
	tg := fileTarget(t)
	o := appOpts{writers: 1, maxBlob: 8 << 10, pace: 20 * time.Millisecond}
	var apps []*app
	var paths []string
	for i := 0; i < 8; i++ {
		a := newApp(t, dir, fmt.Sprintf("db%d", i), o)
		a.start()
		defer a.stop(t)
		apps = append(apps, a)
		paths = append(paths, a.path)
	}
	args := append(paths, "--sync-interval", "200ms", "--levels", "1s")
	if prl, err := exec.LookPath("prlimit"); err == nil {
		// Raising a hard limit needs CAP_SYS_RESOURCE, which a sandbox
		// may not grant: this run stays limited and is stopped.
		p := startWatchCmd(t, tg, nil, []string{prl, "--nofile=40:40", "--"}, args...)
		p.waitLog(t, "too many open files", time.Minute)
		p.waitLog(t, `writing the first full image \(L0\)`, time.Minute)
		time.Sleep(2 * time.Second)
		p.mustBeAlive(t)
		p.stop(t) // its final sync may fail for lack of fds too
		r.note("under --nofile=40:40: %d of %d databases got their first full image, the rest logged EMFILE",
			strings.Count(p.log.String(), "writing the first full image (L0)"), len(apps))
	} else {
		r.note("no prlimit binary: the limit is only lowered while running")
	}
	p := startWatch(t, tg, nil, args...)
	waitFor(t, 2*time.Minute, "every database's first upload", func() bool {
		for _, a := range apps {
			if _, _, code := cli(t, tg, nil, "restore", a.name, "--dry-run"); code != 0 {
				return false
			}
		}
		return true
	})
	var old unix.Rlimit
	if err := unix.Prlimit(p.pid(), unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatal(err)
	}
	// Take away every spare fd.
	open, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid()))
	if err != nil {
		t.Fatal(err)
	}
	mark := len(p.log.String())
	setNofile(t, p.pid(), uint64(len(open)), old.Max)
	waitFor(t, time.Minute, "EMFILE while running", func() bool {
		return strings.Contains(p.log.String()[mark:], "too many open files")
	})
	time.Sleep(pick(2*time.Second, 10*time.Second))
	p.mustBeAlive(t)
	setNofile(t, p.pid(), old.Cur, old.Max)
	for _, a := range apps {
		a.stop(t)
	}
	for _, a := range apps {
		waitCaughtUp(t, r, tg, a, 2*time.Minute)
	}
	p.stopClean(t)
	for _, a := range apps {
		finalCheck(t, r, tg, a)
	}
}

func setNofile(t *testing.T, pid int, soft, hard uint64) {
	t.Helper()
	lim := unix.Rlimit{Cur: soft, Max: hard}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatalf("prlimit --pid %d --nofile=%d:%d: %v", pid, soft, hard, err)
	}
}

// ------------------------------------------------------------- clock

// TestClockSkewRejected: S3 refuses requests signed by a clock that jumped
// (RequestTimeTooSkewed, injected by the proxy for a while). walsync must
// say the clock is off, keep running and catch up when it is right again.
func TestClockSkewRejected(t *testing.T) {
	r := scenario(t, "resources: clock jump (S3 RequestTimeTooSkewed)")
	for i := 0; i < runs(1, 3); i++ {
		r.run()
		tg := s3Target(t)
		proxy, err := faultproxy.New(tg.srv.Endpoint)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(proxy.Close)
		a := newApp(t, t.TempDir(), "app", defaultApp)
		a.start()
		p := startWatch(t, tg.via(proxy.URL()), nil, append([]string{a.path}, watchArgs...)...)
		p.waitLog(t, `writing the first full image \(L0\)`, time.Minute)
		proxy.SetFilter(func(r *http.Request) bool { return true })
		proxy.FailNext(1<<30, 403, "RequestTimeTooSkewed")
		p.waitLog(t, `clock is off`, time.Minute)
		time.Sleep(pick(3*time.Second, 10*time.Second))
		p.mustBeAlive(t)
		proxy.Reset()
		a.stop(t)
		waitCaughtUp(t, r, tg, a, 2*time.Minute)
		p.stopClean(t)
		finalCheck(t, r, tg, a)
	}
}

// sqlite3 runs SQL with the sqlite3 CLI and returns its output.
func sqlite3(t *testing.T, db, sql string) string {
	t.Helper()
	cmd := exec.Command("sqlite3", "-batch", db)
	cmd.Stdin = strings.NewReader(".timeout 5000\n" + sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", db, err, out)
	}
	return string(out)
}
