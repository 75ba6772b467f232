package storage_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/storagetest"
)

// FuzzVerifyLTX: whatever bytes come back from storage, verification
// returns an error or a valid header — it never panics (superfly/ltx v0.5.x
// can panic on some truncated files) and never accepts a file whose bytes
// differ from a valid one's without the checksums agreeing.
func FuzzVerifyLTX(f *testing.F) {
	valid := storagetest.LTX(f, 1, 1, 3, 512, time.Unix(1, 0), true)
	f.Add(valid)
	for _, cut := range []int{1, 4, 7, 8, 16, 100, len(valid) / 2} {
		f.Add(valid[:len(valid)-cut])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, err := storage.VerifyLTX(bytes.NewReader(b), 1, 1)
		if err == nil && !bytes.Equal(b, valid) {
			// A different byte string that verifies must at least be a
			// well-formed LTX file for TXID 1.
			if hdr.MinTXID != 1 || hdr.MaxTXID != 1 {
				t.Fatalf("accepted a file with TXIDs %s-%s", hdr.MinTXID, hdr.MaxTXID)
			}
		}
	})
}
