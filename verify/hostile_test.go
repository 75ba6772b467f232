package verify_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/storagetest"
	"github.com/walsync/walsync/verify"
)

// TestVerifyHugeCommitSnapshot: verify reported such a replica OK. It is a
// corrupt object. (No test restore: before the fix it wrote a 16 TiB
// sparse file.)
func TestVerifyHugeCommitSnapshot(t *testing.T) {
	c := file.New(filepath.Join(t.TempDir(), "replica"))
	path := c.Path(9, 1, 1)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, storagetest.HugeCommitSnapshot(t, 4294967295), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := run(t, c, verify.Options{})
	p := has(t, rep, verify.KindCorrupt, "L9/0000000000000001-0000000000000001.ltx")
	if !strings.Contains(p.Message, "commit") {
		t.Errorf("the problem does not say what is wrong: %s", p.Message)
	}
	t.Logf("%s", problems(rep))
}
