package config

import (
	"strings"
	"testing"
)

// TestUnsetVariableInURLPassword: a "$" inside a URL's password reads as a
// variable reference, which is unset; the warning says so without naming
// what follows the "$", which is part of the password.
func TestUnsetVariableInURLPassword(t *testing.T) {
	for _, doc := range []string{
		"dbs:\n  - path: /tmp/app.db\n    replica:\n      url: s3://KEYID:pa$Zq7SeKrit@bucket/app\n",
		"dbs:\n  - path: /tmp/app.db\n    replica:\n      url: s3://bucket/app\n      endpoint: http://KEYID:pa$Zq7SeKrit@host:9000\n",
		"addr: u:$Zq7SeKrit@host:9090\ndbs:\n  - path: /tmp/app.db\n    replica:\n      url: s3://bucket/app\n",
	} {
		_, warns, err := Parse([]byte(doc), "walsync.yml", func(string) (string, bool) { return "", false })
		if len(warns) == 0 {
			t.Errorf("no warning about the unset variable in\n%s", doc)
		}
		for _, w := range warns {
			if strings.Contains(w.String(), "Zq7SeKrit") {
				t.Errorf("the warning repeats the password: %s", w)
			}
		}
		if err != nil && strings.Contains(err.Error(), "Zq7SeKrit") {
			t.Errorf("the error repeats the password: %v", err)
		}
	}
}

// TestYAMLErrorHidesCredential: a secret starting with "*" reads as a YAML
// alias; the "unknown anchor" error must not name it.
func TestYAMLErrorHidesCredential(t *testing.T) {
	env := func(k string) (string, bool) { return "*Zq7SeKrit", k == "SECRET" }
	for _, doc := range []string{
		"dbs:\n  - path: /tmp/app.db\n    replica:\n      type: s3\n      bucket: b\n      access-key-id: x\n      secret-access-key: ${SECRET}\n",
		"dbs:\n  - path: /tmp/app.db\n    replica:\n      type: s3\n      bucket: b\n      access-key-id: x\n      secret-access-key: *Zq7SeKrit\n",
	} {
		_, _, err := Parse([]byte(doc), "walsync.yml", env)
		if err == nil || !strings.Contains(err.Error(), "invalid YAML") {
			t.Fatalf("want an invalid-YAML error for\n%s\ngot %v", doc, err)
		}
		if strings.Contains(err.Error(), "Zq7SeKrit") {
			t.Errorf("the YAML error repeats the secret: %v", err)
		}
	}
	// An alias elsewhere is still named.
	_, _, err := Parse([]byte("dbs: *nosuch\n"), "walsync.yml", nil)
	if err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("the YAML error does not name the unknown anchor: %v", err)
	}
}
