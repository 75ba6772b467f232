// Package storagetest is the conformance suite every storage backend runs.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
)

// Backend wires a backend into the suite.
type Backend struct {
	// New returns a client for a fresh, empty replica.
	New func(t *testing.T) storage.Client
	// Replace swaps the stored bytes of a file behind the client's back.
	// With keepSHA the recorded SHA-256 stays as it was; without, the
	// object is left with no SHA-256 (as Litestream writes it).
	Replace func(t *testing.T, c storage.Client, level int, minTXID, maxTXID ltx.TXID, data []byte, keepSHA bool)
}

// LTX returns a valid LTX file for (minTXID, maxTXID) holding pages 1..n of
// pageSize bytes. Pages are random (incompressible) when random is true.
func LTX(t testing.TB, minTXID, maxTXID ltx.TXID, n int, pageSize uint32, ts time.Time, random bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(ltx.Header{
		Version: ltx.Version, Flags: ltx.HeaderFlagNoChecksum, PageSize: pageSize, Commit: uint32(n),
		MinTXID: minTXID, MaxTXID: maxTXID, Timestamp: ts.UnixMilli(),
	}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(minTXID), uint64(maxTXID)))
	data := make([]byte, pageSize)
	lock := ltx.LockPgno(pageSize)
	for pgno := uint32(1); pgno <= uint32(n); pgno++ {
		if pgno == lock {
			continue
		}
		for i := range data {
			if random {
				data[i] = byte(rng.Uint32())
			} else {
				data[i] = byte(pgno)
			}
		}
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Run runs the whole suite against b.
func Run(t *testing.T, b Backend) {
	ts := time.Date(2026, 11, 20, 10, 0, 0, 123_000_000, time.UTC)
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		c := b.New(t)
		for _, tc := range []struct {
			level    int
			min, max ltx.TXID
			pages    int
			pageSize uint32
		}{{9, 1, 1, 3, 4096}, {0, 2, 2, 1, 4096}, {1, 3, 17, 2, 512}, {3, 18, 40, 2, 65536}} {
			data := LTX(t, tc.min, tc.max, tc.pages, tc.pageSize, ts, true)
			fi, err := c.WriteLTXFile(ctx, tc.level, tc.min, tc.max, bytes.NewReader(data))
			if err != nil {
				t.Fatalf("write %d/%d-%d: %v", tc.level, tc.min, tc.max, err)
			}
			sum := sha256.Sum256(data)
			if fi.SHA256 != hex.EncodeToString(sum[:]) || fi.Size != int64(len(data)) {
				t.Fatalf("write returned sha %s size %d, want %x size %d", fi.SHA256, fi.Size, sum, len(data))
			}
			if !fi.CreatedAt.Equal(ts) {
				t.Fatalf("CreatedAt %v, want the header timestamp %v", fi.CreatedAt, ts)
			}
			if got := readAll(t, c, tc.level, tc.min, tc.max); !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes differ from the %d written", len(got), len(data))
			}
		}
	})

	t.Run("HasFiles", func(t *testing.T) {
		c := b.New(t)
		ec, ok := c.(storage.EmptyChecker)
		if !ok {
			t.Skip("backend does not implement storage.EmptyChecker")
		}
		check := func(c storage.Client, want bool) {
			t.Helper()
			has, err := c.(storage.EmptyChecker).HasFiles(ctx)
			if err != nil || has != want {
				t.Fatalf("HasFiles of %s = %v, %v; want %v", c, has, err, want)
			}
		}
		check(ec.(storage.Client), false)
		write(t, c.Sub("t1/app"), 3, 1, 5, ts)
		check(c.Sub("t1/app"), true)
		check(c.Sub("t2/app"), false)
	})

	t.Run("ListingBound", func(t *testing.T) {
		// A level longer than MaxListedFiles: Collect refuses it, batches
		// and Newest still see it in order and whole.
		c := b.New(t)
		defer func(n int) { storage.MaxListedFiles = n }(storage.MaxListedFiles)
		storage.MaxListedFiles = 4
		for txid := ltx.TXID(1); txid <= 7; txid++ {
			write(t, c, 0, txid, txid, ts)
		}
		it, err := c.LTXFiles(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if files, err := storage.Collect(it); !errors.Is(err, storage.ErrTooManyFiles) {
			t.Fatalf("Collect of 7 files with MaxListedFiles 4 = %d files, %v; want ErrTooManyFiles", len(files), err)
		}
		if it, err = c.LTXFiles(ctx, 0, 2); err != nil {
			t.Fatal(err)
		}
		files, more, err := storage.CollectFirst(it, 3)
		if err != nil || !more || len(files) != 3 || files[0].MinTXID != 3 || files[2].MinTXID != 5 {
			t.Fatalf("CollectFirst(3) after TXID 2 = %v, more %v, %v; want 3-5 and more", files, more, err)
		}
		if it, err = c.LTXFiles(ctx, 0, 0); err != nil {
			t.Fatal(err)
		}
		newest, err := storage.Newest(it)
		if err != nil || newest == nil || newest.MaxTXID != 7 {
			t.Fatalf("Newest = %v, %v; want TXID 7 past the listing bound", newest, err)
		}
		if it, err = c.LTXFiles(ctx, 0, 3); err != nil {
			t.Fatal(err)
		}
		if files, err := storage.Collect(it); err != nil || len(files) != 4 {
			t.Fatalf("Collect of the 4 files after TXID 3 = %d, %v; want all 4", len(files), err)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		c := b.New(t)
		if _, err := c.OpenLTXFile(ctx, 0, 1, 1); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("OpenLTXFile of a missing file: %v, want ErrNotFound", err)
		}
		if rc, err := c.OpenLTXRange(ctx, 0, 1, 1, 0, 10); !errors.Is(err, storage.ErrNotFound) {
			if rc != nil {
				rc.Close()
			}
			t.Fatalf("OpenLTXRange of a missing file: %v, want ErrNotFound", err)
		}
		files := list(t, c, 0, 0)
		if len(files) != 0 {
			t.Fatalf("empty replica lists %d files", len(files))
		}
	})

	t.Run("InvalidInputStoresNothing", func(t *testing.T) {
		c := b.New(t)
		data := LTX(t, 5, 5, 1, 4096, ts, false)
		if _, err := c.WriteLTXFile(ctx, 0, 5, 6, bytes.NewReader(data)); err == nil {
			t.Fatal("a file whose header says 5-5 was stored as 5-6")
		}
		if _, err := c.WriteLTXFile(ctx, 0, 7, 7, bytes.NewReader([]byte("not an LTX file at all"))); err == nil {
			t.Fatal("garbage was stored as an LTX file")
		}
		if _, err := c.WriteLTXFile(ctx, 0, 7, 7, bytes.NewReader(data[:len(data)-5])); err == nil {
			t.Fatal("a truncated LTX file was stored")
		}
		if _, err := c.WriteLTXFile(ctx, 10, 5, 5, bytes.NewReader(data)); err == nil {
			t.Fatal("level 10 was accepted")
		}
		if _, err := c.WriteLTXFile(ctx, 0, 6, 5, bytes.NewReader(data)); err == nil {
			t.Fatal("an inverted TXID range was accepted")
		}
		if files := list(t, c, 0, 0); len(files) != 0 {
			t.Fatalf("rejected writes left %d files: %v", len(files), files)
		}
	})

	t.Run("ListOrderAfterAndIsolation", func(t *testing.T) {
		c := b.New(t)
		a, ab := c.Sub("a"), c.Sub("ab")
		ranges := [][2]ltx.TXID{{1, 1}, {2, 2}, {3, 5}, {6, 6}, {7, 10}, {11, 11}, {12, 12}}
		for _, i := range rand.Perm(len(ranges)) {
			r := ranges[i]
			write(t, a, 0, r[0], r[1], ts)
		}
		write(t, a, 1, 1, 10, ts)
		write(t, ab, 0, 100, 100, ts)

		got := list(t, a, 0, 0)
		if len(got) != len(ranges) {
			t.Fatalf("listed %d files, want %d: %v", len(got), len(ranges), got)
		}
		for i, fi := range got {
			if fi.Level != 0 || fi.MinTXID != ranges[i][0] || fi.MaxTXID != ranges[i][1] {
				t.Fatalf("file %d is %v, want L0 %d-%d", i, fi, ranges[i][0], ranges[i][1])
			}
			if fi.Size <= 0 {
				t.Fatalf("file %v has size %d", fi, fi.Size)
			}
		}
		after := list(t, a, 0, 6)
		if len(after) != 3 || after[0].MinTXID != 7 {
			t.Fatalf("listing after TXID 6 gave %v, want the files from 7", after)
		}
		if got := list(t, a, 0, 12); len(got) != 0 {
			t.Fatalf("listing after the last TXID gave %v", got)
		}
		if got := list(t, a, 1, 0); len(got) != 1 || got[0].MaxTXID != 10 {
			t.Fatalf("level 1 lists %v", got)
		}
		if got := list(t, ab, 0, 0); len(got) != 1 || got[0].MinTXID != 100 {
			t.Fatalf("sibling sub-path lists %v", got)
		}
	})

	t.Run("PagingConcurrentWriters", func(t *testing.T) {
		c := b.New(t)
		const n = 1050
		files := make([][]byte, n)
		for i := range files {
			files[i] = LTX(t, ltx.TXID(i+1), ltx.TXID(i+1), 1, 512, ts, false)
		}
		jobs := make(chan int)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					txid := ltx.TXID(i + 1)
					if _, err := c.WriteLTXFile(ctx, 2, txid, txid, bytes.NewReader(files[i])); err != nil {
						errs <- err
					}
				}
			}()
		}
		for i := 0; i < n; i++ {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got := list(t, c, 2, 0)
		if len(got) != n {
			t.Fatalf("listed %d files, want %d", len(got), n)
		}
		for i, fi := range got {
			if fi.MinTXID != ltx.TXID(i+1) {
				t.Fatalf("file %d has TXID %s: listing out of order or with gaps", i, fi.MinTXID)
			}
		}
		if got := list(t, c, 2, 1000); len(got) != 50 || got[0].MinTXID != 1001 {
			t.Fatalf("listing after 1000 gave %d files starting %v", len(got), first(got))
		}
	})

	t.Run("SameFileConcurrently", func(t *testing.T) {
		c := b.New(t)
		data := LTX(t, 4, 4, 2, 4096, ts, true)
		var wg sync.WaitGroup
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.WriteLTXFile(ctx, 0, 4, 4, bytes.NewReader(data)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if got := readAll(t, c, 0, 4, 4); !bytes.Equal(got, data) {
			t.Fatal("concurrent writes of one file left different bytes")
		}
	})

	t.Run("NeverReplaces", func(t *testing.T) {
		c := b.New(t)
		mine := LTX(t, 5, 5, 2, 4096, ts, true)
		theirs := LTX(t, 5, 5, 3, 4096, ts.Add(time.Second), true)
		write2(t, c, 0, 5, 5, mine)
		_, err := c.WriteLTXFile(ctx, 0, 5, 5, bytes.NewReader(theirs))
		if !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("a second writer's L0 file over an existing one: %v, want ErrConflict", err)
		}
		var ce *storage.ConflictError
		if !errors.As(err, &ce) || ce.Other.SHA256 != sha256Hex(mine) || ce.Other.Size != int64(len(mine)) {
			t.Fatalf("the conflict does not describe the object in place (sha256 %s, size %d): %#v", sha256Hex(mine), len(mine), ce)
		}
		if got := readAll(t, c, 0, 5, 5); !bytes.Equal(got, mine) {
			t.Fatal("the L0 file in place was replaced")
		}
		// Levels 1-9: the file in place is kept and described.
		for _, level := range []int{1, 3, 9} {
			write2(t, c, level, 1, 5, LTX(t, 1, 5, 2, 4096, ts, true))
			first := readAll(t, c, level, 1, 5)
			other := LTX(t, 1, 5, 4, 4096, ts.Add(time.Minute), true)
			fi, err := c.WriteLTXFile(ctx, level, 1, 5, bytes.NewReader(other))
			if err != nil {
				t.Fatalf("L%d: writing the same TXIDs again with other bytes: %v, want the existing file kept", level, err)
			}
			if fi.SHA256 != sha256Hex(first) || fi.Size != int64(len(first)) || !fi.CreatedAt.Equal(ts) {
				t.Fatalf("L%d: returned %+v, want the file in place (sha256 %s, size %d, created %v)", level, fi, sha256Hex(first), len(first), ts)
			}
			if got := readAll(t, c, level, 1, 5); !bytes.Equal(got, first) {
				t.Fatalf("L%d: the file in place was replaced", level)
			}
		}
		// A corrupt file in place at levels 1-9 is not replaced either;
		// the write fails naming it.
		write2(t, c, 2, 6, 9, LTX(t, 6, 9, 2, 4096, ts, true))
		bad := LTX(t, 6, 9, 2, 4096, ts, true)
		bad[ltx.HeaderSize+40] ^= 1
		b.Replace(t, c, 2, 6, 9, bad, false)
		if _, err := c.WriteLTXFile(ctx, 2, 6, 9, bytes.NewReader(LTX(t, 6, 9, 3, 4096, ts, true))); !storage.IsCorrupt(err) {
			t.Fatalf("writing over a corrupt L2 file: %v, want the CorruptError of the file in place", err)
		}
	})

	t.Run("SameBytesRetry", func(t *testing.T) {
		c := b.New(t)
		for _, level := range []int{0, 1, 9} {
			data := LTX(t, 1, 7, 2, 4096, ts, true)
			fi1, err := c.WriteLTXFile(ctx, level, 1, 7, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			// Our own write landed but its answer was lost: the retry
			// succeeds with the same description.
			fi2, err := c.WriteLTXFile(ctx, level, 1, 7, bytes.NewReader(data))
			if err != nil {
				t.Fatalf("L%d: retrying a write that landed: %v", level, err)
			}
			if *fi1 != *fi2 {
				t.Fatalf("L%d: retry returned %+v, the first write %+v", level, fi2, fi1)
			}
		}
	})

	t.Run("ConcurrentCreatorsOneWins", func(t *testing.T) {
		c := b.New(t)
		const n = 6
		datas := make([][]byte, n)
		for i := range datas {
			datas[i] = LTX(t, 8, 8, 1+i, 4096, ts.Add(time.Duration(i)*time.Second), true)
		}
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range datas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = c.WriteLTXFile(ctx, 0, 8, 8, bytes.NewReader(datas[i]))
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("writers %d and %d both created L0 8-8", winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, storage.ErrConflict):
				t.Fatalf("writer %d: %v, want success or ErrConflict", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no writer created L0 8-8")
		}
		if got := readAll(t, c, 0, 8, 8); !bytes.Equal(got, datas[winner]) {
			t.Fatal("the stored file is not the one whose write succeeded")
		}
	})

	t.Run("RangeRead", func(t *testing.T) {
		c := b.New(t)
		data := LTX(t, 1, 1, 4, 4096, ts, true)
		write2(t, c, 9, 1, 1, data)
		for _, r := range [][2]int64{{0, 100}, {100, 1}, {int64(len(data)) - 16, 16}, {50, 0}} {
			rc, err := c.OpenLTXRange(ctx, 9, 1, 1, r[0], r[1])
			if err != nil {
				t.Fatalf("range %v: %v", r, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			want := data[r[0]:]
			if r[1] > 0 {
				want = want[:r[1]]
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("range %v: got %d bytes, not the %d expected", r, len(got), len(want))
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		c := b.New(t)
		for i := ltx.TXID(1); i <= 5; i++ {
			write(t, c, 0, i, i, ts)
		}
		del := []*storage.FileInfo{
			{Level: 0, MinTXID: 2, MaxTXID: 2}, {Level: 0, MinTXID: 4, MaxTXID: 4},
			{Level: 0, MinTXID: 99, MaxTXID: 99}, // never existed
		}
		if err := c.DeleteLTXFiles(ctx, del); err != nil {
			t.Fatal(err)
		}
		got := list(t, c, 0, 0)
		if len(got) != 3 || got[0].MinTXID != 1 || got[1].MinTXID != 3 || got[2].MinTXID != 5 {
			t.Fatalf("after delete: %v", got)
		}
		if _, err := c.OpenLTXFile(ctx, 0, 2, 2); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("deleted file opens: %v", err)
		}
		if err := c.DeleteLTXFiles(ctx, del); err != nil {
			t.Fatalf("deleting again: %v", err)
		}
	})

	t.Run("CorruptionDetected", func(t *testing.T) {
		c := b.New(t)
		data := LTX(t, 1, 1, 8, 4096, ts, true)
		cases := map[string]func([]byte) []byte{
			"flipped byte in a page": func(d []byte) []byte { d[ltx.HeaderSize+40] ^= 0x40; return d },
			"flipped byte in header": func(d []byte) []byte { d[13] ^= 1; return d },
			"flipped trailer":        func(d []byte) []byte { d[len(d)-1] ^= 1; return d },
			"truncated by half":      func(d []byte) []byte { return d[:len(d)/2] },
			"truncated to header":    func(d []byte) []byte { return d[:ltx.HeaderSize] },
			"appended garbage":       func(d []byte) []byte { return append(d, 1, 2, 3) },
			"empty":                  func(d []byte) []byte { return nil },
		}
		// Every cut point near the end exercises the decoder's known panic.
		for cut := 1; cut <= 40; cut++ {
			cut := cut
			cases[fmt.Sprintf("cut %d from the end", cut)] = func(d []byte) []byte { return d[:len(d)-cut] }
		}
		for name, mutate := range cases {
			for _, keepSHA := range []bool{true, false} {
				// A write never replaces an object, a corrupt one
				// included: start each case from none.
				if err := c.DeleteLTXFiles(ctx, []*storage.FileInfo{{Level: 9, MinTXID: 1, MaxTXID: 1}}); err != nil {
					t.Fatal(err)
				}
				write2(t, c, 9, 1, 1, data)
				bad := mutate(bytes.Clone(data))
				b.Replace(t, c, 9, 1, 1, bad, keepSHA)
				rc, err := c.OpenLTXFile(ctx, 9, 1, 1)
				if err == nil {
					rc.Close()
					t.Fatalf("%s (keepSHA=%v): corrupt file was handed out", name, keepSHA)
				}
				if !storage.IsCorrupt(err) {
					t.Fatalf("%s (keepSHA=%v): error %v is not a CorruptError", name, keepSHA, err)
				}
			}
		}
		// And a valid replacement without a SHA-256 (Litestream's) is accepted.
		other := LTX(t, 1, 1, 8, 4096, ts.Add(time.Second), false)
		b.Replace(t, c, 9, 1, 1, other, false)
		if got := readAll(t, c, 9, 1, 1); !bytes.Equal(got, other) {
			t.Fatal("a valid file without a SHA-256 was not read back")
		}
	})
}

func write(t *testing.T, c storage.Client, level int, minTXID, maxTXID ltx.TXID, ts time.Time) {
	t.Helper()
	write2(t, c, level, minTXID, maxTXID, LTX(t, minTXID, maxTXID, 1, 512, ts, false))
}

func write2(t *testing.T, c storage.Client, level int, minTXID, maxTXID ltx.TXID, data []byte) {
	t.Helper()
	if _, err := c.WriteLTXFile(context.Background(), level, minTXID, maxTXID, bytes.NewReader(data)); err != nil {
		t.Fatalf("write L%d %d-%d: %v", level, minTXID, maxTXID, err)
	}
}

func readAll(t *testing.T, c storage.Client, level int, minTXID, maxTXID ltx.TXID) []byte {
	t.Helper()
	rc, err := c.OpenLTXFile(context.Background(), level, minTXID, maxTXID)
	if err != nil {
		t.Fatalf("open L%d %d-%d: %v", level, minTXID, maxTXID, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func list(t *testing.T, c storage.Client, level int, after ltx.TXID) []*storage.FileInfo {
	t.Helper()
	it, err := c.LTXFiles(context.Background(), level, after)
	if err != nil {
		t.Fatal(err)
	}
	files, err := storage.Collect(it)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// LTXSums maps every LTX file below dir (a file replica, or an S3 server's
// directory of a replica's prefix) to the hex SHA-256 of its bytes: taken
// over time, it shows whether an object was ever replaced. Files deleted
// while it walks are skipped.
func LTXSums(dir string) map[string]string {
	sums := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if _, _, err := ltx.ParseFilename(d.Name()); err != nil {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil {
			sums[p] = sha256Hex(b)
		}
		return nil
	})
	return sums
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func first(a []*storage.FileInfo) *storage.FileInfo {
	if len(a) == 0 {
		return nil
	}
	return a[0]
}

// HugeCommitSnapshot is issue 20's hostile object: a snapshot whose only
// page is a real page 1 (a SQLite header) claiming commit pages of 4 KiB,
// every checksum correct. Restored as it claims, 4294967295 pages make a
// 16 TiB file.
func HugeCommitSnapshot(t testing.TB, commit uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: commit,
		MinTXID: 1, MaxTXID: 1, Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 4096)
	copy(page, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(page[16:], 4096)
	page[18], page[19], page[20], page[21], page[22], page[23] = 2, 2, 0, 64, 32, 32
	binary.BigEndian.PutUint32(page[28:], commit)
	for i := 100; i < 300; i++ {
		page[i] = byte(i * 7)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 1}, page); err != nil {
		t.Fatal(err)
	}
	enc.SetPostApplyChecksum(ltx.ChecksumFlag | ltx.ChecksumPage(1, page))
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
