// Package replicaurl turns a replica URL into a storage client:
// s3://bucket/prefix, file:///dir, or a plain directory path.
package replicaurl

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/s3"
)

// Options carry settings a URL cannot (S3 endpoint, region, …).
type Options struct {
	S3 s3.Config // Bucket and Prefix are taken from the URL
}

// Open returns the client for raw. Clients of one call share nothing with
// another call: open each bucket once and derive databases with Sub.
func Open(raw string, opts Options) (storage.Client, error) {
	if raw == "" {
		return nil, fmt.Errorf("no replica given: pass -b s3://bucket/prefix or -b /path/to/dir")
	}
	switch {
	case strings.HasPrefix(raw, "s3://"):
		bucket, prefix, err := s3.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		cfg := opts.S3
		cfg.Bucket, cfg.Prefix = bucket, prefix
		return s3.New(cfg)
	case strings.HasPrefix(raw, "file://"):
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("invalid replica URL %q", s3.RedactUserinfo(raw))
		}
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("invalid replica URL %q: file URLs take an absolute path, file:///dir", s3.RedactUserinfo(raw))
		}
		return file.New(u.Path), nil
	case strings.Contains(raw, "://"):
		return nil, fmt.Errorf("unsupported replica URL %q: use s3://bucket/prefix, file:///dir or a directory path", s3.RedactUserinfo(raw))
	case strings.Contains(strings.SplitN(raw, "/", 2)[0], ":"), strings.HasPrefix(raw, "s3//"), strings.HasPrefix(raw, "file//"):
		// "s3:/bucket", "s3//bucket" or "KEY:SECRET@host/x" is a mistyped
		// URL: as a directory it would replicate to the local disk, and
		// log its name, credentials and all.
		return nil, fmt.Errorf("replica %q looks like a mistyped URL: use s3://bucket/prefix, or ./%s if it really is a directory", s3.RedactUserinfo(raw), s3.RedactUserinfo(raw))
	}
	abs, err := filepath.Abs(raw)
	if err != nil {
		return nil, err
	}
	return file.New(abs), nil
}

// Name derives a database's replica sub-path from its file path: the
// parent directory and the file name without its extension, so that
// /srv/t1/app.db and /srv/t2/app.db become t1/app and t2/app. The name is a
// stable function of the path alone: adding databases never renames others.
func Name(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	base := filepath.Base(abs)
	if ext := filepath.Ext(base); ext != "" && ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	parent := filepath.Base(filepath.Dir(abs))
	if parent == "/" || parent == "." {
		return base, nil
	}
	return parent + "/" + base, nil
}

// Names derives every database's name and fails on a collision, which
// would make two databases share one replica. Names collide when their
// storage.ReplicaKey forms are equal (case and Unicode normalisation).
func Names(paths []string) ([]string, error) {
	names := make([]string, len(paths))
	seen := map[string]string{}
	for i, p := range paths {
		n, err := Name(p)
		if err != nil {
			return nil, err
		}
		abs, _ := filepath.Abs(p)
		if other, ok := seen[storage.ReplicaKey(n)]; ok {
			if other == abs {
				return nil, fmt.Errorf("database %s is given twice", abs)
			}
			return nil, fmt.Errorf("databases %s and %s would share the replica name %q; replicate them under different -b URLs", other, abs, n)
		}
		seen[storage.ReplicaKey(n)] = abs
		names[i] = n
	}
	return names, nil
}
