package main

import (
	"strings"
	"testing"
)

func TestTermEscaping(t *testing.T) {
	for _, c := range []struct{ in, name, text string }{
		{"t1/app", "t1/app", "t1/app"},
		{"tenant é/app", "tenant é/app", "tenant é/app"},
		{"app\x1b[2J\x1b[31mFAKE-OK", `"app\x1b[2J\x1b[31mFAKE-OK"`, `app\x1b[2J\x1b[31mFAKE-OK`},
		{"a\tb\nc", `"a\tb\nc"`, `a\tb\nc`},
		{"evil\u202etxt.exe", `"evil\u202etxt.exe"`, `evil\u202etxt.exe`}, // right-to-left override
		{"bad\xffutf8", `"bad\xffutf8"`, `bad\xffutf8`},
		{`looks\x1bescaped`, `"looks\\x1bescaped"`, `looks\x1bescaped`},
		{`say "hi"`, `"say \"hi\""`, `say "hi"`},
	} {
		if got := termName(c.in); got != c.name {
			t.Errorf("termName(%q) = %s, want %s", c.in, got, c.name)
		}
		if got := termText(c.in); got != c.text {
			t.Errorf("termText(%q) = %s, want %s", c.in, got, c.text)
		}
		for _, got := range []string{termName(c.in), termText(c.in)} {
			if !plainText(got) || strings.ContainsAny(got, "\x1b\t\n") {
				t.Errorf("%q escapes to %q, which is not plain text", c.in, got)
			}
		}
	}
}
