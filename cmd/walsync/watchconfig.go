package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/walsync/walsync/config"
	"github.com/walsync/walsync/discover"
	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/replicaurl"
	"github.com/walsync/walsync/storage/s3"
)

// replicaClients opens one storage client per bucket and set of
// credentials, and derives each database's client from it with Sub, so a
// config naming thousands of databases in one bucket holds one S3 client.
type replicaClients struct {
	roots map[string]storage.Client
}

func (rc *replicaClients) open(r config.Replica) (storage.Client, error) {
	u, err := r.ReplicaURL()
	if err != nil {
		return nil, err
	}
	loc, err := replicaurl.Parse(u) // the one parser of -b and url:
	if err != nil {
		return nil, err
	}
	if loc.Bucket == "" {
		return replicaurl.Open(u, replicaurl.Options{})
	}
	bucket, prefix := loc.Bucket, loc.Prefix
	key := strings.Join([]string{bucket, r.Endpoint, r.Region, fmt.Sprint(r.ForcePathStyle != nil && *r.ForcePathStyle), fmt.Sprint(r.ForcePathStyle == nil), r.AccessKeyID}, "\x00")
	root, ok := rc.roots[key]
	if !ok {
		cfg := s3.Config{Endpoint: r.Endpoint, Region: r.Region, ForcePathStyle: r.ForcePathStyle}
		if r.AccessKeyID != "" || r.SecretAccessKey != "" {
			cfg.Credentials = &s3.Credentials{AccessKeyID: r.AccessKeyID, SecretAccessKey: r.SecretAccessKey, Source: "config file"}
		}
		if root, err = replicaurl.Open("s3://"+bucket, replicaurl.Options{S3: cfg}); err != nil {
			return nil, err
		}
		if rc.roots == nil {
			rc.roots = map[string]storage.Client{}
		}
		rc.roots[key] = root
	}
	if prefix == "" {
		return root, nil
	}
	return root.Sub(prefix), nil
}

// configDatabases turns the config's dbs into the engine's databases and
// directory sources.
func configDatabases(cfg *config.Config, log *slog.Logger) ([]engine.Database, []engine.Source, error) {
	var rc replicaClients
	var dbs []engine.Database
	var sources []engine.Source
	for _, d := range cfg.DBs {
		var r config.Replica
		shared := d.Replica == nil
		switch {
		case d.Replica != nil:
			r = *d.Replica
		case cfg.Walsync.Replica != nil:
			r = *cfg.Walsync.Replica
		default:
			return nil, nil, fmt.Errorf("config line %d: database %s%s has no replica and the config has no walsync.replica", d.Line, d.Path, d.Dir)
		}
		client, err := rc.open(r)
		if err != nil {
			return nil, nil, fmt.Errorf("config line %d: %w", r.Line, err)
		}
		if d.Dir != "" {
			// Each database lies below the directory's replica at its path
			// relative to the directory, as in Litestream's directory mode.
			src, err := discover.Source{Dir: d.Dir, Pattern: d.Pattern, Recursive: d.Recursive}.Normalize()
			if err != nil {
				return nil, nil, fmt.Errorf("config line %d: %w", d.Line, err)
			}
			sources = append(sources, engine.Source{Source: src, Client: client})
			log.Info("replicating databases found in directory", "dir", src.Dir, "pattern", src.Pattern, "recursive", src.Recursive, "replica", client.String())
			continue
		}
		var name string
		if shared {
			if name, err = replicaurl.Name(d.Path); err != nil {
				return nil, nil, err
			}
			client = client.Sub(name)
		}
		dbs = append(dbs, engine.Database{Path: d.Path, Client: client, Name: name})
		log.Info("replicating", "db", d.Path, "replica", client.String())
	}
	return dbs, sources, nil
}

// replicaSyncInterval is the sync interval the config's replicas ask for:
// the engine has one, so the shortest wins.
func replicaSyncInterval(cfg *config.Config) (time.Duration, bool) {
	var best time.Duration
	for _, d := range cfg.DBs {
		if d.Replica != nil && d.Replica.SyncInterval != nil && (best == 0 || *d.Replica.SyncInterval < best) {
			best = *d.Replica.SyncInterval
		}
	}
	return best, best > 0
}
