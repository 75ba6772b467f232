package file_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
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
