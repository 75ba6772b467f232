package storage_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/walsync/walsync/storage"
)

// TestSpillDirRemovesDeadProcesses: a process killed with -9 leaves its
// spill files behind; the next walsync in that temp dir removes them, and
// leaves a running process's alone.
func TestSpillDirRemovesDeadProcesses(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(tmp, fmt.Sprintf("walsync-%d.spill", cmd.Process.Pid))
	live := filepath.Join(tmp, fmt.Sprintf("walsync-%d.spill", os.Getppid()))
	old := time.Now().Add(-time.Hour)
	for _, d := range []string{dead, live} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(d, ".ltx-page-index-1.tmp")
		if err := os.WriteFile(f, make([]byte, 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{f, d} {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A gone pid whose files were just written may be a process in
	// another PID namespace sharing the temp dir: kept.
	cmd2 := exec.Command("true")
	if err := cmd2.Run(); err != nil {
		t.Fatal(err)
	}
	recent := filepath.Join(tmp, fmt.Sprintf("walsync-%d.spill", cmd2.Process.Pid))
	if err := os.MkdirAll(recent, 0o700); err != nil {
		t.Fatal(err)
	}
	own, err := storage.SpillDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Fatalf("a dead process's spill directory is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("a running process's spill directory was removed: %v", err)
	}
	if _, err := os.Stat(recent); err != nil {
		t.Fatalf("a spill directory touched just now was removed: %v", err)
	}
	if err := os.RemoveAll(own); err != nil {
		t.Fatal(err)
	}
	if again, err := storage.SpillDir(tmp); err != nil || again != own {
		t.Fatalf("spill directory after a cleaner removed it: %q, %v", again, err)
	}
	if _, err := os.Stat(own); err != nil {
		t.Fatalf("not made again: %v", err)
	}
}
