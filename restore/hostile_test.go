package restore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
)

// TestRestoreHostileCommit: a replica's newest incremental file claims the
// database grew to 4,294,967,294 pages while holding one page, with valid
// checksums (anyone with write access to the bucket can make one). On main
// restore wrote a 16 TiB sparse file; now it fails naming the mismatch
// with the database's own header, and leaves nothing behind.
func TestRestoreHostileCommit(t *testing.T) {
	ctx := context.Background()
	client, _ := newReplica(t, 3)
	files, err := restore.ListAll(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	var last ltx.TXID
	for _, fi := range files {
		last = max(last, fi.MaxTXID)
	}
	hdr, err := storage.ReadHeader(ctx, client, files[len(files)-1])
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	h := ltx.Header{Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: hdr.PageSize, Commit: 4294967294,
		MinTXID: last + 1, MaxTXID: last + 1, Timestamp: hdr.Timestamp + 1}
	if err := enc.EncodeHeader(h); err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 2}, make([]byte, hdr.PageSize)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.WriteLTXFile(ctx, 0, last+1, last+1, &buf); err != nil {
		t.Fatalf("the hostile file is well formed and must be storable: %v", err)
	}

	dir := t.TempDir()
	out := filepath.Join(dir, "restored.db")
	_, err = restore.Restore(ctx, restore.Options{Client: client, Output: out})
	if err == nil || !strings.Contains(err.Error(), "own header") {
		t.Fatalf("restore of a replica claiming 4294967294 pages: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	// The states before it are still restorable.
	if _, err := restore.Restore(ctx, restore.Options{Client: client, Output: out, Target: restore.Target{TXID: last}}); err != nil {
		t.Fatalf("restore to TXID %s: %v", last, err)
	}
}

// TestListingBoundCountsEveryLevel: the files one restore lists are bounded
// over the whole replica, not per level: ten levels each just under the
// bound would otherwise hold ten times what one listing may.
func TestListingBoundCountsEveryLevel(t *testing.T) {
	ctx := context.Background()
	client, _ := newReplica(t, 3)
	files, err := restore.ListAll(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	defer func(n int) { storage.MaxListedFiles = n }(storage.MaxListedFiles)
	storage.MaxListedFiles = len(files)
	if _, err := restore.Plan(ctx, client, restore.Target{}); err != nil {
		t.Fatalf("a replica of exactly MaxListedFiles files: %v", err)
	}
	// One more file in another level than the replica's first: each level
	// stays under the bound, the replica does not.
	var last ltx.TXID
	for _, fi := range files {
		last = max(last, fi.MaxTXID)
	}
	src, err := client.OpenLTXFile(ctx, files[len(files)-1].Level, files[len(files)-1].MinTXID, files[len(files)-1].MaxTXID)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(src)
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	level := 3
	if files[0].Level == level {
		level = 4
	}
	fi := files[len(files)-1]
	if _, err := client.WriteLTXFile(ctx, level, fi.MinTXID, fi.MaxTXID, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Plan(ctx, client, restore.Target{}); !errors.Is(err, storage.ErrTooManyFiles) {
		t.Fatalf("MaxListedFiles+1 files over two levels: %v; want ErrTooManyFiles", err)
	}
}
