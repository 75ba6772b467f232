package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCorruptObjectDoesNotStopSyncs: one object of a database's replica is
// damaged (two bytes flipped in a level-1 file), so every compaction into
// level 2 fails. On main that failure put the whole database in backoff:
// none of the following commits reached the replica and status showed no
// lag. Now syncs go on, status shows the error, and a snapshot keeps the
// latest state restorable without the bad object.
func TestCorruptObjectDoesNotStopSyncs(t *testing.T) {
	b := backendArgs{url: filepath.Join(t.TempDir(), "replica")}
	db := filepath.Join(t.TempDir(), "t1", "app.db")
	newTenantDB(t, db, "r0")
	w := startWatch(t, b, db, "--sync-interval", "100ms", "--idle-timeout", "0", "--levels", "1s,3s")
	for i := 1; i <= 3; i++ {
		sqlite3(t, db, fmt.Sprintf("INSERT INTO t (v) VALUES ('r%d');", i))
	}
	l1 := filepath.Join(b.url, "t1", "app", "ltx", "1")
	var victim string
	waitFor(t, 20*time.Second, func() bool {
		ents, _ := os.ReadDir(l1)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".ltx") {
				victim = filepath.Join(l1, e.Name())
				return true
			}
		}
		return false
	}, "a level-1 file")
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	data[len(data)/2+1] ^= 0xff
	if err := os.WriteFile(victim, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 20; i++ {
		sqlite3(t, db, fmt.Sprintf("INSERT INTO t (v) VALUES ('r%d');", i))
		time.Sleep(200 * time.Millisecond)
	}
	want := tableRows(t, db)
	waitFor(t, 30*time.Second, func() bool { got, _ := restoreRows(t, b, "t1/app"); return got == want },
		"the latest state to be restorable despite the damaged object\n"+w.logs.String())
	st, err := fetchStatus(w.addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.DBs) != 1 || st.DBs[0].Failures == 0 || !strings.Contains(st.DBs[0].Error, filepath.Base(victim)) {
		t.Fatalf("status does not show the damaged object: %+v", st.DBs)
	}
	w.stop(t)
	if !strings.Contains(w.logs.String(), "background work failed; syncs go on") {
		t.Fatalf("no error logged for the damaged object:\n%s", w.logs)
	}
}
