package storage_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/walsync/walsync/storage"
)

// A staging directory that disappeared (a tmpfs emptied by a reboot or a
// cleaner) is created again: walsync must not fail every sync until it is
// restarted with the directory back.
func TestCreateUnlinkedTempRecreatesMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone", "staging")
	f, err := storage.CreateUnlinkedTemp(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("spooled"); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Fatalf("staging directory: %v, %d entries (the temp file must be unlinked)", err, len(entries))
	}
}
