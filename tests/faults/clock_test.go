package faults_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
)

// TestClockJumps: walsync's process clock cannot be moved here (Go reads
// the vDSO clock directly, so libfaketime cannot reach it, and the system
// clock is not ours to change), so the suite makes what a clock jumping
// back and forth leaves behind: a replica whose LTX timestamps go forward 2
// hours, back 3 hours and forward again as TXIDs grow (re-encoded with the
// ltx library, checksums and SHA-256 intact). Then:
//
//   - restores by TXID of every file give exactly that TXID's state;
//   - restores by time give a consistent state synced at or before the
//     time asked for, or a clear error, and never leave an output file on
//     error;
//   - walsync resumes on that replica (its own clock now behind the
//     newest timestamps), compacts and applies retention every second, and
//     the latest restore still holds every committed transaction.
func TestClockJumps(t *testing.T) {
	r := scenario(t, "resources: clock jumps back and forth (LTX timestamps)")
	for i := 0; i < runs(1, 3); i++ {
		r.run()
		clockJumps(t, r)
		if t.Failed() {
			return
		}
	}
}

func clockJumps(t *testing.T, r *row) {
	ctx := context.Background()
	tg := fileTarget(t)
	o := defaultApp
	o.vacuum = false
	a := newApp(t, t.TempDir(), "app", o)
	a.start()
	p := startWatch(t, tg, nil, a.path, "--sync-interval", "100ms", "--levels", "none")
	time.Sleep(pick(2*time.Second, 5*time.Second))
	a.stop(t)
	waitCaughtUp(t, r, tg, a, time.Minute)
	p.stopClean(t)

	// Restamp L0: quarter 1 as captured, quarter 2 two hours ahead, quarter
	// 3 three hours behind, quarter 4 one hour behind.
	c := file.New(filepath.Join(tg.dir, a.name))
	files, err := listLevel(ctx, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("only %d L0 files", len(files))
	}
	skews := []time.Duration{0, 2 * time.Hour, -3 * time.Hour, -time.Hour}
	stamps := map[ltx.TXID]time.Time{}
	for i, fi := range files {
		skew := skews[i*len(skews)/len(files)]
		ts, err := restamp(ctx, c, fi, skew)
		if err != nil {
			t.Fatalf("restamp %s: %v", fi, err)
		}
		stamps[fi.MaxTXID] = ts
	}
	r.note("%d L0 files restamped with clock jumps of +2h, -3h, +2h", len(files))
	verifyReplica(t, tg, a.name)
	r.restored()

	// By TXID: exact.
	step := max(1, len(files)/6)
	for i := 0; i < len(files); i += step {
		txid := files[i].MaxTXID
		out := filepath.Join(t.TempDir(), "txid.db")
		stdout, stderr, code := cli(t, tg, nil, "restore", a.name, "-o", out, "--txid", fmt.Sprint(uint64(txid)))
		if code != 0 {
			t.Fatalf("restore --txid %d: exit %d\n%s%s", txid, code, stdout, stderr)
		}
		if got := restoredTXID(t, stdout); got != txid {
			t.Fatalf("restore --txid %d restored TXID %d", txid, got)
		}
		if _, err := a.wl.Verify(out); err != nil {
			t.Fatalf("restore --txid %d: %v", txid, err)
		}
		r.restored()
	}
	// By time: each file's own (skewed) time, a millisecond before it, far
	// in the past and far in the future.
	var times []time.Time
	for i := 0; i < len(files); i += step {
		ts := stamps[files[i].MaxTXID]
		times = append(times, ts, ts.Add(-time.Millisecond))
	}
	times = append(times, time.Now().Add(-24*time.Hour), time.Now().Add(24*time.Hour))
	var errs, oks int
	for _, at := range times {
		out := filepath.Join(t.TempDir(), "time.db")
		T := at.UTC().Format(time.RFC3339Nano)
		stdout, stderr, code := cli(t, tg, nil, "restore", a.name, "-o", out, "--timestamp", T)
		if code != 0 {
			if _, err := os.Stat(out); err == nil {
				t.Fatalf("restore --timestamp %s failed and left %s", T, out)
			}
			if !regexp.MustCompile(`nothing to restore at|cannot be reached`).MatchString(stderr) {
				t.Fatalf("restore --timestamp %s: exit %d without a clear reason:\n%s%s", T, code, stdout, stderr)
			}
			errs++
			t.Logf("restore --timestamp %s: %s", T, strings.TrimSpace(stderr))
			continue
		}
		txid := restoredTXID(t, stdout)
		if ts, ok := stamps[txid]; ok && ts.After(at) {
			t.Errorf("restore --timestamp %s restored TXID %d, synced at %s, after the time asked for", T, txid, ts.Format(time.RFC3339Nano))
		}
		if _, err := a.wl.Verify(out); err != nil {
			t.Fatalf("restore --timestamp %s (TXID %d): %v", T, txid, err)
		}
		r.restored()
		oks++
	}
	r.note("time restores over jumping timestamps: %d consistent states, %d clear errors", oks, errs)
	if _, stderr, code := cli(t, tg, nil, "list"); code != 0 {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}

	// walsync resumes with its own (now earlier) clock, compacting and
	// applying retention every second.
	a.start()
	p = startWatch(t, tg, nil, append([]string{a.path}, crashArgs...)...)
	time.Sleep(pick(3*time.Second, 20*time.Second))
	a.stop(t)
	waitCaughtUp(t, r, tg, a, 2*time.Minute)
	p.stopClean(t)
	finalCheck(t, r, tg, a)
}

func listLevel(ctx context.Context, c storage.Client, level int) ([]*storage.FileInfo, error) {
	it, err := c.LTXFiles(ctx, level, 0)
	if err != nil {
		return nil, err
	}
	return storage.Collect(it)
}

// restamp rewrites fi with its header timestamp moved by skew, everything
// else equal, and returns the new timestamp.
func restamp(ctx context.Context, c storage.Client, fi *storage.FileInfo, skew time.Duration) (time.Time, error) {
	rc, err := c.OpenLTXFile(ctx, fi.Level, fi.MinTXID, fi.MaxTXID)
	if err != nil {
		return time.Time{}, err
	}
	defer rc.Close()
	dec := ltx.NewDecoder(bufio.NewReader(rc))
	if err := dec.DecodeHeader(); err != nil {
		return time.Time{}, err
	}
	hdr := dec.Header()
	hdr.Timestamp += skew.Milliseconds()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(func() error {
			enc, err := ltx.NewEncoder(pw)
			if err != nil {
				return err
			}
			if err := enc.EncodeHeader(hdr); err != nil {
				return err
			}
			data := make([]byte, hdr.PageSize)
			for {
				var ph ltx.PageHeader
				if err := dec.DecodePage(&ph, data); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					return err
				}
				if err := enc.EncodePage(ph, data); err != nil {
					return err
				}
			}
			if err := dec.Close(); err != nil {
				return err
			}
			return enc.Close()
		}())
	}()
	// Writes never replace an object: the open reader keeps the old bytes
	// while the object is deleted and written again.
	if err := c.DeleteLTXFiles(ctx, []*storage.FileInfo{fi}); err != nil {
		pr.CloseWithError(err)
		return time.Time{}, err
	}
	if _, err := c.WriteLTXFile(ctx, fi.Level, fi.MinTXID, fi.MaxTXID, pr); err != nil {
		pr.CloseWithError(err)
		return time.Time{}, err
	}
	return time.UnixMilli(hdr.Timestamp).UTC(), nil
}

var restoredRE = regexp.MustCompile(`: TXID (\d+) \(`)

// restoredTXID reads the TXID from restore's "restored … TXID N (time)".
func restoredTXID(t *testing.T, stdout string) ltx.TXID {
	t.Helper()
	m := restoredRE.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("restore printed no TXID: %q", stdout)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return ltx.TXID(n)
}
