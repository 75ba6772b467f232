package main

import (
	"context"
	"fmt"
	"io"

	"github.com/walsync/walsync/capture"
)

func runSnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("snapshot", "walsync snapshot DB... -b URL", stderr)
	var rf replicaFlags
	rf.register(fs)
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	paths, err := parse(fs, args)
	if err != nil {
		return err
	}
	names, client, err := rf.databases("snapshot", paths)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	// One database's failure does not keep the others from their
	// snapshots: each is reported, and the exit status says one failed.
	var failed []error
	for i, p := range paths {
		st, err := snapshotOne(ctx, capture.Options{Path: p, Client: client.Sub(names[i]), Logger: log})
		if err != nil {
			err = fmt.Errorf("snapshot %s: %w", p, err)
			fmt.Fprintln(stderr, "walsync:", termText(err.Error()))
			failed = append(failed, err)
			continue
		}
		fmt.Fprintf(stdout, "%s\t%s\tTXID %d\n", termName(p), termName(client.Sub(names[i]).String()), st.TXID)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d snapshots failed", len(failed), len(paths))
	}
	return nil
}

func snapshotOne(ctx context.Context, opts capture.Options) (capture.Stats, error) {
	db, err := capture.Open(ctx, opts)
	if err != nil {
		return capture.Stats{}, err
	}
	st, err := db.Snapshot(ctx)
	if cerr := db.Close(ctx); err == nil {
		err = cerr
	}
	return st, err
}
