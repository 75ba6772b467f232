// Package config reads walsync's configuration file, which is Litestream
// v0.5's YAML configuration (a Litestream user's /etc/litestream.yml works
// unchanged) plus an optional walsync-only block:
//
//	addr: ":9090"                  # status/metrics; no host means 127.0.0.1
//	logging: {level: info, type: text, stderr: true}
//	snapshot: {interval: 24h, retention: 24h}
//	levels: [{interval: 30s}, {interval: 5m}, {interval: 1h}]
//	l0-retention: 5m               # 0: L0 files are never deleted
//	access-key-id: ${AWS_ACCESS_KEY_ID}    # defaults for every S3 replica
//	secret-access-key: ${AWS_SECRET_ACCESS_KEY}
//	dbs:
//	  - path: /var/lib/app/app.db
//	    replica: {url: s3://bucket/app}
//	  - dir: /var/lib/tenants
//	    pattern: "*.db"
//	    recursive: true
//	    watch: true
//	    replica: {type: s3, bucket: bucket, path: tenants, endpoint: http://minio:9000}
//	walsync:
//	  hot-set: 1000                # databases held open at once
//	  idle-timeout: 10m
//	  workers: 8
//	  sweep-interval: 1m
//	  poll-interval: 100ms
//	  sync-interval: 1s
//	  compact-interval: 1h
//	  gfs: {hourly: 24, daily: 7, weekly: 12, monthly: 12}
//	  replica: {url: s3://bucket/all}   # for dbs without a replica of their own
//
// ${VAR} and $VAR are expanded in the whole text before it is parsed, as
// Litestream does. Keys of Litestream's schema that walsync does not
// implement, and keys of neither schema (typos), are warnings; the few whose
// silent omission would lose data or leave an application unstarted (exec,
// restore-if-db-not-exists, age, sse-*) are errors. Invalid values are
// errors naming the file, line and key.
package config

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Config is a parsed configuration file. Optional settings are pointers:
// nil means the file did not set them and the caller's default applies.
type Config struct {
	// DBs are the databases and directories of databases to replicate, in
	// file order.
	DBs []DB

	// Addr is the status/metrics HTTP listen address as written ("" for
	// none). Use ListenAddr to bind: unlike Litestream, an address without
	// a host (":9090") listens on 127.0.0.1 only.
	Addr string

	// Logging configures the log output.
	Logging Logging

	// Snapshot is Litestream's top-level snapshot block. A database's own
	// snapshot block sets these when the top-level one does not, as in
	// Litestream (databases that disagree are an error).
	Snapshot Snapshot

	// Levels are the compaction intervals of levels 1, 2, 3, … in order
	// (Litestream's levels list). nil: not given (the default levels);
	// empty but not nil: "levels: []", no compaction.
	Levels []time.Duration

	// L0Retention is how long L0 files are kept after level 1 covers them
	// (Litestream's l0-retention). Zero disables L0 retention, as in
	// Litestream: L0 files are then never deleted (walsync's engine spells
	// that as a negative duration).
	L0Retention *time.Duration

	// RetentionEnabled is Litestream's retention.enabled. false: never
	// delete replica files (snapshots or L0), leaving that to the bucket's
	// lifecycle rules.
	RetentionEnabled *bool

	// Walsync holds the walsync-only settings (the walsync: block).
	Walsync Walsync
}

// Logging is the logging block.
type Logging struct {
	// Level is "debug", "info", "warn" or "error" ("" if not given).
	// Litestream's "trace" reads as "debug" and "warning" as "warn".
	Level string
	// Type is "text" or "json" ("" if not given). Litestream's "pretty"
	// reads as "text".
	Type string
	// Stderr asks for logs on standard error. Litestream logs to standard
	// output unless it is set. (Litestream's LOG_LEVEL environment variable
	// overrides Level; Parse leaves that to the caller.)
	Stderr bool
}

// Snapshot is a snapshot block: both durations are positive when set.
type Snapshot struct {
	Interval  *time.Duration // how often changed databases get a snapshot
	Retention *time.Duration // how long snapshots are kept
}

// Walsync holds the settings of the walsync: block, which Litestream does
// not have. Unset settings are nil.
type Walsync struct {
	HotSet          *int           // hot-set: most databases held open at once (>= 1)
	IdleTimeout     *time.Duration // idle-timeout: an idle database is released after this
	Workers         *int           // workers: databases synced at once (>= 1)
	SweepInterval   *time.Duration // sweep-interval: the fallback stat sweep of all databases
	PollInterval    *time.Duration // poll-interval: how often WAL files are checked
	SyncInterval    *time.Duration // sync-interval: default for replicas without one
	CompactInterval *time.Duration // compact-interval: retention schedule (0: after each snapshot only)
	StateFile       string         // state-file: written at a clean stop so the next start skips reading replicas
	// GFS, when set (gfs: {…} or gfs: true), keeps snapshots
	// grandfather-father-son instead of snapshot.retention.
	GFS *GFS
	// Replica is the replica of databases that have none of their own. It
	// is shared the way `walsync watch -b URL` shares one: each database is
	// stored under its walsync name (<parent dir>/<file name without
	// extension>) below it. See Config.ReplicaFor.
	Replica *Replica
}

// GFS is the gfs block: how many snapshots each tier keeps. A nil count
// was not given; the caller applies its default (compact.DefaultGFS).
type GFS struct {
	Hourly, Daily, Weekly, Monthly *int
}

// DB is one entry of dbs: a database (Path) or a directory of databases
// (Dir, Pattern, Recursive, Watch).
type DB struct {
	// Path is the database's absolute path ("~/" expanded, a sqlite:// or
	// sqlite3:// prefix removed, relative paths taken from the working
	// directory, as in Litestream). Empty in directory mode.
	Path string

	// Dir is the directory scanned for databases (absolute, as Path).
	Dir string
	// Pattern is the glob matched against each file's base name
	// (filepath.Match). Litestream requires it with dir; walsync defaults
	// it to "*.db" with a warning.
	Pattern string
	// Recursive also scans Dir's subdirectories.
	Recursive bool
	// Watch keeps watching Dir for databases created or removed later.
	Watch bool

	// Replica is the database's own replica; nil means Config.Walsync.Replica.
	// In directory mode it is the root below which each database's replica
	// lies (see Config.ReplicaFor).
	Replica *Replica

	// Line is the line of the entry in the file, for messages.
	Line int
}

// DefaultPattern is the pattern of a directory entry that gives none.
const DefaultPattern = "*.db"

// maxLevels is the number of compaction levels walsync supports: levels
// 1..8, as level 9 holds snapshots (storage.SnapshotLevel).
const maxLevels = 8

// ListenAddr returns the address to bind the status/metrics server to: Addr
// with 127.0.0.1 as its host when Addr gives none (":9090" listens on
// 127.0.0.1:9090, never on every interface; write 0.0.0.0:9090 for that).
// It returns "" when Addr is empty.
func (c *Config) ListenAddr() string {
	if c.Addr == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil { // Parse rejects such addresses
		return c.Addr
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Warning is a problem that does not stop walsync: an unsupported or
// unknown key, an unset environment variable, a setting read the way
// Litestream reads it although it is probably a mistake.
type Warning struct {
	File    string
	Line    int    // 0 if unknown
	Key     string // dotted key path, e.g. dbs[0].meta-path; "" if none
	Message string // the whole message, without the location
}

// String returns the warning with its location:
// "/etc/litestream.yml line 12: key dbs[0].meta-path is not supported by walsync; ignored".
func (w Warning) String() string { return location(w.File, w.Line) + w.Message }

// Error is an invalid setting. Parse joins every one it finds with
// errors.Join; errors.As finds the first. Messages never contain a
// credential.
type Error struct {
	File    string
	Line    int    // 0 if unknown
	Key     string // dotted key path, e.g. dbs[1].replica.sync-interval
	Message string // the whole message, without the location
}

// Error returns the message with its location, as Warning.String does.
func (e *Error) Error() string { return location(e.File, e.Line) + e.Message }

func location(file string, line int) string {
	if file == "" {
		file = "config"
	}
	if line <= 0 {
		return file + ": "
	}
	return file + " line " + strconv.Itoa(line) + ": "
}

// Load reads and parses the file at path, expanding environment variables
// with LookupEnv. A leading "~/" in path is the home directory.
func Load(path string) (*Config, []Warning, error) {
	p, err := expandPath(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config file %s: %w", path, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, fmt.Errorf("read config file: %w", err)
	}
	return Parse(data, p, LookupEnv)
}

// LookupEnv is the environment Load expands: os.LookupEnv, except that PID
// is always this process's id, as in Litestream.
func LookupEnv(key string) (string, bool) {
	if key == "PID" {
		return strconv.Itoa(os.Getpid()), true
	}
	return os.LookupEnv(key)
}
