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
	for i, p := range paths {
		db, err := capture.Open(ctx, capture.Options{Path: p, Client: client.Sub(names[i]), Logger: log})
		if err != nil {
			return err
		}
		st, err := db.Snapshot(ctx)
		if cerr := db.Close(ctx); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", p, err)
		}
		fmt.Fprintf(stdout, "%s\t%s\tTXID %d\n", termName(p), termName(client.Sub(names[i]).String()), st.TXID)
	}
	return nil
}
