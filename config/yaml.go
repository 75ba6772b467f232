package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/walsync/walsync/internal/suggest"
)

// parser walks the YAML tree, collecting warnings and errors.
type parser struct {
	file  string
	warns []Warning
	errs  []error
}

func (p *parser) warnf(n *yaml.Node, key, format string, args ...any) {
	p.warns = append(p.warns, Warning{File: p.file, Line: line(n), Key: key, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) errorf(n *yaml.Node, key, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line(n), Key: key, Message: fmt.Sprintf(format, args...)})
}

func line(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Line
}

// field is one key of a mapping.
type field struct {
	name string
	key  *yaml.Node // the key, for its line
	val  *yaml.Node // the value, aliases resolved; nil for a null value
	path string     // the dotted key path
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fields returns the keys of mapping n in file order, with merge keys
// ("<<: *anchor") applied and a warning for a key given twice (the last
// wins, as in Litestream). It reports an error and returns nil if n is not
// a mapping.
func (p *parser) fields(n *yaml.Node, path string) []field {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "key %s: expected a mapping of keys to values, got %s", path, describe(n))
		return nil
	}
	var own, merged []field
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if k.Tag == "!!merge" {
			merged = append(merged, p.merge(v, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, path, "%s: a key must be a plain word", orTop(path))
			continue
		}
		f := field{name: k.Value, key: k, val: v, path: join(path, k.Value)}
		if isNull(v) {
			f.val = nil
		}
		if j, ok := seen[f.name]; ok {
			p.warnf(k, f.path, "key %s is given twice (also on line %d); the last one is used", f.path, own[j].key.Line)
			own[j] = f
			continue
		}
		seen[f.name] = len(own)
		own = append(own, f)
	}
	for _, f := range merged {
		if _, ok := seen[f.name]; !ok {
			seen[f.name] = len(own)
			own = append(own, f)
		}
	}
	return own
}

// merge returns the fields a merge key brings in: a mapping or a list of
// them, earlier ones winning.
func (p *parser) merge(v *yaml.Node, path string) []field {
	if v.Kind == yaml.SequenceNode {
		var out []field
		seen := map[string]bool{}
		for _, m := range v.Content {
			for _, f := range p.merge(resolve(m), path) {
				if !seen[f.name] {
					seen[f.name] = true
					out = append(out, f)
				}
			}
		}
		return out
	}
	return p.fields(v, path)
}

func orTop(path string) string {
	if path == "" {
		return "top level"
	}
	return "key " + path
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "nothing"
}

// schema describes the keys of one mapping.
type schema struct {
	// keys maps each supported key to its handler.
	keys map[string]func(f field)
	// unsupported maps keys of Litestream's schema that walsync does not
	// implement to a hint ("" for none); they are ignored with a warning.
	unsupported map[string]string
	// refused maps keys whose omission would be unsafe to the error's
	// explanation.
	refused map[string]string
	// elsewhere maps keys that belong in another block to that block.
	elsewhere map[string]string
}

// walk calls the handler of each supported key of mapping n and warns
// about the rest.
func (p *parser) walk(n *yaml.Node, path string, s schema) {
	for _, f := range p.fields(n, path) {
		if h, ok := s.keys[f.name]; ok {
			if f.val != nil {
				h(f)
			}
			continue
		}
		if why, ok := s.refused[f.name]; ok {
			p.errorf(f.key, f.path, "key %s is not supported by walsync: %s", f.path, why)
			continue
		}
		if hint, ok := s.unsupported[f.name]; ok {
			msg := "key " + f.path + " is not supported by walsync; ignored"
			if hint != "" {
				msg += " (" + hint + ")"
			}
			p.warnf(f.key, f.path, "%s", msg)
			continue
		}
		if block, ok := s.elsewhere[f.name]; ok {
			p.warnf(f.key, f.path, "unknown key %s; ignored (did you mean %s?)", f.path, join(block, f.name))
			continue
		}
		msg := "unknown key " + f.path + "; ignored"
		if near := nearest(f.name, s.known()); near != "" {
			msg += " (did you mean " + join(path, near) + "?)"
		}
		p.warnf(f.key, f.path, "%s", msg)
	}
}

func (s schema) known() []string {
	var out []string
	for k := range s.keys {
		out = append(out, k)
	}
	for k := range s.unsupported {
		out = append(out, k)
	}
	for k := range s.refused {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// nearest returns the known key closest to name if it is close enough to
// be a typo of it.
func nearest(name string, known []string) string {
	best, bestD := "", 0
	for _, k := range known {
		d := suggest.Distance(strings.ToLower(name), k)
		if best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	limit := 2
	if len(name) <= 4 {
		limit = 1
	}
	if best == "" || bestD > limit {
		return ""
	}
	return best
}

// Scalar readers. Each reports an error naming the key and returns ok
// false on a bad value. Values are never echoed for keys that may hold a
// credential (str does not echo at all).

func (p *parser) str(f field) (string, bool) {
	if f.val.Kind != yaml.ScalarNode {
		p.errorf(f.val, f.path, "key %s: expected a single value, got %s", f.path, describe(f.val))
		return "", false
	}
	return f.val.Value, true
}

func (p *parser) boolean(f field) (bool, bool) {
	s, ok := p.str(f)
	if !ok {
		return false, false
	}
	// YAML 1.1's words, which Litestream's YAML library accepts.
	switch strings.ToLower(s) {
	case "true", "yes", "y", "on":
		return true, true
	case "false", "no", "n", "off":
		return false, true
	}
	p.errorf(f.val, f.path, "key %s: invalid value %q: expected true or false", f.path, s)
	return false, false
}

func (p *parser) integer(f field, lo int) (*int, bool) {
	s, ok := p.str(f)
	if !ok {
		return nil, false
	}
	n, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
	if err != nil {
		p.errorf(f.val, f.path, "key %s: invalid value %q: expected a whole number", f.path, s)
		return nil, false
	}
	if n < lo {
		p.errorf(f.val, f.path, "key %s: invalid value %d: expected a whole number of at least %d", f.path, n, lo)
		return nil, false
	}
	return &n, true
}

// duration reads a Go duration ("10s", "1h30m"). A plain integer is
// nanoseconds, as in Litestream; one other than 0 is also a warning, as
// it is almost certainly a mistake.
func (p *parser) duration(f field) (*time.Duration, bool) {
	s, ok := p.str(f)
	if !ok {
		return nil, false
	}
	if f.val.Tag == "!!int" {
		n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
		if err == nil {
			d := time.Duration(n)
			if n != 0 {
				p.warnf(f.val, f.path, "key %s: plain number %s is read as %s, as Litestream reads it; write a unit, e.g. %ss", f.path, s, d, s)
			}
			return &d, true
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.errorf(f.val, f.path, "key %s: invalid duration %q: expected a number with a unit, e.g. 500ms, 10s, 5m or 1h", f.path, s)
		return nil, false
	}
	return &d, true
}

// positive reads a duration that must be above zero (or at least zero).
func (p *parser) positive(f field, zeroOK bool) (*time.Duration, bool) {
	d, ok := p.duration(f)
	if !ok {
		return nil, false
	}
	if *d < 0 || (*d == 0 && !zeroOK) {
		want := "greater than 0"
		if zeroOK {
			want = "0 or more"
		}
		p.errorf(f.val, f.path, "key %s: invalid duration %s: must be %s", f.path, *d, want)
		return nil, false
	}
	return d, true
}
