package engine

// Process limits: file descriptors and the C heap. (Raising the soft fd
// limit at start is the command's job: cmd/walsync.)

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/walsync/walsync/capture"
)

// noteFDLimit lowers the hot set to what is open when err says the
// process ran out of fds: databases then wait their turn instead of
// failing to open.
func (eng *Engine) noteFDLimit(err error) {
	if isFDLimit(err) && eng.hotCap > 1 {
		eng.hotCap = max(1, eng.hot-1)
		eng.log.Warn("out of file descriptors: fewer databases will be held open at once (longer lag)", "hot_set", eng.hotCap, "error", err)
	}
}

// isFDLimit reports whether err came from running out of file
// descriptors. SQLite reports that as "unable to open database file", as it
// does a missing directory, so the process's fd count decides.
func isFDLimit(err error) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return true
	}
	if err == nil || !strings.Contains(err.Error(), "unable to open database file") {
		return false
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return false
	}
	fds, err := os.ReadDir("/proc/self/fd")
	return err == nil && uint64(len(fds)) >= lim.Cur*9/10
}

// released counts a database released. Released connections' memory stays
// in the C heap unless trimmed; after a wave of releases, or when nothing
// is open, hand it back (at most every 10 s).
func (eng *Engine) released(now time.Time) {
	if eng.cooled++; eng.cooled >= 16 && now.Sub(eng.trimmed) > 10*time.Second || eng.hot == 0 && eng.cooled > 0 {
		capture.TrimCHeap()
		eng.cooled, eng.trimmed = 0, now
	}
}
