package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/walsync/walsync/storage/s3"
)

// Parse parses a configuration file's contents. name is the file's name,
// for messages. env looks variables up for ${VAR} and $VAR (LookupEnv for
// the process environment); nil disables expansion, like Litestream's
// -no-expand-env. The warnings are returned even when the error is not
// nil; the error joins every invalid setting found (see Error).
func Parse(data []byte, name string, env func(string) (string, bool)) (*Config, []Warning, error) {
	p := &parser{file: name}
	text := string(data)
	if env != nil {
		var warns []Warning
		text, warns = expandEnv(text, name, env)
		p.warns = append(p.warns, warns...)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		if msg := hideCredentialQuotes(err.Error(), text); msg != err.Error() {
			return nil, p.warns, fmt.Errorf("%s: invalid YAML: %s", displayName(name), msg)
		}
		return nil, p.warns, fmt.Errorf("%s: invalid YAML: %w", displayName(name), err)
	}
	cfg := &Config{}
	if len(doc.Content) > 0 && !isNull(resolve(doc.Content[0])) {
		p.top(cfg, doc.Content[0])
	}
	if len(p.errs) > 0 {
		return nil, p.warns, errors.Join(p.errs...)
	}
	return cfg, p.warns, nil
}

// yamlQuoteRE matches what a YAML error quotes from the text: an alias's
// anchor name ("unknown anchor 'x' referenced").
var yamlQuoteRE = regexp.MustCompile(`'[^']+'`)

// hideCredentialQuotes hides each quote of msg, a YAML error, that occurs
// on a line of text setting a credential or holding a URL with one: a
// secret that starts with "*" (written so, or from ${VAR}) reads as an
// alias, and the error would name it.
func hideCredentialQuotes(msg, text string) string {
	var secretLines []string
	for _, line := range strings.Split(text, "\n") {
		if credentialRE.MatchString(line) || s3.RedactUserinfo(line) != line {
			secretLines = append(secretLines, line)
		}
	}
	return yamlQuoteRE.ReplaceAllStringFunc(msg, func(q string) string {
		for _, line := range secretLines {
			if strings.Contains(line, q[1:len(q)-1]) {
				return "'REDACTED'"
			}
		}
		return q
	})
}

func displayName(name string) string {
	if name == "" {
		return "config"
	}
	return name
}

// Keys of Litestream's schema that walsync does not implement. Values are
// hints for the warning.
var (
	// replicaSettingsUnsupported may be given per replica or at the top
	// level as defaults.
	replicaSettingsUnsupported = map[string]string{
		"validation-interval":    "",
		"max-sync-ltx-files":     "",
		"auto-recover":           "",
		"sign-payload":           "",
		"require-content-md5":    "",
		"storage-class":          "",
		"part-size":              "",
		"concurrency":            "",
		"sse-customer-algorithm": "",
		// Settings of replica types walsync does not support.
		"account-name": otherType, "account-key": otherType, "sas-token": otherType,
		"host": otherType, "user": otherType, "password": otherType, "key-path": otherType,
		"concurrent-writes": otherType, "host-key": otherType,
		"webdav-url": otherType, "webdav-username": otherType, "webdav-password": otherType,
		"jwt": otherType, "seed": otherType, "creds": otherType, "nkey": otherType,
		"username": otherType, "token": otherType, "tls": otherType, "root-cas": otherType,
		"client-cert": otherType, "client-key": otherType, "max-reconnects": otherType,
		"reconnect-wait": otherType, "timeout": otherType,
	}
	// replicaSettingsRefused would silently weaken protection if ignored.
	replicaSettingsRefused = map[string]string{
		"sse-customer-key":      sseRefused,
		"sse-customer-key-path": sseRefused,
		"sse-kms-key-id":        sseRefused,
		"age":                   "age encryption is not implemented (Litestream v0.5 refuses it too); remove the age block",
	}
	topUnsupported = map[string]string{
		"socket":                      "",
		"validation":                  "",
		"l0-retention-check-interval": "",
		"verify-compaction":           "walsync verifies with `walsync verify`",
		"heartbeat-url":               "",
		"heartbeat-interval":          "",
		"mcp-addr":                    "",
		"shutdown-sync-timeout":       "",
		"shutdown-sync-interval":      "",
	}
	topRefused = map[string]string{
		"exec": "walsync does not start your application; start it separately (for example as its own service) and remove exec",
	}
	dbUnsupported = map[string]string{
		"meta-path":                 "walsync keeps no per-database state directory",
		"meta-dir":                  "walsync keeps no per-database state directory",
		"monitor-interval":          "see walsync.poll-interval",
		"checkpoint-interval":       "",
		"min-checkpoint-page-count": "",
		"max-checkpoint-page-count": "",
		"truncate-page-n":           "",
		"max-sync-wal-bytes":        "",
		"busy-timeout":              "",
	}
	dbRefused = map[string]string{
		"restore-if-db-not-exists": "run `walsync restore` before starting the application instead; ignoring it would start the application on an empty database",
	}
	replicaUnsupported = map[string]string{
		"name":                     "",
		"retention":                "Litestream v0.3 key; use the top-level snapshot block",
		"retention-check-interval": "Litestream v0.3 key",
		"snapshot-interval":        "Litestream v0.3 key; use the top-level snapshot block",
	}
	// walsyncKeys are the keys of the walsync block, for the hint when one
	// is written at the top level.
	walsyncKeys = []string{"hot-set", "idle-timeout", "workers", "sweep-interval", "poll-interval", "compact-interval", "gfs", "state-file"}
)

const (
	otherType  = "it applies to a replica type walsync does not support"
	sseRefused = "server-side encryption settings are not implemented, and ignoring them would upload objects without the encryption asked for; remove the key only if that is acceptable"
)

func union(maps ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// top parses the top-level mapping.
func (p *parser) top(cfg *Config, n *yaml.Node) {
	var (
		dbs, defReplica       field
		globals               replicaKeys
		walsyncSync           *time.Duration
		walsyncSyncF, topSync field
	)
	keys := map[string]func(f field){
		"addr": func(f field) {
			s, ok := p.str(f)
			if !ok || s == "" {
				return
			}
			if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
				p.errorf(f.val, f.path, "key addr: invalid address %q: expected host:port or :port, e.g. :9090", s3.RedactUserinfo(s))
				return
			}
			cfg.Addr = s
		},
		"dbs":     func(f field) { dbs = f },
		"logging": func(f field) { p.logging(&cfg.Logging, f) },
		"snapshot": func(f field) {
			p.snapshot(&cfg.Snapshot, f)
		},
		"levels": func(f field) { cfg.Levels = p.levels(f) },
		"l0-retention": func(f field) {
			if d, ok := p.positive(f, true); ok {
				cfg.L0Retention = d
			}
		},
		"retention": func(f field) {
			p.walk(f.val, f.path, schema{keys: map[string]func(field){
				"enabled": func(f field) {
					if b, ok := p.boolean(f); ok {
						cfg.RetentionEnabled = &b
					}
				},
			}})
		},
		"walsync": func(f field) {
			defReplica, walsyncSync, walsyncSyncF = p.walsync(&cfg.Walsync, f)
		},
	}
	for k, h := range p.replicaSettings(&globals) {
		keys[k] = h
	}
	// The top-level sync-interval is the default of every replica.
	keys["sync-interval"] = func(f field) {
		if d, ok := p.positive(f, false); ok {
			globals.syncInterval, topSync = d, f
		}
	}
	elsewhere := map[string]string{}
	for _, k := range walsyncKeys {
		elsewhere[k] = "walsync"
	}
	p.walk(n, "", schema{
		keys:        keys,
		unsupported: union(topUnsupported, replicaSettingsUnsupported),
		refused:     union(topRefused, replicaSettingsRefused),
		elsewhere:   elsewhere,
	})

	switch {
	case walsyncSync != nil && globals.syncInterval != nil && *walsyncSync != *globals.syncInterval:
		p.errorf(walsyncSyncF.val, walsyncSyncF.path, "key walsync.sync-interval (%s) contradicts the top-level sync-interval (%s, line %d); give one of them",
			*walsyncSync, *globals.syncInterval, topSync.val.Line)
	case walsyncSync != nil:
		cfg.Walsync.SyncInterval = walsyncSync
	default:
		cfg.Walsync.SyncInterval = globals.syncInterval
	}

	if defReplica.val != nil {
		cfg.Walsync.Replica = p.replica(defReplica, &globals)
	}
	if dbs.val != nil {
		p.dbs(cfg, dbs, &globals, defReplica.val != nil)
	}
}

func (p *parser) logging(l *Logging, f field) {
	p.walk(f.val, f.path, schema{
		keys: map[string]func(field){
			"level": func(f field) {
				s, ok := p.str(f)
				if !ok {
					return
				}
				switch v := strings.ToLower(s); v {
				case "debug", "info", "warn", "error":
					l.Level = v
				case "warning":
					l.Level = "warn"
				case "trace":
					l.Level = "debug"
					p.warnf(f.val, f.path, "key %s: walsync has no trace level; using debug", f.path)
				default:
					l.Level = "info"
					p.warnf(f.val, f.path, "key %s: unknown level %q; using info, as Litestream does (levels: debug, info, warn, error)", f.path, s)
				}
			},
			"type": func(f field) {
				s, ok := p.str(f)
				if !ok {
					return
				}
				switch v := strings.ToLower(s); v {
				case "text", "json":
					l.Type = v
				case "pretty":
					l.Type = "text"
					p.warnf(f.val, f.path, "key %s: walsync has no pretty logs; using text", f.path)
				default:
					p.errorf(f.val, f.path, "key %s: unknown log type %q: expected text or json", f.path, s)
				}
			},
			"stderr": func(f field) {
				if b, ok := p.boolean(f); ok {
					l.Stderr = b
				}
			},
		},
		unsupported: map[string]string{"source": ""},
	})
}

func (p *parser) snapshot(s *Snapshot, f field) {
	p.walk(f.val, f.path, schema{keys: map[string]func(field){
		"interval": func(f field) {
			if d, ok := p.positive(f, false); ok {
				s.Interval = d
			}
		},
		"retention": func(f field) {
			if d, ok := p.positive(f, false); ok {
				s.Retention = d
			}
		},
	}})
}

func (p *parser) levels(f field) []time.Duration {
	if f.val.Kind != yaml.SequenceNode {
		p.errorf(f.val, f.path, "key levels: expected a list such as [{interval: 30s}, {interval: 5m}], got %s", describe(f.val))
		return nil
	}
	out := []time.Duration{}
	for i, item := range f.val.Content {
		path := fmt.Sprintf("levels[%d]", i)
		var d *time.Duration
		before := len(p.errs)
		p.walk(item, path, schema{keys: map[string]func(field){
			"interval": func(f field) { d, _ = p.positive(f, false) },
		}})
		if d == nil {
			if len(p.errs) == before {
				p.errorf(resolve(item), path, "key %s: a level needs an interval, e.g. {interval: 5m}", path)
			}
			continue
		}
		out = append(out, *d)
	}
	if len(out) > maxLevels {
		p.errorf(f.val, f.path, "key levels: %d levels given; walsync supports at most %d (level 9 holds snapshots)", len(out), maxLevels)
	}
	return out
}

// walsync parses the walsync block; it returns the default replica's node
// and the block's sync-interval, which top reconciles with the top-level one.
func (p *parser) walsync(w *Walsync, f field) (replica field, sync *time.Duration, syncF field) {
	dur := func(dst **time.Duration, zeroOK bool) func(field) {
		return func(f field) {
			if d, ok := p.positive(f, zeroOK); ok {
				*dst = d
			}
		}
	}
	count := func(dst **int) func(field) {
		return func(f field) {
			if n, ok := p.integer(f, 1); ok {
				*dst = n
			}
		}
	}
	p.walk(f.val, f.path, schema{keys: map[string]func(field){
		"hot-set":          count(&w.HotSet),
		"workers":          count(&w.Workers),
		"idle-timeout":     dur(&w.IdleTimeout, false),
		"sweep-interval":   dur(&w.SweepInterval, false),
		"poll-interval":    dur(&w.PollInterval, false),
		"compact-interval": dur(&w.CompactInterval, true),
		"sync-interval": func(f field) {
			if d, ok := p.positive(f, false); ok {
				sync, syncF = d, f
			}
		},
		"gfs":     func(f field) { w.GFS = p.gfs(f) },
		"replica": func(f field) { replica = f },
		"state-file": func(f field) {
			if f.val.Kind != yaml.ScalarNode || f.val.Value == "" {
				p.errorf(f.val, f.path, "key %s: give a file path", f.path)
				return
			}
			w.StateFile = p.localPath(f, f.val.Value)
		},
	}})
	return replica, sync, syncF
}

func (p *parser) gfs(f field) *GFS {
	if f.val.Kind == yaml.ScalarNode {
		b, ok := p.boolean(f)
		if !ok || !b {
			return nil
		}
		return &GFS{}
	}
	g := &GFS{}
	tier := func(dst **int) func(field) {
		return func(f field) {
			if n, ok := p.integer(f, 0); ok {
				*dst = n
			}
		}
	}
	p.walk(f.val, f.path, schema{keys: map[string]func(field){
		"hourly":  tier(&g.Hourly),
		"daily":   tier(&g.Daily),
		"weekly":  tier(&g.Weekly),
		"monthly": tier(&g.Monthly),
	}})
	return g
}

// dbs parses the dbs list.
func (p *parser) dbs(cfg *Config, f field, globals *replicaKeys, hasDefault bool) {
	n := f.val
	if n.Kind != yaml.SequenceNode {
		p.errorf(f.key, "dbs", "key dbs: expected a list of databases (- path: /path/to/db), got %s", describe(n))
		return
	}
	type snap struct {
		d    time.Duration
		path string
		line int
	}
	var interval, retention *snap
	globalInterval, globalRetention := cfg.Snapshot.Interval != nil, cfg.Snapshot.Retention != nil
	paths := map[string]int{}
	replicas := map[string]int{}
	for i, item := range n.Content {
		path := fmt.Sprintf("dbs[%d]", i)
		item = resolve(item)
		db := DB{Line: item.Line}
		var (
			replicaF, replicasF field
			dbSnap              Snapshot
			patternF, recF      field
			watchF              field
		)
		p.walk(item, path, schema{
			keys: map[string]func(field){
				"path": func(f field) {
					if s, ok := p.str(f); ok && s != "" {
						db.Path = p.localPath(f, stripSQLitePrefix(s))
					}
				},
				"dir": func(f field) {
					if s, ok := p.str(f); ok && s != "" {
						db.Dir = p.localPath(f, s)
					}
				},
				"pattern": func(f field) {
					if s, ok := p.str(f); ok && s != "" {
						if _, err := filepath.Match(s, ""); err != nil {
							p.errorf(f.val, f.path, "key %s: invalid pattern %q: %v", f.path, s, err)
							return
						}
						db.Pattern, patternF = s, f
					}
				},
				"recursive": func(f field) { db.Recursive, _ = p.boolean(f); recF = f },
				"watch":     func(f field) { db.Watch, _ = p.boolean(f); watchF = f },
				"replica":   func(f field) { replicaF = f },
				"replicas":  func(f field) { replicasF = f },
				"snapshot":  func(f field) { p.snapshot(&dbSnap, f) },
			},
			unsupported: dbUnsupported,
			refused:     dbRefused,
		})

		switch {
		case db.Path != "" && db.Dir != "":
			p.errorf(item, path, "%s: give either path (one database) or dir (a directory of databases), not both", path)
		case db.Path == "" && db.Dir == "":
			p.errorf(item, path, "%s: no path or dir: give path: /path/to/app.db or dir: /path/to/dir with pattern: \"*.db\"", path)
		case db.Dir != "" && db.Pattern == "":
			db.Pattern = DefaultPattern
			p.warnf(item, path, "%s: dir without pattern (Litestream requires one); using pattern %q", path, DefaultPattern)
		case db.Path != "":
			if db.Watch {
				p.errorf(watchF.key, watchF.path, "key %s: watch needs dir; it cannot watch a single database path", watchF.path)
			}
			for _, f := range []field{patternF, recF} {
				if f.key != nil {
					p.warnf(f.key, f.path, "key %s has no effect without dir; ignored", f.path)
				}
			}
		}

		given := true // a replica was given, valid or not
		switch {
		case replicaF.val != nil && replicasF.val != nil:
			p.errorf(replicasF.key, replicasF.path, "%s: give replica or replicas, not both", path)
		case replicaF.val != nil:
			db.Replica = p.replica(replicaF, globals)
		case replicasF.val != nil:
			db.Replica, given = p.replicas(replicasF, globals)
		default:
			given = false
		}
		if !given && !hasDefault {
			p.errorf(item, path, "%s: no replica: add replica: {url: s3://bucket/path} (or file:///dir), or a default replica in walsync.replica", path)
		}

		// Two entries must not share a database or a replica.
		if db.Path != "" {
			if l, ok := paths[db.Path]; ok {
				p.errorf(item, path, "%s: database %s is already listed on line %d", path, db.Path, l)
			}
			paths[db.Path] = item.Line
			if db.Replica != nil {
				if id, err := db.Replica.identity(); err == nil {
					if l, ok := replicas[id]; ok {
						p.errorf(item, path, "%s: replica %s is already the replica of the database on line %d; two databases cannot share one", path, db.Replica, l)
					}
					replicas[id] = item.Line
				}
			}
		}

		// A database's snapshot settings apply to all, as in Litestream.
		id := db.Path
		if id == "" {
			id = db.Dir
		}
		hoist := func(dst **snap, d *time.Duration, key string) {
			if d == nil {
				return
			}
			if *dst != nil && (*dst).d != *d {
				p.errorf(item, path+".snapshot."+key, "key %s.snapshot.%s: %s has %s but %s (line %d) has %s; database snapshot settings apply to every database, so they must agree (or set the top-level snapshot block)",
					path, key, id, *d, (*dst).path, (*dst).line, (*dst).d)
				return
			}
			*dst = &snap{d: *d, path: id, line: item.Line}
		}
		hoist(&interval, dbSnap.Interval, "interval")
		hoist(&retention, dbSnap.Retention, "retention")
		cfg.DBs = append(cfg.DBs, db)
	}
	if !globalInterval && interval != nil {
		cfg.Snapshot.Interval = &interval.d
	}
	if !globalRetention && retention != nil {
		cfg.Snapshot.Retention = &retention.d
	}
}

// replicas parses the deprecated replicas list, which may hold one replica.
func (p *parser) replicas(f field, globals *replicaKeys) (r *Replica, given bool) {
	if f.val.Kind != yaml.SequenceNode {
		p.errorf(f.val, f.path, "key %s: expected a list, got %s", f.path, describe(f.val))
		return nil, true
	}
	switch len(f.val.Content) {
	case 0:
		return nil, false
	case 1:
		return p.replica(field{name: "replicas", key: f.key, val: resolve(f.val.Content[0]), path: f.path + "[0]"}, globals), true
	}
	p.errorf(f.key, f.path, "key %s: %d replicas given; a database has one replica (as in Litestream v0.5): keep one", f.path, len(f.val.Content))
	return nil, true
}

// localPath makes a path from the file absolute, expanding a leading "~/".
func (p *parser) localPath(f field, s string) string {
	abs, err := expandPath(s)
	if err != nil {
		p.errorf(f.val, f.path, "key %s: %v", f.path, err)
		return ""
	}
	return abs
}

// expandPath returns the absolute form of s, with a leading "~/" replaced
// by the home directory, as Litestream does.
func expandPath(s string) (string, error) {
	if s == "~" || strings.HasPrefix(s, "~"+string(os.PathSeparator)) {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return "", fmt.Errorf("cannot expand %s: no home directory", s)
		}
		s = filepath.Join(home, strings.TrimPrefix(s[1:], string(os.PathSeparator)))
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", fmt.Errorf("cannot make %s absolute: %w", s, err)
	}
	return abs, nil
}

// stripSQLitePrefix removes a sqlite:// or sqlite3:// prefix, which
// Litestream accepts in database paths.
func stripSQLitePrefix(s string) string {
	for _, prefix := range []string{"sqlite3://", "sqlite://"} {
		if strings.HasPrefix(s, prefix) {
			return strings.TrimPrefix(s, prefix)
		}
	}
	return s
}
