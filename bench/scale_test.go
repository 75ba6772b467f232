package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseScaleCases(t *testing.T) {
	cs, err := parseScaleCases("10x100%, 1000x10%,10000x1%,idle1000,7x50")
	if err != nil {
		t.Fatal(err)
	}
	want := []scaleCase{
		{label: "10x100%", n: 10, writers: 10, pct: 100},
		{label: "1000x10%", n: 1000, writers: 100, pct: 10},
		{label: "10000x1%", n: 10000, writers: 100, pct: 1},
		{label: "idle1000", n: 1000, idle: true},
		{label: "7x50", n: 7, writers: 4, pct: 50},
	}
	if len(cs) != len(want) {
		t.Fatalf("got %d cases", len(cs))
	}
	for i := range want {
		if cs[i] != want[i] {
			t.Errorf("case %d: got %+v, want %+v", i, cs[i], want[i])
		}
	}
	for _, bad := range []string{"", "x10%", "10x0%", "10x101%", "idle", "idlex", "10"} {
		if _, err := parseScaleCases(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestSpread(t *testing.T) {
	writers := map[int]bool{}
	for _, i := range spread(1000, 100, 0) {
		writers[i] = true
	}
	if len(writers) != 100 {
		t.Fatalf("%d writers", len(writers))
	}
	// The watch sample and the untouched sample miss the writers.
	for _, i := range append(spread(1000, 20, 1000/40), spread(1000, 10, 1)...) {
		if writers[i] {
			t.Errorf("%d is a writer", i)
		}
	}
	if got := spread(10, 20, 5); len(got) != 10 || got[0] != 0 {
		t.Errorf("spread(10, 20) = %v", got)
	}
}

func TestCompressLarge(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "a", "big.log")
	small := filepath.Join(dir, "small.log")
	_ = os.MkdirAll(filepath.Dir(big), 0o755)
	if err := os.WriteFile(big, []byte(strings.Repeat("x", 2000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(small, []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	compressLarge(dir, 1000)
	if _, err := os.Stat(big); !os.IsNotExist(err) {
		t.Errorf("big file still there: %v", err)
	}
	if fi, err := os.Stat(big + ".gz"); err != nil || fi.Size() >= 2000 {
		t.Errorf("no smaller .gz: %v", err)
	}
	if _, err := os.Stat(small); err != nil {
		t.Errorf("small file: %v", err)
	}
}

func TestDiffTrees(t *testing.T) {
	a := map[string]fileStamp{"x": {size: 1}, "y": {size: 2}}
	b := map[string]fileStamp{"x": {size: 1}, "y": {size: 3}, "z": {size: 1}}
	if ad, ch, rm := diffTrees(a, b); ad != 1 || ch != 1 || rm != 0 {
		t.Errorf("got %d/%d/%d", ad, ch, rm)
	}
}
