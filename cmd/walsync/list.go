package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage/replicaurl"
)

func runList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("list", "walsync list [NAME|DB-PATH] -b URL [--strict]", stderr)
	var rf replicaFlags
	rf.register(fs)
	strict := fs.Bool("strict", false, "exit non-zero when a database cannot be read (it is listed with its error either way)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("list takes at most one database NAME or path, and -b URL")
	}
	client, err := rf.open()
	if err != nil {
		return err
	}
	var dbs []restore.DatabaseInfo
	if len(pos) == 1 {
		name, err := replicaurl.Resolve(ctx, client, pos[0])
		if err != nil {
			return err
		}
		info, err := restore.Describe(ctx, client.Sub(name))
		switch {
		case err != nil:
			dbs = append(dbs, restore.DatabaseInfo{Name: name, Err: err})
		case info != nil:
			info.Name = name
			dbs = append(dbs, *info)
		}
	} else if dbs, err = restore.ListDatabases(ctx, client); err != nil {
		return fmt.Errorf("list the databases of %s: %w", client, err)
	}
	if len(dbs) == 0 {
		// An empty table with exit 0 would pass a mistyped -b for an
		// empty replica.
		return replicaurl.NoDatabases(client)
	}
	// Names and errors come from the replica: escaped before a terminal.
	failed := 0
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	// Times are the LTX files' (when walsync read the commits), in UTC;
	// SNAPSHOTS counts L9 snapshots (a first full image is an L0 file).
	fmt.Fprintln(tw, "NAME\tLATEST TXID\tLATEST TIME (UTC)\tEARLIEST TXID\tEARLIEST TIME (UTC)\tSIZE\tL9 SNAPSHOTS\tSTORED BYTES BY LEVEL\tERROR")
	for _, d := range dbs {
		if d.Err != nil {
			failed++
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t%s\n", termName(d.Name), termText(d.Err.Error()))
			continue
		}
		earliestTXID, earliestTime := "-", "-"
		if d.EarliestTXID != 0 {
			earliestTXID, earliestTime = fmt.Sprint(uint64(d.EarliestTXID)), d.EarliestTime.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t-\n", termName(d.Name), d.TXID, d.Time.UTC().Format(time.RFC3339),
			earliestTXID, earliestTime, d.Size, d.Snapshots, levels(d.BytesPerLevel, d.FilesPerLevel))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed == 0 {
		return nil
	}
	msg := fmt.Sprintf("%d of %d databases could not be read; see their ERROR, and walsync verify NAME -b URL for every problem", failed, len(dbs))
	if *strict {
		return errors.New(msg)
	}
	fmt.Fprintf(stderr, "walsync list: %s (--strict makes this an error)\n", msg)
	return nil
}

// levels formats stored bytes per level, e.g. "L0 12 files 4096 B, L9 …".
func levels(bytes map[int]int64, files map[int]int) string {
	var parts []string
	for level := 0; level <= 9; level++ {
		if n, ok := files[level]; ok {
			parts = append(parts, fmt.Sprintf("L%d %d files %d B", level, n, bytes[level]))
		}
	}
	return strings.Join(parts, ", ")
}
