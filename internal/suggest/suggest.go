// Package suggest finds the words closest to a mistyped one, for "did you
// mean" hints: a flag, a command or a replica name.
package suggest

import (
	"slices"
	"strings"
)

// MaxCandidates bounds the candidates Closest compares (each comparison is
// quadratic in the lengths): a replica with more names than this gets no
// suggestion rather than a slow error.
const MaxCandidates = 100_000

// maxLen bounds the length of the strings compared, for the same reason.
const maxLen = 256

// Closest returns at most n of the candidates nearest to word, nearest
// first, compared without regard to case: those within an edit distance of
// a third of word's length (at least 2), or that contain word or its last
// path element. Ties keep the candidates' order.
func Closest(word string, candidates []string, n int) []string {
	if n <= 0 || len(candidates) > MaxCandidates || len(word) > maxLen {
		return nil
	}
	w := strings.ToLower(word)
	base := w[strings.LastIndex(w, "/")+1:]
	limit := max(2, len(w)/3)
	type scored struct {
		s string
		d int
	}
	var found []scored
	for _, c := range candidates {
		if len(c) > maxLen {
			continue
		}
		lc := strings.ToLower(c)
		d := Distance(w, lc)
		switch {
		case d <= limit:
		case base != "" && strings.Contains(lc, base):
			d = limit + 1 + len(lc) - len(base) // after every near miss, shorter first
		default:
			continue
		}
		found = append(found, scored{c, d})
	}
	slices.SortStableFunc(found, func(a, b scored) int { return a.d - b.d })
	out := make([]string, 0, min(n, len(found)))
	for _, f := range found[:min(n, len(found))] {
		out = append(out, f.s)
	}
	return out
}

// Distance is the Levenshtein distance of a and b, in bytes.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
