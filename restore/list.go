package restore

import (
	"context"
	"fmt"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
)

// DatabaseInfo summarizes one replicated database.
type DatabaseInfo struct {
	Name string
	TXID ltx.TXID  // latest TXID
	Time time.Time // time of the latest sync
	Size int64     // database size in bytes at that TXID
}

// ListDatabases finds every database replicated below c.
func ListDatabases(ctx context.Context, c storage.Client) ([]DatabaseInfo, error) {
	l, ok := c.(storage.ReplicaLister)
	if !ok {
		return nil, fmt.Errorf("%s cannot list its databases", c)
	}
	names, err := l.ListReplicas(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]DatabaseInfo, 0, len(names))
	for _, name := range names {
		sub := c
		if name != "" {
			sub = c.Sub(name)
		}
		all, err := ListAll(ctx, sub)
		if err != nil {
			return nil, err
		}
		var last *storage.FileInfo
		for _, fi := range all {
			if last == nil || fi.MaxTXID > last.MaxTXID {
				last = fi
			}
		}
		if last == nil {
			continue
		}
		hdr, err := storage.ReadHeader(ctx, sub, last)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, DatabaseInfo{
			Name: name, TXID: last.MaxTXID, Time: time.UnixMilli(hdr.Timestamp).UTC(),
			Size: int64(hdr.Commit) * int64(hdr.PageSize),
		})
	}
	return out, nil
}
