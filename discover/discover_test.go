package discover

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func write(t *testing.T, path string, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

const header = "SQLite format 3\x00 and the rest of a page"

func TestScanAndMatch(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.db"), header)
	write(t, filepath.Join(dir, "a.db-wal"), header)
	write(t, filepath.Join(dir, "notes.db"), "not a database")
	write(t, filepath.Join(dir, "empty.db"), "")
	write(t, filepath.Join(dir, "t1", "app.db"), header)
	write(t, filepath.Join(dir, "t1", "deep", "app.db"), header)
	write(t, filepath.Join(dir, "t1", "app.sqlite"), header)

	flat, err := Source{Dir: dir}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	dbs, dirs, _, err := flat.Scan(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "a.db")}; !slices.Equal(dbs, want) || len(dirs) != 1 {
		t.Fatalf("flat scan: dbs %v dirs %v, want %v and the one directory", dbs, dirs, want)
	}

	rec, _ := Source{Dir: dir, Recursive: true}.Normalize()
	dbs, dirs, _, err = rec.Scan(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a.db"), filepath.Join(dir, "t1", "app.db"), filepath.Join(dir, "t1", "deep", "app.db")}
	if !slices.Equal(dbs, want) || len(dirs) != 3 {
		t.Fatalf("recursive scan: dbs %v dirs %v, want %v and 3 directories", dbs, dirs, want)
	}
	// A known path is listed without opening it (here: it could not be).
	known := filepath.Join(dir, "t1", "known.db")
	write(t, known, "")
	dbs, _, _, _ = rec.Scan(func(p string) bool { return p == known })
	if !slices.Contains(dbs, known) {
		t.Fatal("a known database was not listed")
	}

	for p, wantName := range map[string]string{
		filepath.Join(dir, "t1", "deep", "app.db"): "t1/deep/app.db",
		filepath.Join(dir, "t1", "app.db-wal"):     "",
		filepath.Join(dir, "t1", "app.sqlite"):     "",
		filepath.Join(dir, "..", "x.db"):           "",
	} {
		name, ok := rec.Match(p)
		if ok != (wantName != "") || name != wantName {
			t.Errorf("Match(%s) = %q, %v; want %q", p, name, ok, wantName)
		}
	}
	if _, ok := flat.Match(filepath.Join(dir, "t1", "app.db")); ok {
		t.Error("a non-recursive source matched a database in a subdirectory")
	}
	if !rec.WatchesDir(filepath.Join(dir, "t1", "deep")) || flat.WatchesDir(filepath.Join(dir, "t1")) || rec.WatchesDir(filepath.Dir(dir)) {
		t.Error("WatchesDir is wrong")
	}
	if _, err := (Source{Dir: dir, Pattern: "[x"}).Normalize(); err == nil {
		t.Error("an invalid glob was accepted")
	}
	if _, _, _, err := (Source{Dir: filepath.Join(dir, "a.db")}).Scan(nil); err == nil {
		t.Error("scanning a file as a directory did not fail")
	}
}
