// Command walsync replicates SQLite databases to S3-compatible storage or a
// local directory and restores them to a chosen point in time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/internal/suggest"
)

// version is set at build time with -ldflags "-X main.version=…"; left
// at "dev", the module version of the binary's build info is shown.
var version = "dev"

// commit is the VCS revision when the build info has none (a build from a
// git worktree or an exported tree): release.sh sets it with -ldflags
// "-X main.commit=…".
var commit = ""

const usage = `walsync replicates SQLite databases to S3 or a directory, and restores them.

Usage:
  walsync watch DB... -b URL          replicate continuously [--dir DIR --recursive]
  walsync status [--addr ADDR]        what a running watch is doing (its --addr)
  walsync snapshot DB... -b URL       write a snapshot now
  walsync restore NAME -o OUT -b URL  restore a database [--txid N | --timestamp T]
  walsync list [NAME] -b URL          list the replicated databases [--strict]
  walsync compact NAME -b URL         apply snapshot retention (dry run unless --force)
  walsync verify NAME -b URL          check a replica [--all] [--restore] [--json]
  walsync version                     (or --version)

URL is s3://bucket/prefix, file:///dir or a directory path. Each database
is stored under a sub-path named after its directory and file, e.g.
/var/lib/app/t1/app.db is "t1/app"; databases found with --dir DIR are
named by their path relative to DIR ("t1/app.db"), as Litestream does.
NAME is that name or the database's path (/var/lib/app/t1/app.db).

Run "walsync COMMAND --help" for a command's options.
`

// command is one verb: its run function parses args and does the work.
type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

var commands = map[string]command{
	"watch":    runWatch,
	"snapshot": runSnapshot,
	"restore":  runRestore,
	"list":     runList,
	"compact":  runCompact,
	"verify":   runVerify,
	"status":   runStatus,
	"check":    runCheck,
	"version":  runVersion,
}

func main() {
	// Before anything opens a database: walsync's connections need no
	// lookaside or page-cache memory.
	if err := capture.LeanSQLite(); err != nil {
		fmt.Fprintln(os.Stderr, "walsync: warning:", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "-version", "--version":
		args[0] = "version"
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "walsync: unknown command %q%s\nRun \"walsync --help\" for the commands.\n", args[0], didYouMean(args[0], commandNames()))
		return 2
	}
	if err := cmd(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		// An error can quote a path or a name from a replica: escaped.
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "walsync %s: %s\n", args[0], termText(err.Error()))
			return 2
		}
		fmt.Fprintf(stderr, "walsync %s: %s\n", args[0], termText(err.Error()))
		return 1
	}
	return 0
}

// usageError is a mistake in the command line.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// commandNames lists the commands, for "did you mean".
func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// didYouMean is ": did you mean "x"?" for the closest of names to word, or "".
func didYouMean(word string, names []string) string {
	if c := suggest.Closest(word, names, 1); len(c) > 0 {
		return fmt.Sprintf("; did you mean %q?", c[0])
	}
	return ""
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "walsync version", stderr)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionLine(version))
	return nil
}

// versionLine describes the binary: its version (v, unless it is "dev" and
// the build info has a module version), the VCS revision and commit time
// Go stamped into it, and the Go release that built it, e.g.
//
//	walsync v0.3.0 (commit 38d819f0a1b2, 2026-12-07T19:00:00Z; built with go1.26.8)
func versionLine(v string) string {
	rev, at, modified, goVersion := "unknown", "", false, runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if mv := bi.Main.Version; v == "dev" && mv != "" && mv != "(devel)" {
			v = mv
		}
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "unknown" && commit != "" {
		rev = commit
	}
	c := "commit " + rev
	if at != "" {
		c += ", " + at
	}
	if modified {
		c += ", with uncommitted changes"
	}
	return fmt.Sprintf("walsync %s (%s; built with %s)", v, c, goVersion)
}

// logLevelOf is level's slog.Level, info if it is not one.
func logLevelOf(level string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return l
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("invalid --log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, logOptions(l))), nil
}

// logOptions are every logger's options: level, and one line per record.
func logOptions(level slog.Level) *slog.HandlerOptions {
	return &slog.HandlerOptions{Level: level, ReplaceAttr: oneLineAttr}
}

// oneLineAttr puts a message or error written over several lines (advice
// with a command to run) on one, as a log line must be: the handler
// would show its line breaks as a literal \n.
func oneLineAttr(_ []string, a slog.Attr) slog.Attr {
	var s string
	switch v := a.Value.Any().(type) {
	case string:
		s = v
	case error:
		s = v.Error()
	default:
		return a
	}
	if !strings.ContainsAny(s, "\r\n") {
		return a
	}
	return slog.String(a.Key, strings.Join(strings.Fields(s), " "))
}

// termName returns a name that came from a replica or a file system (a
// database name or path) fit for a terminal: as is when it is plain text,
// else quoted Go-style ("app\x1b[2J…"), so that no name can move the
// cursor, clear the screen, recolour the output or pass for another row.
// A name holding a backslash or a quote is quoted too, so that the quoted
// form is never ambiguous.
func termName(s string) string {
	if plainText(s) && !strings.ContainsAny(s, `\"`) {
		return s
	}
	return strconv.Quote(s)
}

// termText escapes the unprintable characters of a message in place
// (\x1b, \u202e, …): an error can quote names and keys from a replica.
func termText(s string) string {
	if plainText(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && w == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case strconv.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += w
	}
	return b.String()
}

// plainText reports whether every rune of s is valid and printable.
func plainText(s string) bool {
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && w == 1) || !strconv.IsPrint(r) {
			return false
		}
		i += w
	}
	return true
}
