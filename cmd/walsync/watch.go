package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/config"
	"github.com/walsync/walsync/discover"
	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/replicaurl"
)

func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("watch", "walsync watch [DB...] [--dir DIR...] -b URL [options]", stderr)
	var rf replicaFlags
	rf.register(fs)
	var dirs stringList
	fs.Var(&dirs, "dir", "replicate every SQLite database in `DIR`, and new ones as they appear (repeatable); each is named by its path relative to DIR, as in Litestream's directory mode")
	pattern := fs.String("pattern", discover.DefaultPattern, "with --dir: file name `glob` of databases")
	recursive := fs.Bool("recursive", false, "with --dir: also look in subdirectories")
	syncInterval := fs.Duration("sync-interval", engine.DefaultSyncInterval, "at most one upload per database per `interval`")
	snapInterval := fs.Duration("snapshot-interval", engine.DefaultSnapshotInterval, "write a snapshot of changed databases this often (0: never)")
	workers := fs.Int("workers", engine.DefaultWorkers, "databases synced at once")
	hotSet := fs.Int("hot-set", engine.DefaultHotSet, "databases held open at once; idle ones are released")
	idleTimeout := fs.Duration("idle-timeout", engine.DefaultIdleTimeout, "release a database unchanged this long: no fd, connection or request until it changes (0: never)")
	sweepInterval := fs.Duration("sweep-interval", engine.DefaultSweepInterval, "stat released databases this often, in case a file event was missed")
	addr := fs.String("addr", "", "serve status at http://`ADDR`/status (a bare :PORT listens on 127.0.0.1 only); it shows database paths, replica URLs and errors")
	healthLag := fs.Duration("health-max-lag", 0, "with --addr: /healthz answers 503 when a change waits longer than `duration` to be shipped, or a database fails that long (default: 10 sync intervals, at least 10s)")
	pprofOn := fs.Bool("pprof", false, "with --addr: also serve Go profiles at http://ADDR/debug/pprof/ (goroutine stacks, heap and CPU profiles)")
	levels := fs.String("levels", "30s,5m,1h", "compaction intervals of levels 1, 2, 3, … (\"\" or none: no compaction)")
	l0Retention := fs.Duration("l0-retention", compact.DefaultL0Retention, "keep L0 files this long after level 1 covers them (0: forever)")
	snapRetention := fs.Duration("snapshot-retention", compact.DefaultSnapshotRetention, "delete snapshots older than this, except the newest, and history before the oldest kept (0: keep all)")
	compactInterval := fs.Duration("compact-interval", 0, "also apply retention this often to databases that changed (0: after each snapshot only)")
	gfs := fs.Bool("gfs", false, "keep snapshots grandfather-father-son (--hourly, --daily, --weekly, --monthly) instead of --snapshot-retention; snapshots become hourly unless --snapshot-interval is given")
	var g compact.GFS
	fs.IntVar(&g.Hourly, "hourly", compact.DefaultGFS.Hourly, "with --gfs: hourly snapshots kept")
	fs.IntVar(&g.Daily, "daily", compact.DefaultGFS.Daily, "with --gfs: daily snapshots kept")
	fs.IntVar(&g.Weekly, "weekly", compact.DefaultGFS.Weekly, "with --gfs: weekly snapshots kept")
	fs.IntVar(&g.Monthly, "monthly", compact.DefaultGFS.Monthly, "with --gfs: monthly snapshots kept")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	stateFile := fs.String("state-file", "", "save each database's replica position here at a clean stop, so the next start reads no replica (the file is deleted when read: a crash leaves none)")
	configPath := fs.String("config", "", "read databases, replicas and settings from a Litestream-style YAML `FILE` (/etc/litestream.yml works as is); flags given too override it")
	paths, err := parse(fs, args)
	if err != nil {
		return err
	}
	var cfg *config.Config
	var cfgWarnings []config.Warning
	var pollInterval time.Duration
	var cfgLevels []compact.Level
	jsonLogs := false
	if *configPath != "" {
		if cfg, cfgWarnings, err = config.Load(*configPath); err != nil {
			return usageError{err}
		}
		unset := func(name string) bool { return !flagSet(fs, name) }
		setDur := func(dst *time.Duration, name string, v *time.Duration) {
			if v != nil && unset(name) {
				*dst = *v
			}
		}
		setInt := func(dst *int, name string, v *int) {
			if v != nil && unset(name) {
				*dst = *v
			}
		}
		if d, ok := replicaSyncInterval(cfg); ok && cfg.Walsync.SyncInterval == nil {
			cfg.Walsync.SyncInterval = &d
		}
		setDur(syncInterval, "sync-interval", cfg.Walsync.SyncInterval)
		setDur(snapInterval, "snapshot-interval", cfg.Snapshot.Interval)
		setDur(snapRetention, "snapshot-retention", cfg.Snapshot.Retention)
		setDur(l0Retention, "l0-retention", cfg.L0Retention)
		if cfg.RetentionEnabled != nil && !*cfg.RetentionEnabled {
			*snapRetention, *l0Retention = 0, 0 // keep everything: the bucket's lifecycle rules decide
		}
		setDur(idleTimeout, "idle-timeout", cfg.Walsync.IdleTimeout)
		setDur(sweepInterval, "sweep-interval", cfg.Walsync.SweepInterval)
		setDur(compactInterval, "compact-interval", cfg.Walsync.CompactInterval)
		if cfg.Walsync.PollInterval != nil {
			pollInterval = *cfg.Walsync.PollInterval
		}
		if cfg.Walsync.StateFile != "" && unset("state-file") {
			*stateFile = cfg.Walsync.StateFile
		}
		setInt(hotSet, "hot-set", cfg.Walsync.HotSet)
		setInt(workers, "workers", cfg.Walsync.Workers)
		if c := cfg.Walsync.GFS; c != nil && unset("gfs") {
			*gfs = true
			setInt(&g.Hourly, "hourly", c.Hourly)
			setInt(&g.Daily, "daily", c.Daily)
			setInt(&g.Weekly, "weekly", c.Weekly)
			setInt(&g.Monthly, "monthly", c.Monthly)
		}
		if cfg.Levels != nil && unset("levels") {
			cfgLevels = []compact.Level{}
			for i, d := range cfg.Levels {
				cfgLevels = append(cfgLevels, compact.Level{Level: i + 1, Interval: d})
			}
		}
		if cfg.Addr != "" && unset("addr") {
			*addr = cfg.ListenAddr()
		}
		if cfg.Logging.Level != "" && unset("log-level") {
			*logLevel = cfg.Logging.Level
		}
		jsonLogs = cfg.Logging.Type == "json"
	}
	si := *snapInterval
	if si == 0 {
		si = -1
	}
	lv, err := parseLevels(*levels)
	if err != nil {
		return err
	}
	if cfgLevels != nil {
		lv = cfgLevels
	}
	var gfsPolicy *compact.GFS
	if *gfs {
		if err := (compact.Policy{GFS: &g}).Validate(); err != nil {
			return usageError{err}
		}
		gfsPolicy = &g
		if !flagSet(fs, "snapshot-interval") && (cfg == nil || cfg.Snapshot.Interval == nil) {
			si = time.Hour
		}
	}
	if len(paths) == 0 && len(dirs) == 0 && (cfg == nil || len(cfg.DBs) == 0) {
		return usagef("no database given: walsync watch /path/to/app.db -b URL, or --dir /var/lib/app --recursive")
	}
	if *pprofOn && *addr == "" {
		return usagef("--pprof needs --addr: profiles are served on the status address")
	}
	if *addr != "" {
		if err := checkAddr("--addr", *addr); err != nil {
			return err
		}
	}
	if *hotSet < 1 || *workers < 1 {
		return usagef("--hot-set and --workers must be at least 1")
	}
	var names []string
	if len(paths) > 0 {
		if names, err = replicaurl.Names(paths); err != nil {
			return usageError{err}
		}
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	if jsonLogs {
		log = slog.New(slog.NewJSONHandler(stderr, logOptions(logLevelOf(*logLevel))))
	}
	// What logs through slog's default (the S3 client's retries, the
	// credential cache) follows the configured format and level too.
	prevLog := slog.Default()
	slog.SetDefault(log)
	defer slog.SetDefault(prevLog)
	for _, w := range cfgWarnings {
		log.Warn(w.String())
	}
	var dbs []engine.Database
	var sources []engine.Source
	if cfg != nil {
		if dbs, sources, err = configDatabases(cfg, log); err != nil {
			return usageError{err}
		}
	}
	var client storage.Client
	if len(paths) > 0 || len(dirs) > 0 {
		if client, err = rf.open(); err != nil {
			return err
		}
	}
	for i, p := range paths {
		d := engine.Database{Path: p, Client: client.Sub(names[i]), Name: names[i]}
		dbs = append(dbs, d)
		log.Info("replicating", "db", p, "name", names[i], "replica", d.Client.String())
	}
	for _, d := range dirs {
		src, err := discover.Source{Dir: d, Pattern: *pattern, Recursive: *recursive}.Normalize()
		if err != nil {
			return usageError{err}
		}
		if fi, err := os.Stat(src.Dir); err != nil || !fi.IsDir() {
			return usagef("--dir %s is not a directory you can read: create it, or fix the path", d)
		}
		sources = append(sources, engine.Source{Source: src, Client: client})
		log.Info("replicating databases found in directory", "dir", src.Dir, "pattern", src.Pattern, "recursive", src.Recursive, "replica", client.String())
	}
	for _, d := range dbs {
		if err := dirExists(d.Path); err != nil {
			return err
		}
	}
	raiseFDLimit(log)
	probeAtStart(ctx, dbs, sources, log)
	eng, err := engine.New(engine.Options{
		Databases: dbs, Sources: sources, SyncInterval: *syncInterval, SnapshotInterval: si, Workers: *workers,
		HotSet: *hotSet, IdleTimeout: orNever(*idleTimeout), SweepInterval: *sweepInterval, PollInterval: pollInterval,
		Levels: lv, L0Retention: orNever(*l0Retention), SnapshotRetention: orNever(*snapRetention), GFS: gfsPolicy,
		RetentionInterval: *compactInterval, StateFile: *stateFile,
		Capture: capture.Options{}, Logger: log,
	})
	if err != nil {
		return err
	}
	if *addr != "" {
		maxLag := *healthLag
		if maxLag <= 0 {
			maxLag = max(10*(*syncInterval), 10*time.Second)
		}
		stop, err := serveStatus(ctx, statusOptions{Addr: *addr, Pprof: *pprofOn, HealthMaxLag: maxLag}, eng, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	start := time.Now()
	err = eng.Run(ctx)
	log.Info("stopped", "after", time.Since(start).Round(time.Second))
	return err
}

// dirExists refuses a database path whose directory does not exist, as a
// missing --dir is refused: nothing will ever create the file there, so
// retrying forever would only hide the typo. A missing file in an existing
// directory is waited for (the application may not have created it yet).
func dirExists(db string) error {
	dir := filepath.Dir(db)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usagef("database %s: directory %s does not exist (or is not one you can read): create it, or fix the path", db, dir)
	}
	if fi, err := os.Stat(db); err == nil && fi.IsDir() {
		return usagef("database %s is a directory: give its database files, or --dir %s for every database in it", db, db)
	}
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// raiseFDLimit lifts the soft fd limit to the hard one: each database held
// open costs a few fds.
func raiseFDLimit(log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		old := lim.Cur
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			log.Warn("could not raise the open-file limit", "limit", old, "error", err)
			return
		}
	}
	log.Debug("open-file limit", "limit", lim.Cur)
}

// parseLevels reads "30s,5m,1h" as levels 1, 2, 3.
func parseLevels(s string) ([]compact.Level, error) {
	levels := []compact.Level{}
	if s == "" || s == "none" {
		return levels, nil
	}
	for i, part := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d <= 0 {
			return nil, usagef("invalid --levels %q: give positive durations, e.g. 30s,5m,1h", s)
		}
		if i+1 >= storage.SnapshotLevel {
			return nil, usagef("invalid --levels %q: at most %d levels", s, storage.SnapshotLevel-1)
		}
		levels = append(levels, compact.Level{Level: i + 1, Interval: d})
	}
	return levels, nil
}

// orNever maps a flag's 0 ("forever") to the engine's negative.
func orNever(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// flagSet reports whether the command line set the named flag.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
