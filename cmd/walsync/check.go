package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/walsync/walsync/config"
	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/s3"
)

// checkTimeout bounds one replica's check: a dozen small requests.
const checkTimeout = 2 * time.Minute

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "walsync check -b URL | --config FILE", stderr)
	var rf replicaFlags
	rf.register(fs)
	configPath := fs.String("config", "", "check every replica of a Litestream-style YAML `FILE`")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("check takes no arguments, only -b URL or --config FILE")
	}
	var clients []storage.Client
	switch {
	case *configPath != "" && rf.url != "":
		return usagef("give -b URL or --config FILE, not both")
	case *configPath != "":
		cfg, warnings, err := config.Load(*configPath)
		if err != nil {
			return usageError{err}
		}
		for _, w := range warnings {
			fmt.Fprintln(stderr, "walsync check: warning:", w.String())
		}
		if clients, err = configReplicas(cfg); err != nil {
			return usageError{err}
		}
	default:
		c, err := rf.open()
		if err != nil {
			return err
		}
		clients = []storage.Client{c}
	}
	failed := 0
	for i, c := range clients {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		sc, ok := c.(*s3.Client)
		if !ok {
			fmt.Fprintf(stdout, "%s: a directory replica; nothing to check\n", c)
			continue
		}
		fmt.Fprintf(stdout, "%s at %s\n", sc, sc.Endpoint())
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		res := sc.Check(cctx, s3.CheckOptions{})
		cancel()
		for _, l := range res.Lines() {
			fmt.Fprintln(stdout, termText(l))
		}
		if res.Failed() {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d replicas failed the check: see FAIL above", failed, len(clients))
	}
	return nil
}

// configReplicas returns one client per distinct replica of cfg: its
// bucket and path, without the per-database names below it.
func configReplicas(cfg *config.Config) ([]storage.Client, error) {
	var rc replicaClients
	var out []storage.Client
	seen := map[string]bool{}
	for _, d := range cfg.DBs {
		r := d.Replica
		if r == nil {
			r = cfg.Walsync.Replica
		}
		if r == nil {
			return nil, fmt.Errorf("config line %d: database %s%s has no replica and the config has no walsync.replica", d.Line, d.Path, d.Dir)
		}
		c, err := rc.open(*r)
		if err != nil {
			return nil, fmt.Errorf("config line %d: %w", r.Line, err)
		}
		if !seen[c.String()] {
			seen[c.String()] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// probeAtStart runs the read-only part of the check (credentials, bucket
// and region, clock) once per S3 bucket, in the background, and logs a
// WARN for each step that fails. It writes nothing: a probe object left by
// a kill or a refused delete would sit in the user's replica, so the write,
// delete and conditional-write probes are walsync check's.
func probeAtStart(ctx context.Context, dbs []engine.Database, sources []engine.Source, log *slog.Logger) {
	var clients []storage.Client
	for _, d := range dbs {
		clients = append(clients, d.Client)
	}
	for _, src := range sources {
		clients = append(clients, src.Client)
	}
	seen := map[string]bool{}
	for _, c := range clients {
		sc, ok := c.(*s3.Client)
		if !ok || seen[sc.Endpoint()+"\x00"+sc.Bucket()] {
			continue
		}
		seen[sc.Endpoint()+"\x00"+sc.Bucket()] = true
		go func() {
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			res := sc.Check(pctx, s3.CheckOptions{ReadOnly: true})
			if ctx.Err() != nil {
				return
			}
			for _, st := range res.Steps {
				switch {
				case !st.OK:
					log.Warn("S3 start check failed: "+st.Name+"; walsync check -b s3://"+sc.Bucket()+" tests every step",
						"bucket", sc.Bucket(), "endpoint", sc.Endpoint(), "found", st.Detail, "fix", st.Fix)
				case st.Warn:
					log.Warn("S3 start check: "+st.Name, "bucket", sc.Bucket(), "endpoint", sc.Endpoint(), "found", st.Detail, "fix", st.Fix)
				default:
					log.Debug("S3 start check: "+st.Name, "bucket", sc.Bucket(), "found", st.Detail)
				}
			}
		}()
	}
}
