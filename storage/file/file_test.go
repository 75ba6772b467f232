package file_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/superfly/ltx"
	"golang.org/x/sys/unix"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Backend{
		New: func(t *testing.T) storage.Client { return file.New(t.TempDir()) },
		Replace: func(t *testing.T, c storage.Client, level int, minTXID, maxTXID ltx.TXID, data []byte, keepSHA bool) {
			path := c.(*file.Client).Path(level, minTXID, maxTXID)
			// Rewrite in place: the inode, and so its xattr, stays.
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if !keepSHA {
				if err := unix.Removexattr(path, file.XattrSHA256); err != nil && err != unix.ENODATA {
					t.Fatal(err)
				}
				os.Remove(path + file.SidecarSuffix)
			}
		},
	})
}

// TestLayout pins the on-disk layout Litestream's file client reads.
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	c := file.New(dir).Sub("t1/app")
	data := storagetest.LTX(t, 1, 1, 2, 4096, testTime, false)
	if _, err := c.WriteLTXFile(t.Context(), 9, 1, 1, bytesReader(data)); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "t1", "app", "ltx", "9", "0000000000000001-0000000000000001.ltx")
	fi, err := os.Stat(want)
	if err != nil {
		t.Fatalf("file not at Litestream's path: %v", err)
	}
	if !fi.ModTime().Equal(testTime) {
		t.Fatalf("mtime %v, want the LTX timestamp %v (Litestream reads it as CreatedAt)", fi.ModTime(), testTime)
	}
	entries, _ := os.ReadDir(filepath.Dir(want))
	if len(entries) != 1 {
		t.Fatalf("level directory holds %d entries, want only the LTX file (xattr keeps the SHA-256)", len(entries))
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(want, file.XattrSHA256, buf)
	if err != nil || n != 64 {
		t.Fatalf("xattr %s: %d bytes, %v", file.XattrSHA256, n, err)
	}
}
