package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPageSizeChange: a database whose page size changes under walsync,
// by a file with other pages moved over it or by the application's own
// VACUUM. On main every restore of a TXID after the change failed ("has
// page size 8192, earlier files 4096") until a scheduled snapshot; now
// every TXID before and after it restores to a state the source had, and
// compaction never merges across the change.
func TestPageSizeChange(t *testing.T) {
	triggers := map[string]func(t *testing.T, db string){
		"moved-over": func(t *testing.T, db string) {
			other := filepath.Join(t.TempDir(), "other.db")
			sqlite3(t, other, "PRAGMA page_size=8192; PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"+
				"INSERT INTO t (v) VALUES ('m1'); INSERT INTO t (v) VALUES ('m2');")
			if err := os.Rename(other, db); err != nil {
				t.Fatal(err)
			}
			// A careful user drops the old database's WAL with it.
			os.Remove(db + "-wal")
			os.Remove(db + "-shm")
		},
		"vacuum": func(t *testing.T, db string) {
			sqlite3(t, db, "PRAGMA journal_mode=DELETE; PRAGMA page_size=16384; VACUUM; PRAGMA journal_mode=WAL;")
		},
	}
	for bname, mk := range backends(t) {
		for tname, trigger := range triggers {
			t.Run(bname+"/"+tname, func(t *testing.T) {
				b := mk()
				db := filepath.Join(t.TempDir(), "t1", "app.db")
				newTenantDB(t, db, "a0")
				states := map[string]bool{tableRows(t, db): true}
				write := func(v string) {
					sqlite3(t, db, fmt.Sprintf("INSERT INTO t (v) VALUES ('%s');", v))
					states[tableRows(t, db)] = true
				}
				w := startWatch(t, b, db, "--sync-interval", "100ms", "--idle-timeout", "500ms", "--levels", "1s,3s")
				for i := 1; i <= 4; i++ {
					write(fmt.Sprintf("a%d", i))
					time.Sleep(150 * time.Millisecond)
				}
				waitCold(t, w, db)
				trigger(t, db)
				states[tableRows(t, db)] = true
				for i := 1; i <= 4; i++ {
					write(fmt.Sprintf("b%d", i))
					time.Sleep(150 * time.Millisecond)
				}
				want := tableRows(t, db)
				waitFor(t, 20*time.Second, func() bool { got, _ := restoreRows(t, b, "t1/app"); return got == want }, "the latest state to restore\n"+w.logs.String())
				time.Sleep(4 * time.Second) // compaction of both levels
				w.stop(t)
				if strings.Contains(w.logs.String(), "mismatched page sizes") {
					t.Fatalf("compaction merged across the page-size change:\n%s", w.logs)
				}
				if got, stderr := restoreRows(t, b, "t1/app"); got != want {
					t.Fatalf("latest restores %q (%s), want %q", got, stderr, want)
				}
				last := latestTXID(t, b, "t1/app")
				for txid := 1; txid <= last; txid++ {
					got, stderr := restoreRows(t, b, "t1/app", "--txid", strconv.Itoa(txid))
					if stderr != "" {
						list, _, _ := walsyncCmd(t, b.env, append([]string{"restore", "t1/app", "-o", filepath.Join(t.TempDir(), "x.db"), "-b", b.url, "--dry-run", "--txid", strconv.Itoa(txid)}, b.args...)...)
						t.Fatalf("restore --txid %d of %d: %s\nplan:\n%s\nlogs:\n%s", txid, last, stderr, list, w.logs)
					}
					if !states[got] {
						t.Fatalf("TXID %d restores %q, a state the source never had", txid, got)
					}
				}
				out, stderr, code := walsyncCmd(t, b.env, append([]string{"verify", "t1/app", "-b", b.url}, b.args...)...)
				if code != 0 {
					t.Fatalf("verify: exit %d\n%s%s", code, out, stderr)
				}
			})
		}
	}
}

func waitCold(t *testing.T, w *watchProc, db string) {
	t.Helper()
	waitFor(t, 20*time.Second, func() bool {
		st, err := fetchStatus(w.addr)
		if err != nil {
			return false
		}
		for _, d := range st.DBs {
			if d.Path == db && d.State == "cold" && !d.Pending {
				return true
			}
		}
		return false
	}, db+" to go cold")
}

// latestTXID is the TXID a restore of the latest state reaches.
func latestTXID(t *testing.T, b backendArgs, name string) int {
	t.Helper()
	out, stderr, code := walsyncCmd(t, b.env, append([]string{"restore", name, "-o", filepath.Join(t.TempDir(), "x.db"), "-b", b.url, "--dry-run"}, b.args...)...)
	if code != 0 {
		t.Fatalf("restore --dry-run: exit %d: %s", code, stderr)
	}
	i := strings.Index(out, "reaches TXID ")
	if i < 0 {
		t.Fatalf("restore --dry-run printed no TXID:\n%s", out)
	}
	var txid int
	if _, err := fmt.Sscanf(out[i:], "reaches TXID %d", &txid); err != nil {
		t.Fatalf("restore --dry-run: %v\n%s", err, out)
	}
	return txid
}
