package main

import (
	"context"
	"flag"
	"io"
	"strings"
	"time"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/storage"
)

func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("watch", "walsync watch DB... -b URL [options]", stderr)
	var rf replicaFlags
	rf.register(fs)
	syncInterval := fs.Duration("sync-interval", engine.DefaultSyncInterval, "at most one upload per database per `interval`")
	snapInterval := fs.Duration("snapshot-interval", engine.DefaultSnapshotInterval, "write a snapshot of changed databases this often (0: never)")
	workers := fs.Int("workers", engine.DefaultWorkers, "databases synced at once")
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
	paths, err := parse(fs, args)
	if err != nil {
		return err
	}
	si := *snapInterval
	if si == 0 {
		si = -1
	}
	lv, err := parseLevels(*levels)
	if err != nil {
		return err
	}
	var gfsPolicy *compact.GFS
	if *gfs {
		if err := (compact.Policy{GFS: &g}).Validate(); err != nil {
			return usageError{err}
		}
		gfsPolicy = &g
		if !flagSet(fs, "snapshot-interval") {
			si = time.Hour
		}
	}
	names, client, err := rf.databases("watch", paths)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	dbs := make([]engine.Database, len(paths))
	for i, p := range paths {
		dbs[i] = engine.Database{Path: p, Client: client.Sub(names[i])}
		log.Info("replicating", "db", p, "replica", dbs[i].Client.String())
	}
	eng, err := engine.New(engine.Options{
		Databases: dbs, SyncInterval: *syncInterval, SnapshotInterval: si, Workers: *workers,
		Levels: lv, L0Retention: orNever(*l0Retention), SnapshotRetention: orNever(*snapRetention), GFS: gfsPolicy,
		RetentionInterval: *compactInterval,
		Capture:           capture.Options{}, Logger: log,
	})
	if err != nil {
		return err
	}
	start := time.Now()
	err = eng.Run(ctx)
	log.Info("stopped", "after", time.Since(start).Round(time.Second))
	return err
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
