package restore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsync/walsync/internal/fsx"
)

// This file puts a restored database in place without destroying anything
// before it has succeeded (issue 19):
//
//   - Temp files are named <out>.walsync-<pid>-<random>.tmp and flocked by
//     their restore, so a later restore can tell a killed restore's temp
//     file (lock free, owner gone) from a live one's, and remove it.
//   - The final step runs under an flock on the output's directory, so
//     restores to one directory take turns there; without --force the
//     rename is RENAME_NOREPLACE, so of racing restores exactly one wins.
//   - A database some process has open (SQLite's own locks on the file or
//     its -shm, probed with F_OFD_GETLK, which takes no lock) is refused.
//   - The old database's -wal, -shm and -journal are renamed aside, to
//     <out><suffix>.walsync-<inode of the old database>.aside, only right
//     before the final rename, put back if it fails, and removed only after
//     it succeeded and the directory was fsynced.
//
// A restore killed (kill -9, power loss) between setting the files aside
// and removing them leaves .aside files. The next restore to that path
// resolves them before anything else: if the database at the path is still
// the one they were set aside from (same inode), the rename never happened
// and they are put back; otherwise they belong to a database that was
// replaced as asked and are removed. Both are logged as warnings. When an
// aside -wal or -journal can be neither, because its name is taken again
// (the database was opened in between and has a new -wal) or the database
// file was written after it was set aside (a checkpoint, which the old WAL
// would undo), it is kept and every restore to that path fails, naming it,
// until a person has dealt with it. Until some restore runs again, the old
// database is without its -wal: SQLite opening it in that window does not
// see the transactions in the aside file.
//
// Limits: an application that opens the database between the last check
// and the rename (microseconds, under the directory lock) is not seen; nor
// is an idle connection to a rollback-journal database, which holds no
// lock between transactions (walsync replicates only WAL databases).

// sidecars are the files SQLite keeps beside a database. A restored
// database must not inherit another database's: SQLite would apply a hot
// WAL or journal to it.
var sidecars = []string{"-wal", "-shm", "-journal"}

// SQLite's lock bytes (os_unix.c, wal.c): on the database file PENDING at
// 1 GiB, then RESERVED, then the 510-byte SHARED range; on the -shm the
// eight WAL locks from byte 120 and the DMS byte 128, which every
// connection holds a read lock on while it has the database open in WAL
// mode (as it holds SHARED on the database file).
const (
	dbLockStart  = 0x40000000
	dbLockLen    = 2 + 510
	shmLockStart = 120
	shmLockLen   = 8 + 1
)

// checkDir fails, naming it and what to do, when the output's directory
// does not exist or is not a directory.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("the output's directory %s does not exist; create it first (mkdir -p %s) or choose another output path", dir, dir)
	case err != nil:
		return fmt.Errorf("the output's directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("the output's directory %s is not a directory; choose another output path", dir)
	}
	return nil
}

// checkOutput fails when out cannot be restored to: it exists and force is
// off, it is a directory, or a process has it open.
func checkOutput(out string, force bool) error {
	fi, err := os.Stat(out) // a dangling symlink does not exist: it is replaced
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return inUse(out) // an orphaned -shm can still be held
	case err != nil:
		return fmt.Errorf("output %s: %w", out, err)
	case fi.IsDir():
		return fmt.Errorf("output %s is a directory; name the database file to create, e.g. %s", out, filepath.Join(out, "restored.db"))
	case !force:
		return existsError(out)
	}
	return inUse(out)
}

func existsError(out string) error {
	return fmt.Errorf("output %s already exists; choose another path or pass --force to replace it", out)
}

// inUse fails when a process holds a SQLite lock on out or its -shm, which
// means it has the database open (WAL mode holds them for as long as a
// connection is open; a rollback-journal database is locked only during a
// transaction). The probe takes no lock, so it cannot disturb the
// application's locking.
func inUse(out string) error {
	for _, p := range []struct {
		path       string
		start, len int64
	}{{out, dbLockStart, dbLockLen}, {out + "-shm", shmLockStart, shmLockLen}} {
		pid, err := lockHolder(p.path, p.start, p.len)
		if err != nil {
			return fmt.Errorf("check whether %s is open: %w", out, err)
		}
		if pid == 0 {
			continue
		}
		who := "a process"
		switch {
		case pid == os.Getpid():
			who = "this process"
		case pid > 0:
			who = "process " + strconv.Itoa(pid)
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
				who += " (" + strings.TrimSpace(string(b)) + ")"
			}
		}
		return fmt.Errorf("%s is open: %s holds a SQLite lock on %s; stop the application using it (and any walsync watch of it), then restore again: replacing a database under an open connection would send its writes to a file that no longer exists", out, who, p.path)
	}
	return nil
}

// lockHolder returns the pid holding a lock on [start, start+n) of path, -1
// if the holder is unknown (an OFD lock, or a process in another pid
// namespace), or 0 if there is none or path does not exist.
func lockHolder(path string, start, n int64) (int, error) {
	// O_NONBLOCK: out could be a FIFO. Reading the descriptor is not
	// needed; closing it releases no lock of ours (we hold none on it).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: start, Len: n}
	// F_OFD_GETLK also reports the locks of this process; F_GETLK (kernels
	// before 3.15) reports only other processes'.
	err = unix.FcntlFlock(f.Fd(), fsx.GetLkAll, &lk)
	if errors.Is(err, unix.EINVAL) {
		lk = unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: start, Len: n}
		err = unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk)
	}
	if err != nil {
		return 0, fmt.Errorf("probe the locks on %s: %w", path, err)
	}
	switch {
	case lk.Type == unix.F_UNLCK:
		return 0, nil
	case lk.Pid > 0:
		return int(lk.Pid), nil
	}
	return -1, nil
}

// ownTemps holds the names of this process's live temp files, from just
// before each is created until it is gone: restores running in this
// process share its pid, and one must not take another's for stale.
var ownTemps sync.Map

// createTemp creates out's temp file, mode 0600 until it is put in place,
// flocked for as long as the restore runs: the lock tells a later restore
// that this one is alive. done forgets it once it is removed or renamed.
func createTemp(out string) (f *os.File, done func(), err error) {
	for range 100 {
		name := fmt.Sprintf("%s.walsync-%d-%s.tmp", out, os.Getpid(), strconv.FormatUint(rand.Uint64(), 36))
		ownTemps.Store(name, true)
		done = func() { ownTemps.Delete(name) }
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			done()
			continue
		} else if err != nil {
			done()
			return nil, nil, fmt.Errorf("create a temp file beside %s: %w", out, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			os.Remove(name)
			done()
			return nil, nil, fmt.Errorf("lock %s: %w", name, err)
		}
		return f, done, nil
	}
	return nil, nil, fmt.Errorf("create a temp file beside %s: no free name", out)
}

// tempPID returns the pid in name if it is the name of one of out's temp
// files: <base>.walsync-<pid>-<random>.tmp.
func tempPID(base, name string) (int, bool) {
	mid, ok := strings.CutPrefix(name, base+".walsync-")
	if !ok {
		return 0, false
	}
	if mid, ok = strings.CutSuffix(mid, ".tmp"); !ok {
		return 0, false
	}
	p, r, ok := strings.Cut(mid, "-")
	pid, err := strconv.Atoi(p)
	if !ok || err != nil || pid <= 0 || r == "" || strings.Contains(r, "-") {
		return 0, false
	}
	return pid, true
}

// removeStaleTemps removes the temp files that killed restores to out left
// behind. A temp file is stale when its flock is free and its owner is gone:
// its pid is dead or is ours but the name is not one of this process's (a
// container's restore restarted as the same pid), or it is older than a
// minute (its pid was reused; a live restore holds the lock from just after
// it creates the file).
func removeStaleTemps(out string, log *slog.Logger) {
	dir, base := filepath.Split(out)
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("cannot look for temp files of killed restores", "dir", dir, "err", err)
		return
	}
	for _, e := range entries {
		pid, ok := tempPID(base, e.Name())
		if !ok {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if removed, size, err := removeIfStale(p, pid); err != nil {
			log.Warn("cannot remove the temp file of a killed restore", "path", p, "err", err)
		} else if removed {
			log.Info("removed the temp file of a killed restore", "path", p, "bytes", size)
		}
	}
}

func removeIfStale(p string, pid int) (bool, int64, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, 0, nil
	} else if err != nil {
		return false, 0, err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return false, 0, nil // a live restore's
	} else if err != nil {
		return false, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return false, 0, err
	}
	if _, ok := ownTemps.Load(p); ok {
		return false, 0, nil
	}
	alive := pid != os.Getpid() && !errors.Is(unix.Kill(pid, 0), unix.ESRCH)
	if alive && time.Since(fi.ModTime()) < time.Minute {
		return false, 0, nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, 0, err
	}
	return true, fi.Size(), nil
}

// lockDir takes an exclusive flock on dir, waiting for other restores into
// it, and returns its release. Restores hold it only for their last steps.
func lockDir(ctx context.Context, dir string, log *slog.Logger) (func(), error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open the output's directory %s: %w", dir, err)
	}
	start := time.Now()
	for said := false; ; {
		err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { d.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			// Some network filesystems refuse flock on a directory:
			// RENAME_NOREPLACE still keeps racing restores without
			// --force from overwriting each other.
			log.Warn("cannot lock the output's directory; concurrent restores to it are not serialized", "dir", dir, "err", err)
			d.Close()
			return func() {}, nil
		}
		if !said && time.Since(start) > 2*time.Second {
			log.Warn("waiting for another restore into the output's directory to finish its last step", "dir", dir)
			said = true
		}
		select {
		case <-ctx.Done():
			d.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// asideName is where sidecar suffix of out goes while the database with
// inode ino is replaced.
func asideName(out, suffix string, ino uint64) string {
	return fmt.Sprintf("%s%s.walsync-%d.aside", out, suffix, ino)
}

// inode returns out's inode number, 0 if it does not exist.
func inode(out string) (uint64, error) {
	fi, err := os.Lstat(out)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	return fi.Sys().(*syscall.Stat_t).Ino, nil
}

// recoverAsides resolves the aside files a killed restore left beside out
// (see the top of this file). The caller holds the directory lock, so no
// live restore owns them.
func recoverAsides(out string, log *slog.Logger) error {
	dir, base := filepath.Split(out)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read the output's directory: %w", err)
	}
	cur, err := inode(out)
	if err != nil {
		return fmt.Errorf("output %s: %w", out, err)
	}
	for _, e := range entries {
		for _, s := range sidecars {
			mid, ok := strings.CutPrefix(e.Name(), base+s+".walsync-")
			if !ok {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(mid, ".aside"), 10, 64)
			if err != nil || !strings.HasSuffix(mid, ".aside") {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if ino != cur {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("remove %s, left by a killed restore: %w", p, err)
				}
				log.Warn("removed a file a killed restore had set aside: it belonged to the database that restore replaced", "path", p, "output", out)
				continue
			}
			var conflict string
			if cur != 0 && writtenSince(out, p) {
				conflict = "the database was written after it was set aside, and putting it back would undo those writes"
			} else if err := fsx.RenameNoReplace(p, out+s); err == nil {
				log.Warn("put back a file that a restore killed before replacing the database had set aside", "path", out+s)
				continue
			} else if errors.Is(err, fs.ErrExist) {
				conflict = "the database has a new " + s + " since"
			} else {
				return fmt.Errorf("put back %s, set aside by a killed restore, as %s: %w", p, out+s, err)
			}
			if s == "-shm" { // only an index, which SQLite rebuilds from the WAL
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("remove %s, left by a killed restore: %w", p, err)
				}
				continue
			}
			// Neither putting it back nor removing it is safe: a person
			// decides.
			return fmt.Errorf("%s was set aside by a restore killed before it replaced %s, and cannot be put back: %s. It holds that database's last transactions from before the restore; recover what you need from it (a copy of the database with it beside as the copy's %s), then remove it and restore again", p, out, conflict, s)
		}
	}
	return nil
}

// writtenSince reports whether the database out was modified at or after
// the aside file p was renamed aside (its ctime), or cannot tell: after a
// checkpoint by an application that opened it meanwhile, the old WAL would
// overwrite newer pages.
func writtenSince(out, p string) bool {
	db, err1 := os.Stat(out)
	a, err2 := os.Lstat(p)
	if err1 != nil || err2 != nil {
		return true
	}
	return !db.ModTime().Before(fsx.ChangeTime(a))
}

type aside struct{ from, to string }

// setAside renames out's sidecar files aside, or puts back what it moved
// and fails.
func setAside(out string, ino uint64) ([]aside, error) {
	var done []aside
	for _, s := range sidecars {
		if _, err := os.Lstat(out + s); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		a := aside{out + s, asideName(out, s, ino)}
		if err := fsx.RenameNoReplace(a.from, a.to); err != nil {
			err = fmt.Errorf("set %s aside before replacing %s: %w", a.from, out, err)
			return nil, errors.Join(err, putBack(done))
		}
		done = append(done, a)
	}
	return done, nil
}

// putBack undoes setAside.
func putBack(done []aside) error {
	var errs []error
	for _, a := range done {
		if err := fsx.RenameNoReplace(a.to, a.from); err != nil {
			errs = append(errs, fmt.Errorf("put back %s: %w; rename %s to %s by hand before opening the database: it holds the old database's last transactions", a.from, err, a.to, a.from))
		}
	}
	return errors.Join(errs...)
}

// setOwnerMode gives the temp file the owner and mode of the regular file
// it replaces (old), or, for a new file, SQLite's default 0644 minus the
// umask.
func setOwnerMode(f *os.File, out string, old fs.FileInfo) error {
	mode := 0o644 &^ umask()
	if old != nil && old.Mode().IsRegular() {
		st := old.Sys().(*syscall.Stat_t)
		if err := unix.Fchown(int(f.Fd()), int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("give the restored database the owner %d:%d of the %s it replaces: %w; run the restore as root or as that user", st.Uid, st.Gid, out, err)
		}
		mode = uint32(st.Mode) & 0o7777 // after chown, which clears set-id bits
	}
	if err := unix.Fchmod(int(f.Fd()), mode); err != nil {
		return fmt.Errorf("set the mode of %s: %w", f.Name(), err)
	}
	return nil
}

// umask returns the process's umask without changing it (umask(2) can only
// set it, and other goroutines may be creating files).
func umask() uint32 {
	f, err := os.Open("/proc/self/status")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Umask:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return uint32(m)
				}
			}
		}
	}
	return 0o022
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// commit puts the verified, fsynced temp file in place as out; see the top
// of this file.
func commit(ctx context.Context, tmp *os.File, out string, force bool, log *slog.Logger) error {
	dir := filepath.Dir(out)
	unlock, err := lockDir(ctx, dir, log)
	if err != nil {
		return err
	}
	defer unlock()
	if err := recoverAsides(out, log); err != nil {
		return err
	}
	// Checked again now that restores to this directory take turns: the
	// output may have appeared, or an application opened it, meanwhile.
	replace := false
	old, err := os.Lstat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return fmt.Errorf("output %s: %w", out, err)
	case old.IsDir():
		return fmt.Errorf("output %s is a directory; name the database file to create, e.g. %s", out, filepath.Join(out, "restored.db"))
	case force:
		replace = true
	case old.Mode()&fs.ModeSymlink != 0:
		// A dangling symlink is replaced, as before, without --force.
		if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
			return existsError(out)
		}
		replace, old = true, nil
	default:
		return existsError(out)
	}
	if err := inUse(out); err != nil {
		return err
	}
	if err := setOwnerMode(tmp, out, old); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	ino, err := inode(out)
	if err != nil {
		return fmt.Errorf("output %s: %w", out, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	asides, err := setAside(out, ino)
	if err != nil {
		return err
	}
	if replace {
		err = os.Rename(tmp.Name(), out)
	} else {
		err = fsx.RenameNoReplace(tmp.Name(), out)
	}
	if err != nil {
		var perr error
		if errors.Is(err, fs.ErrExist) {
			perr = existsError(out)
		} else {
			perr = fmt.Errorf("put the restored database in place as %s: %w%s; the existing files were left as they were", out, err, renameHint(err))
		}
		return errors.Join(perr, putBack(asides))
	}
	// The aside files go only once the rename is durable: after a crash
	// before this, the next restore resolves them by the inode.
	if err := syncDir(dir); err != nil {
		log.Warn("restored, but cannot fsync the output's directory; the next restore to it removes the files set aside", "dir", dir, "err", err)
		return nil
	}
	for _, a := range asides {
		if err := os.Remove(a.to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("cannot remove a file of the replaced database; the next restore to this path removes it", "path", a.to, "err", err)
		}
	}
	if len(asides) > 0 {
		_ = syncDir(dir)
	}
	return nil
}

func renameHint(err error) string {
	switch {
	case errors.Is(err, unix.EBUSY):
		return " (the output is a mount point, e.g. a file bind-mounted as a single-file container volume, and rename cannot replace it: restore where it is not a mount point, such as the host's path of the file, or restore to another path and copy it over while the application is stopped)"
	case errors.Is(err, unix.EXDEV):
		return " (the output and its directory are on different mounts: restore where the output is not a mount point)"
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return " (check the permissions and attributes, e.g. chattr +i, of the output and its directory)"
	}
	return ""
}
