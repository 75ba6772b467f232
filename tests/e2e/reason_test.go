package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestResyncReasonReplacedFile: a database replaced by another file while
// walsync holds it open. The resync reason must say what walsync saw; on
// main it said the WAL moved "while walsync was not running".
func TestResyncReasonReplacedFile(t *testing.T) {
	b := backendArgs{url: filepath.Join(t.TempDir(), "replica")}
	db := filepath.Join(t.TempDir(), "t1", "app.db")
	newTenantDB(t, db, "old1", "old2")
	w := startWatch(t, b, db, "--sync-interval", "50ms", "--idle-timeout", "0")
	waitFor(t, 20*time.Second, func() bool { got, _ := restoreRows(t, b, "t1/app"); return got == "1=old1,2=old2" }, "the first rows")

	other := filepath.Join(t.TempDir(), "other.db")
	newTenantDB(t, other, "new1")
	if err := os.Rename(other, db); err != nil {
		t.Fatal(err)
	}
	sqlite3(t, db, "INSERT INTO t (v) VALUES ('new2');")
	waitFor(t, 20*time.Second, func() bool { got, _ := restoreRows(t, b, "t1/app"); return got == "1=new1,2=new2" }, "the new file's rows\n"+w.logs.String())
	w.stop(t)
	logs := w.logs.String()
	if strings.Contains(logs, "not running") {
		t.Fatalf("a resync reason says walsync was not running, though it was:\n%s", logs)
	}
	if !strings.Contains(logs, `reason="the database file was replaced by another file (new inode) while walsync replicated it"`) {
		t.Fatalf("no resync reason naming the replaced file:\n%s", logs)
	}
}
