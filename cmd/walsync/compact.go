package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/replicaurl"
)

const compactSynopsis = "walsync compact NAME|DB-PATH -b URL [--hourly N --daily N --weekly N --monthly N | --retention DURATION] [--force]"

const compactHelp = `Applies a snapshot retention policy to the replica of database NAME (see
walsync list -b URL), or of the database at DB-PATH. It is a dry run unless --force: it prints the files it
would delete, the bytes freed, the snapshots kept and what stays restorable.

The policy is GFS by default (--hourly 24 --daily 7 --weekly 12 --monthly
12): keep the newest snapshot of each of the last N hours, days, ISO weeks
and months (UTC) that have a snapshot, plus the newest snapshot. Every point
from the oldest hourly snapshot on stays restorable (the dense window);
incremental files older than that are deleted, and the older snapshots kept
become single restore points. Counts left out keep their defaults.
--retention DURATION is Litestream's policy instead: keep the snapshots
created within DURATION and the newest one, and the history from the oldest
kept snapshot on.

Nothing deleted is ever needed by a point the policy keeps. compact only
applies retention: it does not merge pending L0-L3 files into higher levels
(walsync watch does that) and writes nothing. Do not run it with --force
while another walsync process applies retention to the same replica.
`

func runCompact(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("compact", compactSynopsis, stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\n%s\nOptions:\n", compactSynopsis, compactHelp)
		fs.PrintDefaults()
	}
	var rf replicaFlags
	rf.register(fs)
	d := compact.DefaultGFS
	gfs := map[string]*int{
		"hourly":  fs.Int("hourly", d.Hourly, "GFS: keep the newest snapshot of each of the last `N` hours that have one"),
		"daily":   fs.Int("daily", d.Daily, "GFS: keep the newest snapshot of each of the last `N` days that have one"),
		"weekly":  fs.Int("weekly", d.Weekly, "GFS: keep the newest snapshot of each of the last `N` ISO weeks that have one"),
		"monthly": fs.Int("monthly", d.Monthly, "GFS: keep the newest snapshot of each of the last `N` months that have one"),
	}
	retention := fs.Duration("retention", 0, "instead of GFS: keep the snapshots created within `DURATION` (e.g. 24h) and the newest")
	force := fs.Bool("force", false, "delete the files; without it, only print what would be deleted")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give exactly one database NAME (see walsync list -b URL)")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var gfsSet []string
	for _, name := range []string{"hourly", "daily", "weekly", "monthly"} {
		if set[name] {
			gfsSet = append(gfsSet, "--"+name)
		}
		if n := *gfs[name]; n < 0 {
			return usagef("invalid --%s %d: give 0 (keep none) or more", name, n)
		}
	}
	var policy compact.Policy
	switch {
	case set["retention"] && len(gfsSet) > 0:
		return usagef("--retention and %s select two different policies: give either --retention or the GFS counts", strings.Join(gfsSet, ", "))
	case set["retention"] && *retention <= 0:
		return usagef("invalid --retention %v: give a positive duration such as 24h", *retention)
	case set["retention"]:
		policy.SnapshotRetention = *retention
	default:
		policy.GFS = &compact.GFS{Hourly: *gfs["hourly"], Daily: *gfs["daily"], Weekly: *gfs["weekly"], Monthly: *gfs["monthly"]}
	}
	client, err := rf.open()
	if err != nil {
		return err
	}
	name, err := replicaurl.Resolve(ctx, client, pos[0])
	if err != nil {
		return err
	}
	c := client.Sub(name)
	plan, err := compact.PlanRetention(ctx, c, policy, time.Now())
	if err != nil {
		return err
	}
	if plan.Files == 0 {
		return fmt.Errorf("%s holds no LTX files: check the NAME (walsync list -b URL shows the replicated databases)", c)
	}

	fmt.Fprintf(stdout, "replica: %s\n", c)
	fmt.Fprintf(stdout, "policy:  %s\n", policyDescription(plan))
	fmt.Fprintf(stdout, "files:   %d, %s\n\n", plan.Files, humanBytes(plan.FilesBytes))
	switch {
	case len(plan.Delete) == 0:
		fmt.Fprintln(stdout, "nothing to delete")
	case *force:
		if err := compact.ApplyRetention(ctx, c, plan); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %d files, %s freed (%d bytes); %d files left:\n", len(plan.Delete), humanBytes(plan.Bytes), plan.Bytes, plan.FilesAfter)
		printFiles(stdout, plan.Delete)
	default:
		fmt.Fprintf(stdout, "would delete %d files, %s freed (%d bytes); %d files would be left:\n", len(plan.Delete), humanBytes(plan.Bytes), plan.Bytes, plan.FilesAfter)
		printFiles(stdout, plan.Delete)
	}

	fmt.Fprintf(stdout, "\nsnapshots kept: %d\n", len(plan.Kept))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TXID\tTIME\tKEPT AS")
	for _, k := range plan.Kept {
		fmt.Fprintf(tw, "  %d\t%s\t%s\n", k.File.MaxTXID, formatTime(k.Time), k.ReasonString())
	}
	tw.Flush()

	if len(plan.Delete) == 0 {
		fmt.Fprintln(stdout, "\nrestorable:")
	} else {
		fmt.Fprintln(stdout, "\nrestorable after retention:")
	}
	printWindow(stdout, plan.After, plan.Isolated)
	if len(plan.Delete) > 0 {
		fmt.Fprintln(stdout, "before:")
		printWindow(stdout, plan.Before, nil)
	}
	if len(plan.Delete) > 0 && !*force {
		fmt.Fprintln(stdout, "\ndry run: nothing was deleted; pass --force to delete these files")
	}
	return nil
}

func policyDescription(plan *compact.RetentionPlan) string {
	p := plan.Policy
	if p.GFS != nil {
		s := "GFS " + p.GFS.String()
		if plan.Protected != 0 {
			what := "the oldest hourly snapshot"
			if p.GFS.Hourly == 0 {
				what = "the newest snapshot"
			}
			s += fmt.Sprintf("; dense window from %s, TXID %d", what, plan.Protected)
		}
		return s
	}
	s := fmt.Sprintf("keep snapshots created within %v and the newest", p.SnapshotRetention)
	if plan.Protected != 0 {
		s += fmt.Sprintf("; history from the oldest kept snapshot, TXID %d", plan.Protected)
	}
	return s
}

func printFiles(w io.Writer, files []*storage.FileInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  LEVEL\tFILE\tSIZE")
	for _, fi := range files {
		fmt.Fprintf(tw, "  L%d\t%s\t%d\n", fi.Level, fi.Name(), fi.Size)
	}
	tw.Flush()
}

func printWindow(w io.Writer, win compact.Window, isolated []compact.KeptSnapshot) {
	if !win.Restorable() {
		fmt.Fprintf(w, "  the latest state (TXID %d) cannot be restored: the replica has a gap\n", win.Latest)
	} else {
		fmt.Fprintf(w, "  times: %s (TXID %d) to %s (TXID %d), each to the newest kept sync at or before it\n",
			formatTime(win.FromTime), win.From, formatTime(win.LatestTime), win.Latest)
		fmt.Fprintf(w, "  TXIDs: every one from %d (%s) to %d", win.EveryTXIDFrom, formatTime(win.EveryTXIDFromTime), win.Latest)
		if win.EveryTXIDFrom > win.From {
			fmt.Fprintf(w, "; from %d to %d, those where a compacted file ends", win.From, win.EveryTXIDFrom)
		}
		fmt.Fprintln(w)
	}
	if len(isolated) > 0 {
		var pts []string
		for _, k := range isolated {
			pts = append(pts, fmt.Sprint(k.File.MaxTXID))
		}
		fmt.Fprintf(w, "  older: %d snapshots, each on its own: TXID %s\n", len(isolated), strings.Join(pts, ", "))
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
