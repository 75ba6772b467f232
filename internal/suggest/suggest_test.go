package suggest

import (
	"slices"
	"testing"
)

func TestClosest(t *testing.T) {
	for _, c := range []struct {
		word  string
		cands []string
		want  []string
	}{
		{"timestmp", []string{"txid", "timestamp", "o", "force"}, []string{"timestamp"}},
		{"lsit", []string{"watch", "list", "restore"}, []string{"list"}},
		{"wal", []string{"cli/wal", "t1/app", "other/walrus"}, []string{"cli/wal", "other/walrus"}},
		{"cli/wall", []string{"cli/wal", "t1/app"}, []string{"cli/wal"}},
		{"T1/App", []string{"t1/app"}, []string{"t1/app"}},
		{"zzz", []string{"t1/app"}, []string{}},
	} {
		if got := Closest(c.word, c.cands, 5); !slices.Equal(got, c.want) {
			t.Errorf("Closest(%q, %q) = %q, want %q", c.word, c.cands, got, c.want)
		}
	}
	if got := Closest("a", []string{"b", "c", "d"}, 2); len(got) != 2 {
		t.Errorf("n=2 gave %q", got)
	}
}
