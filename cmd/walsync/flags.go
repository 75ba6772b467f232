package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/walsync/walsync/internal/suggest"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/replicaurl"
	"github.com/walsync/walsync/storage/s3"
)

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nOptions:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags wherever they stand among the positional arguments
// ("watch a.db b.db -b URL" as well as "watch -b URL a.db b.db"). A
// mistake is one error with a "did you mean" and a pointer to --help, not
// the whole usage; -h and --help print the usage.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	defer func() { fs.Usage = usage; fs.SetOutput(out) }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				fs.SetOutput(out) // PrintDefaults writes to it
				usage()
				return nil, err
			}
			return nil, usageError{flagError(fs, err)}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// flagError rewrites the flag package's error for one line: an unknown
// flag gets the closest defined one, and every error a pointer to --help.
func flagError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	const unknown = "flag provided but not defined: -"
	if name, ok := strings.CutPrefix(msg, unknown); ok {
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		msg = "unknown flag --" + name
		if c := suggest.Closest(name, names, 1); len(c) > 0 {
			msg += fmt.Sprintf("; did you mean --%s?", c[0])
		}
	}
	return fmt.Errorf("%s\nRun \"walsync %s --help\" for its options.", msg, fs.Name())
}

// replicaFlags are the options that select and reach a replica.
type replicaFlags struct {
	url       string
	endpoint  string
	region    string
	pathStyle string
}

func (r *replicaFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.url, "b", "", "replica `URL`: s3://bucket/prefix, file:///dir or a directory")
	fs.StringVar(&r.url, "backup", "", "same as -b")
	fs.StringVar(&r.endpoint, "endpoint", "", "S3-compatible endpoint `URL` (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)")
	fs.StringVar(&r.region, "region", "", "S3 region (default: AWS_REGION, else us-east-1)")
	fs.StringVar(&r.pathStyle, "force-path-style", "", "true or false: path-style S3 addressing (default: true for custom endpoints)")
}

func (r *replicaFlags) open() (storage.Client, error) {
	if r.url == "" {
		return nil, usagef("no replica given: pass -b s3://bucket/prefix or -b /path/to/dir")
	}
	if _, err := replicaurl.Parse(r.url); err != nil {
		return nil, usageError{err}
	}
	cfg := s3.Config{Endpoint: r.endpoint, Region: r.region}
	switch strings.ToLower(r.pathStyle) {
	case "":
	case "true", "1", "yes":
		t := true
		cfg.ForcePathStyle = &t
	case "false", "0", "no":
		f := false
		cfg.ForcePathStyle = &f
	default:
		return nil, usagef("invalid --force-path-style %q: use true or false", r.pathStyle)
	}
	return replicaurl.Open(r.url, replicaurl.Options{S3: cfg})
}

// databases checks the database paths of watch and snapshot, derives their
// replica names and opens the replica client they share.
func (r *replicaFlags) databases(verb string, paths []string) ([]string, storage.Client, error) {
	if len(paths) == 0 {
		return nil, nil, usagef("no database given: walsync %s /path/to/app.db -b URL", verb)
	}
	names, err := replicaurl.Names(paths)
	if err != nil {
		return nil, nil, usageError{err}
	}
	client, err := r.open()
	if err != nil {
		return nil, nil, err
	}
	return names, client, nil
}
