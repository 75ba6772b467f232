package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/walsync/walsync/storage/s3"
)

// expandEnv expands ${VAR} and $VAR throughout text with os.Expand's rules,
// as Litestream does before parsing (an unset variable becomes ""; there is
// no escape for a literal $). It warns about each unset variable outside
// comments, naming it and its line. The text is expanded line by line so
// that line numbers stay those of the file.
func expandEnv(text, file string, env func(string) (string, bool)) (string, []Warning) {
	var warns []Warning
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		if !strings.Contains(line, "$") {
			continue
		}
		// Expand the whole line, as Litestream expands the whole text; look
		// for unset variables in its code part only.
		code, _ := splitComment(line)
		// A line that sets a credential, or holds a URL with one (a "$"
		// in its password), never names what follows a "$".
		secret := credentialRE.MatchString(code) || s3.RedactUserinfo(code) != code
		os.Expand(code, func(name string) string {
			if _, ok := env(name); ok {
				return ""
			}
			msg := unsetMessage(name)
			if secret && !strings.Contains(code, "${"+name+"}") {
				// "$x" inside a credential is more likely part of the
				// secret than a reference: do not repeat it.
				msg = "a $ in a credential on this line expands to an empty string, as in Litestream (a literal $ cannot be written in the config; pass the value in an environment variable)"
			}
			warns = append(warns, Warning{File: file, Line: i + 1, Message: msg})
			return ""
		})
		lines[i] = os.Expand(line, func(name string) string {
			v, _ := env(name)
			return v
		})
	}
	return strings.Join(lines, "\n"), warns
}

// credentialRE matches a line that sets a credential.
var credentialRE = regexp.MustCompile(`(?i)(access-key-id|secret-access-key|password|token|sse-customer-key|account-key|seed|nkey|jwt)\s*:`)

func unsetMessage(name string) string {
	if len(name) == 1 && strings.ContainsAny(name, "*#$@!?-0123456789") {
		return fmt.Sprintf("$%s expands to an empty string, as in Litestream (a literal $ cannot be written in the config; pass the value in an environment variable)", name)
	}
	return fmt.Sprintf("environment variable %s is not set; it expands to an empty string", name)
}

// splitComment splits a YAML line before the # that starts its comment: a
// # at the start or after a blank, outside quotes. Block scalars are not
// recognised; the split only decides which unset variables to warn about.
func splitComment(line string) (code, comment string) {
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote == '"' && c == '\\':
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			if i == 0 || strings.IndexByte(" \t:[{,-", line[i-1]) >= 0 {
				quote = c
			}
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return line[:i], line[i:]
		}
	}
	return line, ""
}
