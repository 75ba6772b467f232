package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/walsync/walsync/restore"
)

func runList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("list", "walsync list -b URL", stderr)
	var rf replicaFlags
	rf.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("list takes no arguments, only -b URL")
	}
	client, err := rf.open()
	if err != nil {
		return err
	}
	dbs, err := restore.ListDatabases(ctx, client)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTXID\tTIME\tSIZE")
	for _, d := range dbs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", d.Name, d.TXID, d.Time.UTC().Format(time.RFC3339), d.Size)
	}
	return tw.Flush()
}
