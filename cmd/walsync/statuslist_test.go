package main

// status and list describe the same replica in the same words: the replica
// name, the time of a TXID, and what the first sync wrote (issue 21).

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tableRow returns the row of a tabwriter table in out whose column key
// equals value, by header: cells are separated by two spaces or more, and
// headers hold single spaces only ("LATEST TIME (UTC)").
func tableRow(t *testing.T, out, key, value string) map[string]string {
	t.Helper()
	sep := regexp.MustCompile(`\s{2,}`)
	var header []string
	for _, line := range strings.Split(out, "\n") {
		cells := sep.Split(strings.TrimSpace(line), -1)
		if header == nil {
			for _, c := range cells {
				if c == key {
					header = cells
				}
			}
			continue
		}
		row := map[string]string{}
		for i, c := range cells {
			if i < len(header) {
				row[header[i]] = c
			}
		}
		if row[key] == value {
			return row
		}
	}
	t.Fatalf("no row with %s %q in\n%s", key, value, out)
	return nil
}

// TestStatusAndListAgree: after watch syncs a database, status shows its
// replica name, and for its TXID the same LATEST TIME (UTC) that list
// shows for that TXID (the LTX header's), with CHECKED a separate column;
// the log calls the first sync what list counts it as, an L0 full image.
func TestStatusAndListAgree(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "cli", "wal.db")
	walDB(t, dbPath, 3)
	rep := filepath.Join(dir, "rep")
	addr, stderr := startWatch(t, 0, dbPath, "-b", rep, "--sync-interval", "100ms")
	deadline := time.Now().Add(15 * time.Second)
	var st struct {
		DBs []map[string]any `json:"dbs"`
	}
	for {
		code, out, _ := cli(t, "status", "--addr", addr, "--json")
		if code == 0 && json.Unmarshal([]byte(out), &st) == nil && len(st.DBs) == 1 &&
			st.DBs[0]["txid"].(float64) >= 1 && st.DBs[0]["pending"] == false {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch did not sync within 15 s: status %d %s\n%s", code, out, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	if st.DBs[0]["name"] != "cli/wal" {
		t.Errorf("status --json: name %v, want cli/wal: %v", st.DBs[0]["name"], st.DBs[0])
	}
	code, out, errOut := cli(t, "status", "--addr", addr)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	status := tableRow(t, out, "NAME", "cli/wal")
	code, out, errOut = cli(t, "list", "-b", rep)
	if code != 0 {
		t.Fatalf("list: exit %d\n%s%s", code, out, errOut)
	}
	list := tableRow(t, out, "NAME", "cli/wal")
	if status["TXID"] != list["LATEST TXID"] {
		t.Fatalf("status TXID %s, list LATEST TXID %s: the test needs one TXID", status["TXID"], list["LATEST TXID"])
	}
	if status["LATEST TIME (UTC)"] == "" || status["LATEST TIME (UTC)"] != list["LATEST TIME (UTC)"] {
		t.Errorf("TXID %s: status LATEST TIME (UTC) %q, list %q\nstatus: %v\nlist: %v",
			list["LATEST TXID"], status["LATEST TIME (UTC)"], list["LATEST TIME (UTC)"], status, list)
	}
	checked, err1 := time.Parse(time.RFC3339, status["CHECKED (UTC)"])
	latest, err2 := time.Parse(time.RFC3339, status["LATEST TIME (UTC)"])
	if err1 != nil || err2 != nil || checked.Before(latest) {
		t.Errorf("status CHECKED (UTC) %q: want its own column, at or after LATEST TIME (UTC) %q", status["CHECKED (UTC)"], status["LATEST TIME (UTC)"])
	}

	// The first sync is an L0 full image, and the log says so: list
	// counts no L9 snapshot for it.
	logs := stderr.String()
	if !strings.Contains(logs, "writing the first full image (L0)") || strings.Contains(logs, "first snapshot") {
		t.Errorf("the log does not call the first sync an L0 full image:\n%s", logs)
	}
	if list["L9 SNAPSHOTS"] != "0" || !strings.HasPrefix(list["STORED BYTES BY LEVEL"], "L0 ") {
		t.Errorf("list: L9 SNAPSHOTS %q, levels %q; want 0 and the image at L0", list["L9 SNAPSHOTS"], list["STORED BYTES BY LEVEL"])
	}
}

// startWatch runs walsync watch args in this process, serving status on a
// free address that it returns with watch's stderr. The watch stops when
// the test ends; it must then exit with status want.
func startWatch(t *testing.T, want int, args ...string) (string, *syncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"watch", "--addr", addr}, args...), &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != want {
			t.Errorf("watch: exit %d, want %d\n%s", code, want, stderr.String())
		}
	})
	return addr, &stderr
}
