package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// WalsyncBinary returns the walsync command built once per test binary
// (or $WALSYNC_BIN, when set). Main removes the build when the tests end.
func WalsyncBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("WALSYNC_BIN"); p != "" {
			binPath, binErr = filepath.Abs(p)
			return
		}
		if binDir, binErr = os.MkdirTemp("", "walsync-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "walsync")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/walsync")
		cmd.Dir = RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/walsync: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// RemoveBinary removes what WalsyncBinary built, if anything.
func RemoveBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}
