package main

// Reading a replica as the bench sees it (not through the counting
// proxy): an S3 bucket or a directory.

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// replicaView reads a tool's replica (not through the counting proxy).
type replicaView interface {
	// l0 returns the L0 keys of a database after the key after, in order.
	l0(ctx context.Context, name, after string) ([]string, error)
	// all returns every LTX key of a database.
	all(ctx context.Context, name string) ([]string, error)
	get(ctx context.Context, key string) ([]byte, error)
	// names returns the databases with at least one LTX file.
	names(ctx context.Context) (map[string]int, error)
}

// s3View reads a bucket: <name>/<level>/<file>.ltx.
type s3View struct {
	c      *s3.Client
	bucket string
}

// list returns the LTX keys under prefix after the key after.
func (v s3View) list(ctx context.Context, prefix, after string) ([]string, error) {
	var keys []string
	err := eachObject(ctx, v.c, v.bucket, prefix, after, func(k string, _ int64) {
		if strings.HasSuffix(k, ".ltx") {
			keys = append(keys, k)
		}
	})
	return keys, err
}

func (v s3View) l0(ctx context.Context, name, after string) ([]string, error) {
	return v.list(ctx, name+"/0000/", after)
}
func (v s3View) all(ctx context.Context, name string) ([]string, error) {
	return v.list(ctx, name+"/", "")
}
func (v s3View) get(ctx context.Context, key string) ([]byte, error) {
	return getObject(ctx, v.c, v.bucket, key)
}
func (v s3View) names(ctx context.Context) (map[string]int, error) {
	keys, err := v.list(ctx, "", "")
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	for _, k := range keys {
		m[path.Dir(path.Dir(k))]++ // name/NNNN/file.ltx
	}
	return m, nil
}

// fileView reads a file replica: <root>/<name>/ltx/<level>/<file>.ltx.
type fileView struct{ root string }

func (v fileView) l0(_ context.Context, name, after string) ([]string, error) {
	dir := path.Join(name, "ltx", "0")
	ents, err := os.ReadDir(filepath.Join(v.root, filepath.FromSlash(dir)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var keys []string
	for _, e := range ents {
		if k := dir + "/" + e.Name(); strings.HasSuffix(k, ".ltx") && k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

func (v fileView) walk(sub string, f func(rel string, d fs.DirEntry)) error {
	base := filepath.Join(v.root, filepath.FromSlash(sub))
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(v.root, p)
		f(filepath.ToSlash(rel), d)
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (v fileView) all(_ context.Context, name string) ([]string, error) {
	var keys []string
	err := v.walk(path.Join(name, "ltx"), func(rel string, d fs.DirEntry) {
		if !d.IsDir() && strings.HasSuffix(rel, ".ltx") {
			keys = append(keys, rel)
		}
	})
	return keys, err
}
func (v fileView) get(_ context.Context, key string) ([]byte, error) {
	return os.ReadFile(filepath.Join(v.root, filepath.FromSlash(key)))
}
func (v fileView) names(context.Context) (map[string]int, error) {
	m := map[string]int{}
	err := v.walk("", func(rel string, d fs.DirEntry) {
		if d.IsDir() || !strings.HasSuffix(rel, ".ltx") {
			return
		}
		if i := strings.LastIndex(rel, "/ltx/"); i > 0 {
			m[rel[:i]]++
		}
	})
	return m, err
}

// fileStamp is what tells a file changed.
type fileStamp struct {
	size int64
	mod  time.Time
}

// tree returns every file of the replica.
func (v fileView) tree() map[string]fileStamp {
	m := map[string]fileStamp{}
	_ = v.walk("", func(rel string, d fs.DirEntry) {
		if d.IsDir() {
			return
		}
		if info, err := d.Info(); err == nil {
			m[rel] = fileStamp{info.Size(), info.ModTime()}
		}
	})
	return m
}

// diffTrees counts the files added, changed and removed from a to b.
func diffTrees(a, b map[string]fileStamp) (added, changed, removed int) {
	for k, s := range b {
		if o, ok := a[k]; !ok {
			added++
		} else if o != s {
			changed++
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			removed++
		}
	}
	return added, changed, removed
}
