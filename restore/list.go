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

	// The restorable window: restores continue from EarliestTXID, the
	// oldest file starting at TXID 1 that they continue from (see
	// Window.Earliest), to TXID.
	EarliestTXID ltx.TXID
	EarliestTime time.Time

	Snapshots     int           // level-9 snapshots
	BytesPerLevel map[int]int64 // stored bytes per level
	FilesPerLevel map[int]int

	// Err is why the database could not be described (a corrupt or
	// unreadable object); only Name is set then.
	Err error
}

// ListDatabases finds every database replicated below c. A database that
// cannot be described is listed with its Err, and the others still are:
// one bad object does not hide the rest. The error is for the listing
// itself (or a cancelled ctx).
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
		info, err := Describe(ctx, sub)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			out = append(out, DatabaseInfo{Name: name, Err: err})
			continue
		}
		if info == nil {
			continue
		}
		info.Name = name
		out = append(out, *info)
	}
	return out, nil
}

// Describe summarizes one database's replica; nil when it holds no files.
func Describe(ctx context.Context, c storage.Client) (*DatabaseInfo, error) {
	all, err := ListAll(ctx, c)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, nil
	}
	info := &DatabaseInfo{BytesPerLevel: map[int]int64{}, FilesPerLevel: map[int]int{}}
	var last *storage.FileInfo
	for _, fi := range all {
		info.BytesPerLevel[fi.Level] += fi.Size
		info.FilesPerLevel[fi.Level]++
		if fi.Level == storage.SnapshotLevel {
			info.Snapshots++
		}
		if last == nil || fi.MaxTXID > last.MaxTXID {
			last = fi
		}
	}
	hdr, err := storage.ReadHeader(ctx, c, last)
	if err != nil {
		return nil, err
	}
	info.TXID, info.Time = last.MaxTXID, time.UnixMilli(hdr.Timestamp).UTC()
	info.Size = int64(hdr.Commit) * int64(hdr.PageSize)
	if first := NewChain(all).Window().Earliest; first != nil {
		h, err := storage.ReadHeader(ctx, c, first)
		if err != nil {
			return nil, err
		}
		info.EarliestTXID, info.EarliestTime = first.MaxTXID, time.UnixMilli(h.Timestamp).UTC()
	}
	return info, nil
}
