package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
)

// TestEmptiedReplica: every object under a watched database's replica
// path is deleted while walsync runs (a mistaken cleanup, a lifecycle
// rule; the bucket stays), or the file replica's directory is removed. On
// main walsync kept writing L0 files for the following TXIDs, logged
// nothing, and every restore failed with "the replica has no snapshot"
// until the next scheduled snapshot (24 h). Now the next compaction's
// listing shows the loss: an ERROR, and a snapshot, so the latest state
// restores again within one compaction interval.
func TestEmptiedReplica(t *testing.T) {
	type backend struct {
		args  backendArgs
		empty func(t *testing.T)
	}
	mks := map[string]func(t *testing.T) backend{
		"file": func(t *testing.T) backend {
			b := backendArgs{url: filepath.Join(t.TempDir(), "replica")}
			return backend{b, func(t *testing.T) {
				if err := os.RemoveAll(filepath.Join(b.url, "t1")); err != nil {
					t.Fatal(err)
				}
			}}
		},
		"s3": func(t *testing.T) backend {
			srv := testenv.S3(t)
			bucket := srv.NewBucket(t)
			b := backendArgs{
				url:  "s3://" + bucket + "/backups/app",
				args: []string{"--endpoint", srv.Endpoint},
				env:  []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_REGION=us-east-1"},
			}
			return backend{b, func(t *testing.T) {
				srv.AWS(t, "s3", "rm", "--recursive", "s3://"+bucket+"/backups/app/")
				if out := srv.AWS(t, "s3", "ls", "--recursive", "s3://"+bucket+"/"); len(out) != 0 {
					t.Fatalf("objects left after aws s3 rm --recursive:\n%s", out)
				}
			}}
		},
	}
	for name, mk := range mks {
		t.Run(name, func(t *testing.T) {
			be := mk(t)
			b := be.args
			db := filepath.Join(t.TempDir(), "t1", "app.db")
			newTenantDB(t, db, "r0")
			const interval = 2 * time.Second
			w := startWatch(t, b, db, "--sync-interval", "100ms", "--levels", "2s,10s")
			for i := 1; i <= 3; i++ {
				sqlite3(t, db, fmt.Sprintf("INSERT INTO t (v) VALUES ('r%d');", i))
			}
			want := tableRows(t, db)
			waitFor(t, 20*time.Second, func() bool { got, _ := restoreRows(t, b, "t1/app"); return got == want }, "the first rows")
			time.Sleep(interval + 500*time.Millisecond) // one compaction, so level 1 has files

			be.empty(t)
			for i := 4; i <= 6; i++ {
				sqlite3(t, db, fmt.Sprintf("INSERT INTO t (v) VALUES ('r%d');", i))
				time.Sleep(200 * time.Millisecond)
			}
			want = tableRows(t, db)
			start := time.Now()
			// Two intervals: the compaction boundary, then the sync.
			waitFor(t, 2*interval+10*time.Second, func() bool { got, _ := restoreRows(t, b, "t1/app"); return got == want },
				"the latest state to be restorable after the replica was emptied\n"+w.logs.String())
			t.Logf("restorable again %s after the last write", time.Since(start).Round(100*time.Millisecond))
			w.stop(t)
			if !strings.Contains(w.logs.String(), "level=ERROR msg=\"the replica lost files walsync wrote") {
				t.Fatalf("no ERROR about the lost files:\n%s", w.logs)
			}
		})
	}
}
