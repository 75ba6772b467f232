package fswatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestEvents(t *testing.T) {
	dir := t.TempDir()
	w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(dir); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(dir); err != nil || w.Len() != 1 {
		t.Fatalf("adding a directory twice: %v, %d watches", err, w.Len())
	}
	events := make(chan Event, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func(ev Event) { events <- ev }) }()

	expect := func(name string, op Op) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.Name == name && ev.Op == op && ev.Dir == dir {
					return
				}
			case <-timeout:
				t.Fatalf("no %v event for %q", op, name)
			}
		}
	}
	p := filepath.Join(dir, "app.db")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	expect("app.db", Create)
	f.Write([]byte("x"))
	expect("app.db", Write)
	f.Close()
	expect("app.db", Touch)
	if err := os.Rename(p, p+"2"); err != nil {
		t.Fatal(err)
	}
	expect("app.db", Remove)
	expect("app.db2", Create)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	timeout := time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case ev := <-events:
			found = ev.Name == "sub" && ev.IsDir && ev.Op == Create
		case <-timeout:
			t.Fatal("no event for a new directory")
		}
	}
	sub := filepath.Join(dir, "sub")
	if err := w.Add(sub); err != nil {
		t.Fatal(err)
	}
	os.Remove(sub)
	timeout = time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case ev := <-events:
			found = ev.Dir == sub && ev.Op == DirGone
		case <-timeout:
			t.Fatal("no DirGone for a removed watched directory")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
