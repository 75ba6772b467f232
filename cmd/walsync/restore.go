package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/replicaurl"
)

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("restore", "walsync restore NAME|DB-PATH -o OUT -b URL [--txid N | --timestamp RFC3339]", stderr)
	var rf replicaFlags
	rf.register(fs)
	out := fs.String("o", "", "output database `path`, in an existing directory (must not exist unless --force)")
	txid := fs.String("txid", "", "restore the state at this TXID (decimal, or 16 hex digits)")
	ts := fs.String("timestamp", "", "restore the last sync at or before this time (RFC 3339)")
	pit := fs.String("point-in-time", "", "a TXID or an RFC 3339 time")
	force := fs.Bool("force", false, "replace an existing output file, keeping its mode and owner (refused while a process has it open)")
	dryRun := fs.Bool("dry-run", false, "print the plan (files, bytes, the TXID and time it reaches) and restore nothing")
	ifDBNotExists := fs.Bool("if-db-not-exists", false, "restore nothing and exit 0 when the output database already exists (restore-then-watch at boot)")
	ifReplicaExists := fs.Bool("if-replica-exists", false, "restore nothing and exit 0 when the replica holds no such database (a new tenant's first boot)")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give exactly one database NAME or the database's path (walsync list -b URL shows the names)")
	}
	if *out == "" && !*dryRun {
		return usagef("no output given: -o /path/to/restored.db")
	}
	if *ifDBNotExists && *force {
		return usagef("--if-db-not-exists and --force contradict each other: give one")
	}
	if *ifDBNotExists && *out != "" {
		// Only a database counts: booting on an empty file, a directory or
		// a dangling link while the replica holds the data would start
		// the application empty.
		fi, err := os.Stat(*out)
		switch {
		case err == nil && fi.Mode().IsRegular() && fi.Size() > 0:
			fmt.Fprintf(stdout, "%s exists: nothing restored (--if-db-not-exists)\n", termName(*out))
			return nil
		case err == nil && fi.IsDir():
			return fmt.Errorf("output %s is a directory, not a database: give the database file's path", termName(*out))
		case err == nil && fi.Size() == 0:
			return fmt.Errorf("output %s exists but is empty, not a database: remove it so that the replica can be restored there (or use --force without --if-db-not-exists)", termName(*out))
		case err == nil:
			return fmt.Errorf("output %s is not a regular file", termName(*out))
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("output %s: %w", termName(*out), err)
		}
		if _, lerr := os.Lstat(*out); lerr == nil {
			return fmt.Errorf("output %s is a symbolic link to nothing: remove it, or restore to the path it should name", termName(*out))
		}
	}
	noReplica := func(err error) error {
		if *ifReplicaExists && (errors.Is(err, replicaurl.ErrNoDatabase) || errors.Is(err, restore.ErrNoReplica)) {
			fmt.Fprintf(stdout, "%s: nothing restored (--if-replica-exists)\n", err)
			return nil
		}
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	target, err := parseTarget(*txid, *ts, *pit)
	if err != nil {
		return err
	}
	client, err := rf.open()
	if err != nil {
		return err
	}
	name, err := replicaurl.Resolve(ctx, client, pos[0])
	if err != nil {
		return noReplica(err)
	}
	db := client.Sub(name)
	if *dryRun {
		return printPlan(ctx, stdout, db, target)
	}
	res, err := restore.Restore(ctx, restore.Options{
		Client: db, Output: *out, Target: target, Force: *force, Logger: log,
	})
	if err != nil {
		return noReplica(err)
	}
	fmt.Fprintf(stdout, "restored %s to %s: TXID %d (%s), %d pages from %d files\n",
		termName(name), termName(*out), res.TXID, res.Timestamp.Format(time.RFC3339Nano), res.Pages, res.Files)
	return nil
}

func parseTarget(txid, ts, pit string) (restore.Target, error) {
	n := 0
	for _, s := range []string{txid, ts, pit} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return restore.Target{}, usagef("give at most one of --txid, --timestamp and --point-in-time")
	}
	if pit != "" {
		if _, err := time.Parse(time.RFC3339Nano, pit); err == nil {
			ts = pit
		} else {
			txid = pit
		}
	}
	var t restore.Target
	if txid != "" {
		id, err := parseTXID(txid)
		if err != nil {
			return t, err
		}
		t.TXID = id
	}
	if ts != "" {
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return t, usagef("invalid time %q: use RFC 3339, e.g. 2026-11-20T10:00:00Z", ts)
		}
		t.Time = tm
	}
	return t, nil
}

func parseTXID(s string) (ltx.TXID, error) {
	if len(s) == 16 {
		if id, err := ltx.ParseTXID(s); err == nil && id > 0 {
			return id, nil
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, usagef("invalid TXID %q: a positive decimal number or 16 hex digits", s)
	}
	return ltx.TXID(n), nil
}

func printPlan(ctx context.Context, w io.Writer, c storage.Client, target restore.Target) error {
	plan, err := restore.Plan(ctx, c, target)
	if err != nil {
		return fmt.Errorf("restore %s to %s: %w", c, target, err)
	}
	var total int64
	for _, fi := range plan {
		fmt.Fprintf(w, "%s\t%d bytes\n", fi, fi.Size)
		total += fi.Size
	}
	last := plan[len(plan)-1]
	hdr, err := storage.ReadHeader(ctx, c, last)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%d files, %d bytes: reaches TXID %d, synced at %s, a %d-byte database\n", len(plan), total,
		last.MaxTXID, time.UnixMilli(hdr.Timestamp).UTC().Format(time.RFC3339Nano), int64(hdr.Commit)*int64(hdr.PageSize))
	return nil
}
