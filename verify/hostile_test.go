package verify_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/verify"
)

// hugeSnapshot is issue 20's object: a snapshot holding a real page 1 whose
// header claims 4294967295 pages of 4 KiB (restored, a 16 TiB sparse
// file), its checksums all correct.
func hugeSnapshot(t *testing.T) []byte {
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	const commit = 4294967295
	if err := enc.EncodeHeader(ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: commit,
		MinTXID: 1, MaxTXID: 1, Timestamp: t0.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 4096)
	copy(page, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(page[16:], 4096)
	binary.BigEndian.PutUint32(page[28:], commit)
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 1}, page); err != nil {
		t.Fatal(err)
	}
	enc.SetPostApplyChecksum(ltx.ChecksumFlag | ltx.ChecksumPage(1, page))
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestVerifyHugeCommitSnapshot: verify reported such a replica OK. It is a
// corrupt object. (No test restore: before the fix it wrote a 16 TiB
// sparse file.)
func TestVerifyHugeCommitSnapshot(t *testing.T) {
	c := file.New(filepath.Join(t.TempDir(), "replica"))
	path := c.Path(9, 1, 1)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, hugeSnapshot(t), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := run(t, c, verify.Options{})
	p := has(t, rep, verify.KindCorrupt, "L9/0000000000000001-0000000000000001.ltx")
	if !strings.Contains(p.Message, "commit") {
		t.Errorf("the problem does not say what is wrong: %s", p.Message)
	}
	t.Logf("%s", problems(rep))
}
