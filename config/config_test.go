package config_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/config"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/s3"
)

// env is a fixed environment for Parse.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// lineOf returns the 1-based line of the first line of text containing s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in text", s)
	return 0
}

func mustParse(t *testing.T, text string, e func(string) (string, bool)) (*config.Config, []config.Warning) {
	t.Helper()
	cfg, warns, err := config.Parse([]byte(text), "test.yml", e)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg, warns
}

func parseErr(t *testing.T, text string) (error, []config.Warning) {
	t.Helper()
	cfg, warns, err := config.Parse([]byte(text), "test.yml", nil)
	if err == nil {
		t.Fatalf("Parse accepted %q: %+v", text, cfg)
	}
	return err, warns
}

func noWarnings(t *testing.T, warns []config.Warning) {
	t.Helper()
	for _, w := range warns {
		t.Errorf("unexpected warning: %s", w)
	}
}

func dur(t *testing.T, d *time.Duration, want time.Duration, what string) {
	t.Helper()
	if d == nil {
		t.Errorf("%s: not set, want %s", what, want)
	} else if *d != want {
		t.Errorf("%s = %s, want %s", what, *d, want)
	}
}

// Litestream's own example config (etc/litestream.yml of v0.5.18) is all
// comments: it parses to an empty config without a warning.
func TestLitestreamExample(t *testing.T) {
	cfg, warns, err := config.Load("testdata/litestream.yml")
	if err != nil {
		t.Fatal(err)
	}
	noWarnings(t, warns)
	if len(cfg.DBs) != 0 || cfg.Addr != "" || cfg.Levels != nil || cfg.L0Retention != nil {
		t.Fatalf("config = %+v, want empty", cfg)
	}
}

const representative = `
# A Litestream v0.5 config as its docs write them.
access-key-id: ${AWS_KEY}
secret-access-key: $AWS_SECRET
region: eu-central-1
addr: ":9090"
logging:
  level: debug
  type: json
  stderr: true
snapshot:
  interval: 1h
  retention: 72h
levels:
  - interval: 10s
  - interval: 2m
  - interval: 30m
  - interval: 6h
l0-retention: 10m
retention:
  enabled: true
dbs:
  - path: /var/lib/app/main.db
    replica:
      type: s3
      bucket: backups
      path: /main/db/
      endpoint: minio.internal:9000
      region: us-east-1
      force-path-style: true
      sync-interval: 5s
  - path: sqlite:///var/lib/app/url.db
    replica:
      url: s3://${BUCKET}/url-db
  - path: /var/lib/app/local.db
    replica:
      path: /backups/local
  - path: /var/lib/app/fileurl.db
    replica:
      url: file:///backups/fileurl
  - dir: /var/lib/tenants
    pattern: "*.sqlite"
    recursive: true
    watch: true
    replica:
      url: s3://tenants/t?endpoint=localhost:9000&region=auto
walsync:
  hot-set: 500
  idle-timeout: 10m
  workers: 8
  sweep-interval: 1m
  poll-interval: 250ms
  sync-interval: 2s
  compact-interval: 1h
  gfs:
    hourly: 48
    daily: 14
`

func TestRepresentative(t *testing.T) {
	cfg, warns := mustParse(t, representative, env(map[string]string{
		"AWS_KEY": "AKIAEXAMPLEKEY", "AWS_SECRET": "s3cr3t/value", "BUCKET": "url-bucket",
	}))
	noWarnings(t, warns)

	if cfg.Addr != ":9090" || cfg.ListenAddr() != "127.0.0.1:9090" {
		t.Errorf("Addr %q, ListenAddr %q", cfg.Addr, cfg.ListenAddr())
	}
	if cfg.Logging != (config.Logging{Level: "debug", Type: "json", Stderr: true}) {
		t.Errorf("Logging = %+v", cfg.Logging)
	}
	dur(t, cfg.Snapshot.Interval, time.Hour, "snapshot.interval")
	dur(t, cfg.Snapshot.Retention, 72*time.Hour, "snapshot.retention")
	wantLevels := []time.Duration{10 * time.Second, 2 * time.Minute, 30 * time.Minute, 6 * time.Hour}
	if fmt.Sprint(cfg.Levels) != fmt.Sprint(wantLevels) {
		t.Errorf("Levels = %v, want %v", cfg.Levels, wantLevels)
	}
	dur(t, cfg.L0Retention, 10*time.Minute, "l0-retention")
	if cfg.RetentionEnabled == nil || !*cfg.RetentionEnabled {
		t.Errorf("RetentionEnabled = %v", cfg.RetentionEnabled)
	}

	w := cfg.Walsync
	if w.HotSet == nil || *w.HotSet != 500 || w.Workers == nil || *w.Workers != 8 {
		t.Errorf("hot-set %v, workers %v", w.HotSet, w.Workers)
	}
	dur(t, w.IdleTimeout, 10*time.Minute, "idle-timeout")
	dur(t, w.SweepInterval, time.Minute, "sweep-interval")
	dur(t, w.PollInterval, 250*time.Millisecond, "poll-interval")
	dur(t, w.SyncInterval, 2*time.Second, "sync-interval")
	dur(t, w.CompactInterval, time.Hour, "compact-interval")
	if w.GFS == nil || *w.GFS.Hourly != 48 || *w.GFS.Daily != 14 || w.GFS.Weekly != nil || w.GFS.Monthly != nil {
		t.Errorf("GFS = %+v", w.GFS)
	}
	if w.Replica != nil {
		t.Errorf("default replica %v, want none", w.Replica)
	}

	if len(cfg.DBs) != 5 {
		t.Fatalf("%d dbs, want 5", len(cfg.DBs))
	}
	yes := true
	type want struct {
		path, url, endpoint, region string
		pathStyle                   *bool
	}
	for i, tc := range []want{
		{"/var/lib/app/main.db", "s3://backups/main/db", "https://minio.internal:9000", "us-east-1", &yes},
		{"/var/lib/app/url.db", "s3://url-bucket/url-db", "", "eu-central-1", nil},
		{"/var/lib/app/local.db", "file:///backups/local", "", "", nil},
		{"/var/lib/app/fileurl.db", "file:///backups/fileurl", "", "", nil},
		{"", "s3://tenants/t", "http://localhost:9000", "eu-central-1", &yes},
	} {
		db := cfg.DBs[i]
		if db.Path != tc.path {
			t.Errorf("dbs[%d].Path = %q, want %q", i, db.Path, tc.path)
		}
		if db.Replica == nil {
			t.Fatalf("dbs[%d] has no replica", i)
		}
		r := *db.Replica
		u, err := r.ReplicaURL()
		if err != nil || u != tc.url {
			t.Errorf("dbs[%d] ReplicaURL = %q, %v; want %q", i, u, err, tc.url)
		}
		if r.Endpoint != tc.endpoint || r.Region != tc.region || fmt.Sprint(r.ForcePathStyle != nil && *r.ForcePathStyle) != fmt.Sprint(tc.pathStyle != nil) {
			t.Errorf("dbs[%d] endpoint %q region %q path-style %v; want %q %q %v", i, r.Endpoint, r.Region, r.ForcePathStyle, tc.endpoint, tc.region, tc.pathStyle)
		}
		// Top-level credentials are the default of every S3 replica.
		if r.Type == "s3" && (r.AccessKeyID != "AKIAEXAMPLEKEY" || r.SecretAccessKey != "s3cr3t/value") {
			t.Errorf("dbs[%d] credentials not from the top level", i)
		}
		if r.Type == "file" && (r.AccessKeyID != "" || r.Endpoint != "") {
			t.Errorf("dbs[%d] file replica took S3 settings", i)
		}
		// walsync's S3 client reads the URL back as the same bucket and prefix.
		if r.Type == "s3" {
			bucket, prefix, err := s3.ParseURL(u)
			if err != nil || bucket != r.Bucket || prefix != r.Path {
				t.Errorf("s3.ParseURL(%q) = %q, %q, %v; want %q, %q", u, bucket, prefix, err, r.Bucket, r.Path)
			}
		}
	}
	dur(t, cfg.DBs[0].Replica.SyncInterval, 5*time.Second, "dbs[0].replica.sync-interval")
	if cfg.DBs[1].Replica.SyncInterval != nil {
		t.Errorf("dbs[1] sync-interval %v, want unset", *cfg.DBs[1].Replica.SyncInterval)
	}
	d := cfg.DBs[4]
	if d.Dir != "/var/lib/tenants" || d.Pattern != "*.sqlite" || !d.Recursive || !d.Watch {
		t.Errorf("dir entry = %+v", d)
	}
	if d.Line != lineOf(t, representative, "dir: /var/lib/tenants") {
		t.Errorf("dir entry line %d", d.Line)
	}
}

// A directory's databases are replicated where Litestream puts them: the
// directory's replica plus the path relative to the directory.
func TestReplicaFor(t *testing.T) {
	text := `
dbs:
  - dir: /srv/tenants
    pattern: "*.db"
    recursive: true
    replica: {url: s3://b/t}
  - dir: /srv/local
    pattern: "*.db"
    replica: {path: /backups/local}
  - path: /srv/one.db
    replica: {url: s3://b/one}
  - path: /srv/shared/two.db
walsync:
  replica: {url: s3://b/all}
`
	cfg, warns := mustParse(t, text, nil)
	noWarnings(t, warns)
	for _, tc := range []struct {
		db     int
		path   string
		url    string
		shared bool
	}{
		{0, "/srv/tenants/acme/app.db", "s3://b/t/acme/app.db", false},
		{1, "/srv/local/x.db", "file:///backups/local/x.db", false},
		{2, "/srv/one.db", "s3://b/one", false},
		{3, "/srv/shared/two.db", "s3://b/all", true},
	} {
		r, shared, err := cfg.ReplicaFor(cfg.DBs[tc.db], tc.path)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := r.ReplicaURL()
		if u != tc.url || shared != tc.shared {
			t.Errorf("ReplicaFor(%s) = %s shared %v, want %s shared %v", tc.path, u, shared, tc.url, tc.shared)
		}
	}
	if _, _, err := cfg.ReplicaFor(cfg.DBs[0], "/srv/other/app.db"); err == nil {
		t.Error("ReplicaFor accepted a database outside the directory")
	}
}

func TestEnvExpansion(t *testing.T) {
	text := `
# a comment naming ${IN_COMMENT} is expanded but not warned about
dbs:
  - path: /data/${TENANT}/app.db
    replica:
      url: s3://$BUCKET/${MISSING}db
      access-key-id: ${KEY}
      secret-access-key: "pa$$word"
`
	cfg, warns := mustParse(t, text, env(map[string]string{"TENANT": "t1", "BUCKET": "bk", "KEY": "k"}))
	if got := cfg.DBs[0].Path; got != "/data/t1/app.db" {
		t.Errorf("path %q", got)
	}
	if u, _ := cfg.DBs[0].Replica.ReplicaURL(); u != "s3://bk/db" {
		t.Errorf("url %q", u)
	}
	// "$$" expands like an unset variable, as in Litestream.
	if cfg.DBs[0].Replica.SecretAccessKey != "paword" {
		t.Errorf("secret not expanded as Litestream does")
	}
	var msgs []string
	for _, w := range warns {
		msgs = append(msgs, w.String())
	}
	want := []string{
		fmt.Sprintf("test.yml line %d: environment variable MISSING is not set; it expands to an empty string", lineOf(t, text, "MISSING")),
		fmt.Sprintf("test.yml line %d: a $ in a credential on this line expands to an empty string", lineOf(t, text, "pa$$word")),
	}
	if len(msgs) != len(want) {
		t.Fatalf("warnings %q, want %q", msgs, want)
	}
	for i := range want {
		if !strings.HasPrefix(msgs[i], want[i]) {
			t.Errorf("warning %q, want prefix %q", msgs[i], want[i])
		}
	}

	// nil env: no expansion (Litestream's -no-expand-env).
	cfg, _ = mustParse(t, "dbs:\n  - path: /x/${TENANT}.db\n    replica: {path: /b}\n", nil)
	if cfg.DBs[0].Path != "/x/${TENANT}.db" {
		t.Errorf("path %q, want it unexpanded", cfg.DBs[0].Path)
	}
	// PID is this process's id, as in Litestream.
	cfg, _ = mustParse(t, "dbs:\n  - path: /x/$PID.db\n    replica: {path: /b}\n", config.LookupEnv)
	if want := fmt.Sprintf("/x/%d.db", os.Getpid()); cfg.DBs[0].Path != want {
		t.Errorf("path %q, want %q", cfg.DBs[0].Path, want)
	}
}

func TestWarnings(t *testing.T) {
	text := `
mcp-addr: ":3001"
workers: 4
dbs:
  - path: /a.db
    meta-path: /var/lib/meta
    monitor-interval: 1s
    replica:
      url: s3://b/a?storageClass=GLACIER
      sync-intervall: 5s
      retention: 24h
      secret-acess-key: HUNTER2SECRET
  - path: /b.db
    recursive: true
    replicas:
      - path: /backups/b
        bucket: not-used
l0-retention: 0
snapshot:
  interval: 3600000000000
logging:
  level: trace
  type: pretty
  source: true
`
	cfg, warns := mustParse(t, text, nil)
	want := map[string]string{
		"mcp-addr":                "key mcp-addr is not supported by walsync; ignored",
		"workers: 4":              "unknown key workers; ignored (did you mean walsync.workers?)",
		"meta-path":               "key dbs[0].meta-path is not supported by walsync; ignored",
		"monitor-interval":        "key dbs[0].monitor-interval is not supported by walsync; ignored (see walsync.poll-interval)",
		"storageClass":            "URL parameter storageClass is not supported by walsync",
		"sync-intervall":          "unknown key dbs[0].replica.sync-intervall; ignored (did you mean dbs[0].replica.sync-interval?)",
		"retention: 24h":          "key dbs[0].replica.retention is not supported by walsync; ignored (Litestream v0.3 key",
		"secret-acess-key":        "did you mean dbs[0].replica.secret-access-key?",
		"recursive: true":         "key dbs[1].recursive has no effect without dir; ignored",
		"bucket: not-used":        "key dbs[1].replicas[0].bucket has no effect on a file replica",
		"interval: 3600000000000": "plain number 3600000000000 is read as 1h0m0s, as Litestream reads it",
		"level: trace":            "walsync has no trace level; using debug",
		"type: pretty":            "walsync has no pretty logs; using text",
		"source: true":            "key logging.source is not supported by walsync; ignored",
	}
	got := map[int]string{}
	for _, w := range warns {
		got[w.Line] += w.String() + "\n"
		if strings.Contains(w.String(), "HUNTER2") {
			t.Errorf("warning shows a secret: %s", w)
		}
	}
	for at, msg := range want {
		l := lineOf(t, text, at)
		if !strings.Contains(got[l], fmt.Sprintf("test.yml line %d: ", l)) || !strings.Contains(got[l], msg) {
			t.Errorf("line %d: warnings %q, want one containing %q", l, got[l], msg)
		}
	}
	if len(warns) != len(want) {
		t.Errorf("%d warnings, want %d: %v", len(warns), len(want), warns)
	}
	// The values still parse as Litestream reads them.
	dur(t, cfg.L0Retention, 0, "l0-retention: 0 (disabled)")
	dur(t, cfg.Snapshot.Interval, time.Hour, "snapshot.interval")
	if cfg.Logging.Level != "debug" || cfg.Logging.Type != "text" {
		t.Errorf("logging %+v", cfg.Logging)
	}
	if u, _ := cfg.DBs[1].Replica.ReplicaURL(); u != "file:///backups/b" {
		t.Errorf("single-element replicas list: %s", u)
	}
	if w := warns[0]; w.Key != "mcp-addr" || w.File != "test.yml" || w.Line != 2 {
		t.Errorf("first warning %+v", w)
	}
}

func TestErrors(t *testing.T) {
	base := "dbs:\n  - path: /a.db\n    replica: {url: s3://b/a}\n"
	for _, tc := range []struct {
		name, text, at, want string
	}{
		{"bad duration", "snapshot:\n  interval: 10 minutes\n", "10 minutes",
			`key snapshot.interval: invalid duration "10 minutes": expected a number with a unit`},
		{"zero sync interval", "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n      sync-interval: 0s\n", "sync-interval",
			"key dbs[0].replica.sync-interval: invalid duration 0s: must be greater than 0"},
		{"negative hot-set", base + "walsync:\n  hot-set: -5\n", "hot-set",
			"key walsync.hot-set: invalid value -5: expected a whole number of at least 1"},
		{"not a number", base + "walsync:\n  workers: many\n", "workers",
			`key walsync.workers: invalid value "many": expected a whole number`},
		{"neither path nor dir", "dbs:\n  - replica: {url: s3://b/a}\n", "replica",
			"dbs[0]: no path or dir"},
		{"path and dir", "dbs:\n  - path: /a.db\n    dir: /d\n    replica: {url: s3://b/a}\n", "path",
			"dbs[0]: give either path (one database) or dir (a directory of databases), not both"},
		{"no replica", "dbs:\n  - path: /a.db\n", "path",
			"dbs[0]: no replica: add replica:"},
		{"empty replicas", "dbs:\n  - path: /a.db\n    replicas: []\n", "path",
			"dbs[0]: no replica"},
		{"two replicas", "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://b/a\n      - url: s3://c/a\n", "replicas",
			"key dbs[0].replicas: 2 replicas given; a database has one replica"},
		{"unsupported type", "dbs:\n  - path: /a.db\n    replica:\n      type: gcs\n      bucket: b\n", "type",
			"key dbs[0].replica.type: replica type gcs is not supported by walsync; supported: s3, file"},
		{"unsupported scheme", "dbs:\n  - path: /a.db\n    replica:\n      url: sftp://u@h:22/p\n", "url",
			"key dbs[0].replica.url: replica type sftp is not supported by walsync; supported: s3, file"},
		{"s3 without bucket", "dbs:\n  - path: /a.db\n    replica:\n      type: s3\n      path: x\n", "replica",
			"dbs[0].replica: an s3 replica needs a bucket"},
		{"url and path", "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n      path: x\n", "path: x",
			"dbs[0].replica: give url or path, not both"},
		{"url in path", "dbs:\n  - path: /a.db\n    replica:\n      type: s3\n      path: s3://b/a\n", "path: s3",
			"key dbs[0].replica.path: the path of a replica cannot be a URL; use url: instead"},
		{"zero level", "levels:\n  - interval: 30s\n  - interval: 0s\n", "interval: 0s",
			"key levels[1].interval: invalid duration 0s: must be greater than 0"},
		{"too many levels", "levels: [{interval: 1s}, {interval: 2s}, {interval: 3s}, {interval: 4s}, {interval: 5s}, {interval: 6s}, {interval: 7s}, {interval: 8s}, {interval: 9s}]\n", "levels",
			"key levels: 9 levels given; walsync supports at most 8"},
		{"negative l0 retention", "l0-retention: -1s\n", "l0-retention",
			"key l0-retention: invalid duration -1s: must be 0 or more"},
		{"addr without port", "addr: localhost\n", "addr",
			`key addr: invalid address "localhost": expected host:port or :port`},
		{"exec", base + "exec: myapp -serve\n", "exec",
			"key exec is not supported by walsync: walsync does not start your application"},
		{"restore-if-db-not-exists", "dbs:\n  - path: /a.db\n    restore-if-db-not-exists: true\n    replica: {url: s3://b/a}\n", "restore-if",
			"key dbs[0].restore-if-db-not-exists is not supported by walsync: run `walsync restore`"},
		{"watch without dir", "dbs:\n  - path: /a.db\n    watch: true\n    replica: {url: s3://b/a}\n", "watch",
			"key dbs[0].watch: watch needs dir"},
		{"bad pattern", "dbs:\n  - dir: /d\n    pattern: \"[\"\n    replica: {url: s3://b/a}\n", "pattern",
			`key dbs[0].pattern: invalid pattern "["`},
		{"bad bool", "dbs:\n  - dir: /d\n    pattern: \"*.db\"\n    recursive: sometimes\n    replica: {url: s3://b/a}\n", "recursive",
			`key dbs[0].recursive: invalid value "sometimes": expected true or false`},
		{"same database twice", base + "  - path: /a.db # again\n    replica: {url: s3://b/other}\n", "# again",
			"dbs[1]: database /a.db is already listed on line 2"},
		{"same replica twice", base + "  - path: /b.db\n    replica: {url: s3://b/a}\n", "/b.db",
			"dbs[1]: replica s3://b/a is already the replica of the database on line 2"},
		{"conflicting db snapshots", "dbs:\n  - path: /a.db\n    snapshot: {interval: 1h}\n    replica: {url: s3://b/a}\n  - path: /b.db\n    snapshot: {interval: 2h}\n    replica: {url: s3://b/b}\n", "/b.db",
			"database snapshot settings apply to every database, so they must agree"},
		{"dbs not a list", "dbs:\n  path: /a.db\n", "dbs",
			"key dbs: expected a list of databases"},
		{"log type", "logging:\n  type: xml\n", "xml",
			`key logging.type: unknown log type "xml": expected text or json`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err, _ := parseErr(t, tc.text)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			l := lineOf(t, tc.text, tc.at)
			prefix := fmt.Sprintf("test.yml line %d: ", l)
			found := false
			for _, line := range strings.Split(err.Error(), "\n") {
				found = found || (strings.HasPrefix(line, prefix) && strings.Contains(line, tc.want))
			}
			if !found {
				t.Errorf("error %q, want one starting %q containing %q", err, prefix, tc.want)
			}
		})
	}

	// Every invalid setting is reported, not only the first.
	err, _ := parseErr(t, "snapshot: {interval: x}\nl0-retention: y\n")
	if n := strings.Count(err.Error(), "invalid duration"); n != 2 {
		t.Errorf("error %q reports %d problems, want 2", err, n)
	}
	// Malformed YAML names the file.
	if _, _, err := config.Parse([]byte("dbs: [\n"), "bad.yml", nil); err == nil || !strings.HasPrefix(err.Error(), "bad.yml: invalid YAML") {
		t.Errorf("error %v", err)
	}
	if _, _, err := config.Load(filepath.Join(t.TempDir(), "missing.yml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// Credentials from the config never appear in errors, warnings, String,
// any fmt verb or slog output.
func TestCredentialsHidden(t *testing.T) {
	const key, secret = "AKIAVERYSECRETKEYID", "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRET"
	text := fmt.Sprintf(`
access-key-id: %s
secret-access-key: %s
dbs:
  - path: /a.db
    replica:
      url: s3://bucket/a
      endpoint: https://s3.example.com
  - path: /b.db
    replica:
      type: s3
      bucket: bucket
      path: b
      access-key-id: [%s]
`, key, secret, key)
	// A $ inside a secret expands as in Litestream, and the warning does
	// not repeat what follows it.
	_, warns, err := config.Parse([]byte("secret-access-key: abc$XYZSECRETPART\naccess-key-id: ${UNSET_KEY_VAR}\n"), "c.yml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 2 || strings.Contains(warns[0].String(), "XYZSECRETPART") || !strings.Contains(warns[1].String(), "UNSET_KEY_VAR is not set") {
		t.Errorf("warnings %v", warns)
	}
	leaks := func(where, s string) {
		t.Helper()
		if strings.Contains(s, key) || strings.Contains(s, secret) {
			t.Errorf("%s shows a credential: %s", where, s)
		}
	}
	_, warns, err = config.Parse([]byte(text), "c.yml", nil)
	if err == nil {
		t.Fatal("a list as access-key-id was accepted")
	}
	leaks("error", err.Error())
	for _, w := range warns {
		leaks("warning", w.String())
	}

	// Only one of the pair is an error that names neither value.
	_, _, err = config.Parse([]byte("access-key-id: "+key+"\ndbs:\n  - path: /a.db\n    replica: {url: s3://b/a}\n"), "c.yml", nil)
	if err == nil || !strings.Contains(err.Error(), "access-key-id is set but secret-access-key is not") {
		t.Errorf("error %v", err)
	}
	leaks("error", fmt.Sprint(err))
	// Credentials in the URL are refused without repeating them.
	_, _, err = config.Parse([]byte("dbs:\n  - path: /a.db\n    replica: {url: \"s3://"+key+":"+secret+"@bucket/a\"}\n"), "c.yml", nil)
	if err == nil || !strings.Contains(err.Error(), "credentials do not belong in the URL") {
		t.Errorf("error %v", err)
	}
	leaks("error", fmt.Sprint(err))

	cfg, _ := mustParse(t, strings.Replace(text, "["+key+"]", key, 1), nil)
	r := *cfg.DBs[0].Replica
	if r.AccessKeyID != key || r.SecretAccessKey != secret {
		t.Fatal("top-level credentials were not applied")
	}
	if want := "s3://bucket/a (endpoint https://s3.example.com, credentials from config)"; r.String() != want {
		t.Errorf("String() = %q, want %q", r.String(), want)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		leaks("Sprintf("+verb+")", fmt.Sprintf(verb, r))
		leaks("Sprintf("+verb+") of a pointer", fmt.Sprintf(verb, &r))
		leaks("Sprintf("+verb+") of the config", fmt.Sprintf(verb, cfg))
		leaks("Sprintf("+verb+") of a db", fmt.Sprintf(verb, cfg.DBs[0]))
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("replica", "replica", r)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("replica", "replica", &r)
	leaks("slog", buf.String())
	if !strings.Contains(buf.String(), `"access-key-id":"REDACTED"`) || !strings.Contains(buf.String(), "s3://bucket/a") {
		t.Errorf("slog output %s", buf.String())
	}
}

func TestListenAddr(t *testing.T) {
	for addr, want := range map[string]string{
		":9090":          "127.0.0.1:9090",
		"0.0.0.0:9090":   "0.0.0.0:9090",
		"localhost:8080": "localhost:8080",
		"[::1]:9090":     "[::1]:9090",
		"":               "",
	} {
		cfg, _ := mustParse(t, fmt.Sprintf("addr: %q\n", addr), nil)
		if got := cfg.ListenAddr(); got != want {
			t.Errorf("addr %q: ListenAddr %q, want %q", addr, got, want)
		}
	}
}

// S3 URL forms Litestream accepts.
func TestS3URLForms(t *testing.T) {
	for _, tc := range []struct {
		url, bucket, path, endpoint, region string
		pathStyle                           string
	}{
		{"s3://mybucket/db", "mybucket", "db", "", "", "<nil>"},
		{"s3://mybucket", "mybucket", "", "", "", "<nil>"},
		{"s3://mybucket.s3.us-west-2.amazonaws.com/a/b/", "mybucket", "a/b", "", "us-west-2", "<nil>"},
		{"s3://mybucket.s3.amazonaws.com/a", "mybucket", "a", "", "", "<nil>"},
		{"s3://mybucket.nyc3.digitaloceanspaces.com/a", "mybucket", "a", "https://nyc3.digitaloceanspaces.com", "nyc3", "<nil>"},
		{"s3://mybucket.s3.us-west-002.backblazeb2.com/a", "mybucket", "a", "https://s3.us-west-002.backblazeb2.com", "us-west-002", "true"},
		{"s3://mybucket.minio:9000/a", "mybucket", "a", "http://minio:9000", "us-east-1", "true"},
		{"s3://tigris-b/db.sqlite?endpoint=fly.storage.tigris.dev&region=auto", "tigris-b", "db.sqlite", "https://fly.storage.tigris.dev", "auto", "true"},
		{"s3://b/p?endpoint=http://10.0.0.5:9000&forcePathStyle=false", "b", "p", "http://10.0.0.5:9000", "", "false"},
		{"s3://b/p?endpoint=192.168.1.9:9000&skipVerify=true", "b", "p", "http://192.168.1.9:9000", "", "true"},
	} {
		cfg, warns := mustParse(t, fmt.Sprintf("dbs:\n  - path: /a.db\n    replica:\n      url: %q\n", tc.url), nil)
		noWarnings(t, warns)
		r := cfg.DBs[0].Replica
		ps := "<nil>"
		if r.ForcePathStyle != nil {
			ps = fmt.Sprint(*r.ForcePathStyle)
		}
		if r.Type != "s3" || r.Bucket != tc.bucket || r.Path != tc.path || r.Endpoint != tc.endpoint || r.Region != tc.region || ps != tc.pathStyle {
			t.Errorf("%s: bucket %q path %q endpoint %q region %q path-style %s", tc.url, r.Bucket, r.Path, r.Endpoint, r.Region, ps)
		}
		if r.URL != tc.url {
			t.Errorf("URL %q, want it as written", r.URL)
		}
	}
	// skipVerify from the URL.
	cfg, _ := mustParse(t, "dbs:\n  - path: /a.db\n    replica: {url: \"s3://b/p?skipVerify=true\"}\n", nil)
	if !cfg.DBs[0].Replica.SkipVerify {
		t.Error("skipVerify=true not applied")
	}
	// The replica's own keys win over the top-level defaults, which win
	// over the URL (Litestream's precedence).
	cfg, _ = mustParse(t, `
region: top
endpoint: top.example.com
bucket: topbucket
dbs:
  - path: /a.db
    replica:
      url: s3://b.s3.eu-west-1.amazonaws.com/a
  - path: /b.db
    replica:
      url: s3://b/b
      region: own
  - path: /c.db
    replica: {type: s3, path: c}
`, nil)
	if r := cfg.DBs[0].Replica; r.Region != "top" || r.Endpoint != "https://top.example.com" {
		t.Errorf("dbs[0] region %q endpoint %q", r.Region, r.Endpoint)
	}
	if r := cfg.DBs[1].Replica; r.Region != "own" || r.Bucket != "b" {
		t.Errorf("dbs[1] region %q bucket %q", r.Region, r.Bucket)
	}
	if u, _ := cfg.DBs[2].Replica.ReplicaURL(); u != "s3://topbucket/c" {
		t.Errorf("dbs[2] with the top-level bucket: %s", u)
	}
}

func TestDefaultsAndOddities(t *testing.T) {
	// dir without pattern: *.db with a warning; YAML anchors and merge keys;
	// a db's snapshot block applies to all; levels: [] turns compaction off;
	// the top-level sync-interval is the default; gfs: true.
	text := `
x-s3: &s3
  type: s3
  bucket: shared
  region: r1
dbs:
  - dir: /srv/d
    snapshot: {interval: 6h}
    replica:
      <<: *s3
      path: d
  - path: /srv/e.db
    replica:
      <<: *s3
      path: e
      region: r2
levels: []
sync-interval: 3s
walsync:
  gfs: true
`
	cfg, warns := mustParse(t, text, nil)
	var msgs []string
	for _, w := range warns {
		msgs = append(msgs, w.String())
	}
	if len(msgs) != 2 || !strings.Contains(msgs[0], "unknown key x-s3") ||
		!strings.Contains(msgs[1], fmt.Sprintf("line %d: dbs[0]: dir without pattern", lineOf(t, text, "dir: /srv/d"))) {
		t.Errorf("warnings %q", msgs)
	}
	if cfg.DBs[0].Pattern != config.DefaultPattern {
		t.Errorf("pattern %q", cfg.DBs[0].Pattern)
	}
	if r := cfg.DBs[0].Replica; r.Bucket != "shared" || r.Path != "d" || r.Region != "r1" {
		t.Errorf("merged replica %+v", *r)
	}
	if r := cfg.DBs[1].Replica; r.Path != "e" || r.Region != "r2" {
		t.Errorf("merged replica with override: %v, region %s", r, r.Region)
	}
	dur(t, cfg.Snapshot.Interval, 6*time.Hour, "snapshot.interval from dbs[0]")
	if cfg.Levels == nil || len(cfg.Levels) != 0 {
		t.Errorf("levels %v, want empty and not nil", cfg.Levels)
	}
	dur(t, cfg.Walsync.SyncInterval, 3*time.Second, "sync-interval")
	if g := cfg.Walsync.GFS; g == nil || g.Hourly != nil {
		t.Errorf("gfs: true = %+v", g)
	}

	// Unset stays nil; an empty document is an empty config.
	cfg, warns = mustParse(t, "dbs:\n  - path: /a.db\n    replica: {path: /b}\nsnapshot:\nwalsync:\n", nil)
	noWarnings(t, warns)
	if cfg.Snapshot.Interval != nil || cfg.Walsync.HotSet != nil || cfg.Walsync.GFS != nil || cfg.Levels != nil || cfg.RetentionEnabled != nil {
		t.Errorf("unset settings were set: %+v", cfg)
	}
	if cfg, _ := mustParse(t, "", nil); len(cfg.DBs) != 0 {
		t.Error("empty document")
	}

	// Relative and ~ paths become absolute, as in Litestream.
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip(err)
	}
	wd, _ := os.Getwd()
	cfg, _ = mustParse(t, "dbs:\n  - path: ~/app.db\n    replica: {path: rel/backups}\n", nil)
	if cfg.DBs[0].Path != filepath.Join(home, "app.db") || cfg.DBs[0].Replica.Path != filepath.Join(wd, "rel/backups") {
		t.Errorf("paths %q, %q", cfg.DBs[0].Path, cfg.DBs[0].Replica.Path)
	}
}

func TestMaxLevels(t *testing.T) {
	text := "levels:\n" + strings.Repeat("  - interval: 1m\n", storage.SnapshotLevel-1)
	cfg, _ := mustParse(t, text, nil)
	if len(cfg.Levels) != storage.SnapshotLevel-1 {
		t.Errorf("%d levels", len(cfg.Levels))
	}
}

// "$$" outside a credential is named in the warning.
func TestDollarDollar(t *testing.T) {
	text := "dbs:\n  - path: /data/a$$b.db\n    replica: {path: /b}\n"
	cfg, warns := mustParse(t, text, env(nil))
	if cfg.DBs[0].Path != "/data/ab.db" {
		t.Errorf("path %q", cfg.DBs[0].Path)
	}
	if len(warns) != 1 || !strings.HasPrefix(warns[0].String(), "test.yml line 2: $$ expands to an empty string") {
		t.Errorf("warnings %v", warns)
	}
}
