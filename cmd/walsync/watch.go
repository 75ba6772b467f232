package main

import (
	"context"
	"io"
	"time"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/engine"
)

func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("watch", "walsync watch DB... -b URL [options]", stderr)
	var rf replicaFlags
	rf.register(fs)
	syncInterval := fs.Duration("sync-interval", engine.DefaultSyncInterval, "at most one upload per database per `interval`")
	snapInterval := fs.Duration("snapshot-interval", engine.DefaultSnapshotInterval, "write a snapshot of changed databases this often (0: never)")
	workers := fs.Int("workers", engine.DefaultWorkers, "databases synced at once")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	paths, err := parse(fs, args)
	if err != nil {
		return err
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
	si := *snapInterval
	if si == 0 {
		si = -1
	}
	eng, err := engine.New(engine.Options{
		Databases: dbs, SyncInterval: *syncInterval, SnapshotInterval: si, Workers: *workers,
		Capture: capture.Options{}, Logger: log,
	})
	if err != nil {
		return err
	}
	start := time.Now()
	err = eng.Run(ctx)
	log.Info("stopped", "after", time.Since(start).Round(time.Second))
	return err
}
