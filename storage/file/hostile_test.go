package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
)

// TestHugeSidecar: a SHA-256 sidecar lies in the replica, writable by
// whoever can write LTX files there; a 256 MiB one is refused as corrupt
// without being read into memory.
func TestHugeSidecar(t *testing.T) {
	c := file.New(t.TempDir())
	path := c.Path(0, 1, 1)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, storagetest.LTX(t, 1, 1, 2, 512, testTime, true), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path + file.SidecarSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(256 << 20); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	_, err = c.OpenLTXFile(context.Background(), 0, 1, 1)
	runtime.ReadMemStats(&b)
	if !storage.IsCorrupt(err) {
		t.Fatalf("got %v, want a corrupt-object error", err)
	}
	if n := b.TotalAlloc - a.TotalAlloc; n > 4<<20 {
		t.Fatalf("reading a 256 MiB sidecar allocated %d bytes", n)
	}
}

// TestListReplicasBounded: finding the databases below a root walks at
// most storage.ScanLimit entries and names at most MaxListedFiles
// databases: a root stuffed with files or replicas fails with an error
// instead of holding an entry for each.
func TestListReplicasBounded(t *testing.T) {
	defer func(n int) { storage.MaxListedFiles = n }(storage.MaxListedFiles)
	storage.MaxListedFiles = 5 // ScanLimit 50
	root := t.TempDir()
	for i := range 5 {
		if err := os.MkdirAll(filepath.Join(root, fmt.Sprintf("t%d", i), "app", "ltx", "0"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	names, err := file.New(root).ListReplicas(context.Background())
	if err != nil || len(names) != 5 || names[0] != "t0/app" {
		t.Fatalf("5 databases: %v, %v", names, err)
	}
	if err := os.MkdirAll(filepath.Join(root, "t9", "app", "ltx", "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := file.New(root).ListReplicas(context.Background()); err == nil || !strings.Contains(err.Error(), "more than 5 databases") {
		t.Fatalf("6 databases with MaxListedFiles 5: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.MkdirAll(filepath.Join(junk, "db", "ltx"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		if err := os.WriteFile(filepath.Join(junk, fmt.Sprintf("f%d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := file.New(junk).ListReplicas(context.Background()); err == nil || !strings.Contains(err.Error(), "more than 50 entries") {
		t.Fatalf("a root of 60 files with ScanLimit 50: %v", err)
	}
}
