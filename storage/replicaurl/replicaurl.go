// Package replicaurl turns a replica URL into a storage client
// (s3://bucket/prefix, file:///dir, or a plain directory path), a database
// path into its replica name, and a name or path given to a command back
// into the replica it means.
package replicaurl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/walsync/walsync/internal/suggest"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/s3"
)

// Options carry settings a URL cannot (S3 endpoint, region, …).
type Options struct {
	S3 s3.Config // Bucket and Prefix are taken from the URL
}

// Location is a parsed replica URL: an S3 bucket and prefix, or a local
// directory.
type Location struct {
	Bucket, Prefix string // S3; Bucket is "" for a directory
	Dir            string // an absolute directory path
}

// expected is the forms every refusal names.
const expected = "use s3://bucket/prefix, file:///dir or a directory path"

// Parse reads a replica URL. It is the one parser of -b and of a config's
// url: s3://bucket/prefix; file:/dir, file:///dir or file://localhost/dir
// (RFC 8089); or a directory path. Anything else that starts like a URL
// (s3:/x, S3://x, gs://x, https://x, KEY:SECRET@host/x) is refused with the
// form walsync expected, because as a directory it would replicate to the
// local disk under a surprising name. Errors never repeat credentials.
func Parse(raw string) (Location, error) {
	shown := s3.RedactUserinfo(raw)
	if raw == "" {
		return Location{}, fmt.Errorf("no replica given: pass -b s3://bucket/prefix or -b /path/to/dir")
	}
	if strings.TrimSpace(raw) != raw {
		return Location{}, fmt.Errorf("replica %q begins or ends with white space: remove it (%q would be a local directory)", shown, shown)
	}
	scheme, rest, isURL := splitScheme(raw)
	switch {
	case !isURL && (strings.HasPrefix(raw, "s3//") || strings.HasPrefix(raw, "file//")):
		return Location{}, fmt.Errorf("replica %q looks like a mistyped URL: %s, or ./%s if it really is a directory", shown, expected, shown)
	case !isURL:
		abs, err := filepath.Abs(raw)
		if err != nil {
			return Location{}, fmt.Errorf("replica directory %q: %w", shown, err)
		}
		return Location{Dir: abs}, nil
	case scheme == "s3" && strings.HasPrefix(rest, "//"):
		bucket, prefix, err := s3.ParseURL(raw)
		if err != nil {
			return Location{}, err
		}
		return Location{Bucket: bucket, Prefix: prefix}, nil
	case scheme == "file":
		return parseFile(raw, shown)
	case scheme != strings.ToLower(scheme) && (strings.EqualFold(scheme, "s3") || strings.EqualFold(scheme, "file")):
		// A store that merged letter cases would not be told apart from a
		// local directory named "S3:": one spelling only.
		return Location{}, fmt.Errorf("replica %q: write the scheme in lower case, %s", shown, fixed(strings.ToLower(scheme), shown))
	case strings.HasPrefix(rest, "//") && (scheme == "http" || scheme == "https"):
		return Location{}, fmt.Errorf("unsupported replica URL %q: for an S3-compatible server give its address with --endpoint %s://host[:port] and the bucket as -b s3://bucket/prefix", shown, scheme)
	case strings.HasPrefix(rest, "//"):
		return Location{}, fmt.Errorf("unsupported replica URL %q: %s", shown, expected)
	case scheme == "s3":
		return Location{}, fmt.Errorf("replica %q looks like a mistyped URL: did you mean %s?", shown, fixed("s3", shown))
	}
	// "KEY:SECRET@host/x", "c:dir": as a directory it would log its name,
	// credentials and all.
	return Location{}, fmt.Errorf("replica %q looks like a mistyped URL: %s, or ./%s if it really is a directory", shown, expected, shown)
}

// splitScheme splits raw at a URL scheme's colon: an RFC 3986 scheme
// before any "/".
func splitScheme(raw string) (scheme, rest string, ok bool) {
	i := strings.IndexByte(raw, ':')
	if i <= 0 || strings.Contains(raw[:i], "/") {
		return "", "", false
	}
	for j, r := range raw[:i] {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (j == 0 || !(r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return "", "", false
		}
	}
	return raw[:i], raw[i+1:], true
}

// fixed is shown, a URL with a mistyped scheme or slashes, in the form
// walsync reads: scheme://rest.
func fixed(scheme, shown string) string {
	_, rest, _ := splitScheme(shown)
	rest = strings.TrimLeft(rest, "/")
	if scheme == "file" {
		return "file:///" + rest
	}
	return scheme + "://" + rest
}

// parseFile reads an RFC 8089 file URL: its path must be absolute and its
// host empty or localhost.
func parseFile(raw, shown string) (Location, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("invalid replica URL %q: %s", shown, expected)
	}
	if u.User != nil || (u.Host != "" && u.Host != "localhost") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return Location{}, fmt.Errorf("invalid replica URL %q: file URLs take an absolute path and no host, file:///dir (or give the directory path itself)", shown)
	}
	return Location{Dir: filepath.Clean(u.Path)}, nil
}

// Open returns the client for raw (see Parse). Clients of one call share
// nothing with another call: open each bucket once and derive databases
// with Sub.
func Open(raw string, opts Options) (storage.Client, error) {
	loc, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	if loc.Bucket == "" {
		return file.New(loc.Dir), nil
	}
	cfg := opts.S3
	cfg.Bucket, cfg.Prefix = loc.Bucket, loc.Prefix
	return s3.New(cfg)
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

// Resolve returns the replica name below c that arg refers to: arg itself
// when a replica has that name (t1/app, or t1/app.db for a database found
// with --dir; t1 when only t1/app exists is not one), else, when arg looks like a file path (it has a "/" or an
// extension, or the file exists), the name watch gives that database
// (Name: /var/lib/app/t1/app.db is t1/app), as Litestream's
// "restore /path/to/db" does. An arg that reaches no replica is an error
// that says so and names the closest replicas that exist; a c that holds
// no replica at all is NoDatabases.
func Resolve(ctx context.Context, c storage.Client, arg string) (string, error) {
	name := strings.Trim(arg, "/")
	if name == "" {
		return "", fmt.Errorf("no database name given (walsync list -b URL shows them)")
	}
	var cands []string
	if inside(name) {
		cands = append(cands, name)
	}
	if looksLikePath(arg) {
		if n, err := Name(arg); err == nil && n != name {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return "", fmt.Errorf("database name %q leaves the replica location: a name is a path below -b, without . or .. elements", name)
	}
	for _, n := range cands {
		sub := c
		if n != "" {
			sub = c.Sub(n)
		}
		has, err := isReplica(ctx, sub)
		if err != nil {
			return "", fmt.Errorf("look for database %q under %s: %w", n, c, err)
		}
		if has {
			return n, nil
		}
	}
	var names []string
	if l, ok := c.(storage.ReplicaLister); ok {
		var err error
		if names, err = l.ListReplicas(ctx); err != nil {
			return "", fmt.Errorf("list the databases under %s: %w", c, err)
		}
		if len(names) == 0 {
			return "", NoDatabases(c)
		}
	}
	msg := fmt.Sprintf("no database named %q under %s", name, c)
	if len(cands) > 1 || cands[0] != name {
		msg += fmt.Sprintf(", nor %q, the name of the database at that path", cands[len(cands)-1])
	}
	closest := suggest.Closest(name, names, 5)
	if len(cands) > 1 || cands[0] != name {
		closest = slices.Compact(append(closest, suggest.Closest(cands[len(cands)-1], names, 5)...))
	}
	switch {
	case len(closest) > 0:
		msg += "; closest: " + quoteAll(closest[:min(5, len(closest))])
	case len(names) > 0 && len(names) <= 5:
		msg += "; it holds " + quoteAll(names)
	}
	return "", &noDatabaseError{msg + " (walsync list -b URL shows every database)"}
}

// ErrNoDatabase is what Resolve's error wraps when no replica has the name
// (restore --if-replica-exists makes that a success).
var ErrNoDatabase = errors.New("no such database")

type noDatabaseError struct{ msg string }

func (e *noDatabaseError) Error() string        { return e.msg }
func (e *noDatabaseError) Is(target error) bool { return target == ErrNoDatabase }

// inside reports whether name, a slash-separated path, stays below the
// location it is taken from: no empty, "." or ".." element.
func inside(name string) bool {
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." {
			return false
		}
	}
	return true
}

// isReplica reports whether c is itself a replica: one of its own levels
// holds an LTX file, the rule by which ListReplicas names replicas. A
// HasFiles that answers false settles it in one request; true is not
// enough, as on S3 it also counts replicas nested below (t1 when only
// t1/app exists). Probing the levels costs at most one listing page each,
// where ListReplicas would walk every object under the whole replica URL.
func isReplica(ctx context.Context, c storage.Client) (bool, error) {
	if ec, ok := c.(storage.EmptyChecker); ok {
		if has, err := ec.HasFiles(ctx); err != nil || !has {
			return false, err
		}
	}
	for level := 0; level <= storage.MaxLevel; level++ {
		it, err := c.LTXFiles(ctx, level, 0)
		if err != nil {
			return false, err
		}
		found := it.Next()
		err = errors.Join(it.Err(), it.Close())
		if err != nil {
			return false, err
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

// looksLikePath reports whether arg reads as a database file's path rather
// than a replica name.
func looksLikePath(arg string) bool {
	if strings.Contains(arg, "/") || filepath.Ext(arg) != "" {
		return true
	}
	fi, err := os.Stat(arg)
	return err == nil && fi.Mode().IsRegular()
}

// quoteAll quotes names from a replica for a message (escaping what a
// terminal would act on) and joins them.
func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// NoDatabases is the error of a command that reads a replica location
// holding no database: a mistyped -b or a directory that does not exist
// must not pass for an empty replica.
func NoDatabases(c storage.Client) error {
	msg := fmt.Sprintf("no databases under %s", c)
	if fc, ok := c.(*file.Client); ok {
		if _, err := os.Stat(fc.Root()); errors.Is(err, fs.ErrNotExist) {
			msg += ": the directory does not exist"
		}
	}
	return &noDatabaseError{msg + "; check -b (the URL walsync watch replicates to)"}
}
