package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/storage/storagetest"
)

// TestSecondWriterRefused: two `walsync watch` processes replicate two
// copies of t1/app.db (as in a rolling deploy or a copied config) to the
// same replica under a steady writer. The one that meets the other's file
// at level 0 is refused with an ERROR naming the replica within a few sync
// intervals and stops writing; no object is ever replaced; the first
// writer's history up to the second's start restores as it was; the
// replica's latest state is the survivor's. On main both ran without a
// word and replaced each other's files.
func TestSecondWriterRefused(t *testing.T) {
	for _, backend := range []string{"file", "s3"} {
		t.Run(backend, func(t *testing.T) {
			var b backendArgs
			var objDir string
			if backend == "file" {
				b = backendArgs{url: filepath.Join(t.TempDir(), "replica")}
				objDir = filepath.Join(b.url, "t1", "app")
			} else {
				srv := testenv.S3(t)
				bucket := srv.NewBucket(t)
				b = backendArgs{
					url:  "s3://" + bucket + "/backups/app",
					args: []string{"--endpoint", srv.Endpoint},
					env:  []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_REGION=us-east-1"},
				}
				objDir = filepath.Join(srv.Dir, bucket, "backups", "app", "t1", "app")
			}
			dir := t.TempDir()
			pathA, pathB := filepath.Join(dir, "A", "t1", "app.db"), filepath.Join(dir, "B", "t1", "app.db")
			newTenantDB(t, pathA, "a1", "a2")
			newTenantDB(t, pathB, "b1")
			a := startWatch(t, b, pathA, "--sync-interval", "100ms")
			waitFor(t, 20*time.Second, func() bool { got, _ := restoreRows(t, b, "t1/app"); return got == "1=a1,2=a2" }, "A's database to be replicated")

			// A's history so far: its last TXID and the rows there.
			before := storagetest.LTXSums(objDir)
			var lastA ltx.TXID
			for p := range before {
				_, maxTXID, _ := ltx.ParseFilename(filepath.Base(p))
				lastA = max(lastA, maxTXID)
			}
			rowsA, _ := restoreRows(t, b, "t1/app", "--txid", fmt.Sprint(uint64(lastA)))
			if rowsA != "1=a1,2=a2" {
				t.Fatalf("TXID %d restores %q", lastA, rowsA)
			}

			// Watch every object: none may ever change.
			stop := make(chan struct{})
			var stopOnce sync.Once
			var wg sync.WaitGroup
			halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
			t.Cleanup(halt) // also when the test fails early
			var mu sync.Mutex
			var replaced []string
			seen := before
			wg.Add(2)
			go func() {
				defer wg.Done()
				for {
					now := storagetest.LTXSums(objDir)
					mu.Lock()
					for p, sum := range now {
						if old, ok := seen[p]; ok && old != sum {
							replaced = append(replaced, p)
						}
						seen[p] = sum
					}
					mu.Unlock()
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()
			// A steady writer on A.
			go func() {
				defer wg.Done()
				for i := 3; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					// Not sqlite3(): it must not fail the test from a goroutine.
					cmd := exec.Command("sqlite3", "-batch", pathA)
					cmd.Stdin = strings.NewReader(fmt.Sprintf(".timeout 5000\nINSERT INTO t (v) VALUES ('a%d');", i))
					cmd.Run()
					time.Sleep(30 * time.Millisecond)
				}
			}()

			started := time.Now()
			bw := startWatch(t, b, pathB, "--sync-interval", "100ms")
			const msg = "another process writes this database's replica"
			var loser, winner *watchProc
			var winnerPath string
			waitFor(t, 20*time.Second, func() bool {
				switch {
				case strings.Contains(a.logs.String(), msg):
					loser, winner, winnerPath = a, bw, pathB
				case strings.Contains(bw.logs.String(), msg):
					loser, winner, winnerPath = bw, a, pathA
				}
				return loser != nil
			}, "one of the two writers to be refused")
			t.Logf("%s refused %s after the second started", map[bool]string{true: "the first writer (A) was", false: "the second writer (B) was"}[loser == a], time.Since(started).Round(time.Millisecond))
			sqlite3(t, pathB, "INSERT INTO t (v) VALUES ('b2');")
			time.Sleep(time.Second)
			halt()
			time.Sleep(300 * time.Millisecond)
			a.stop(t)
			bw.stop(t)

			var line string
			for _, l := range strings.Split(loser.logs.String(), "\n") {
				if strings.Contains(l, msg) {
					if line != "" {
						t.Fatalf("the refusal was logged more than once:\n%s", loser.logs)
					}
					line = l
				}
			}
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "replica=") || !strings.Contains(line, "t1/app") ||
				!strings.Contains(line, "stop one of them") {
				t.Fatalf("the refusal is not an ERROR naming the replica and what to do: %s", line)
			}
			if strings.Contains(winner.logs.String(), msg) {
				t.Fatalf("both writers were refused:\n%s", winner.logs)
			}
			for _, w := range []*watchProc{a, bw} {
				if strings.Contains(w.logs.String(), "ignores conditional writes") {
					t.Fatalf("versitygw reported as ignoring conditional writes:\n%s", w.logs)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(replaced) > 0 {
				t.Fatalf("objects were replaced: %v", replaced)
			}
			if got, stderr := restoreRows(t, b, "t1/app", "--txid", fmt.Sprint(uint64(lastA))); got != rowsA {
				t.Fatalf("A's TXID %d now restores %q (%s), want %q", lastA, got, stderr, rowsA)
			}
			if got, stderr := restoreRows(t, b, "t1/app"); got != tableRows(t, winnerPath) {
				t.Fatalf("latest restores %q (%s), the surviving writer has %q", got, stderr, tableRows(t, winnerPath))
			}
		})
	}
}
