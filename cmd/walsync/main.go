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
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/walsync/walsync/capture"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `walsync replicates SQLite databases to S3 or a directory, and restores them.

Usage:
  walsync watch DB... -b URL          replicate continuously [--dir DIR --recursive]
  walsync status [--addr ADDR]        what a running watch is doing (its --addr)
  walsync snapshot DB... -b URL       write a snapshot now
  walsync restore NAME -o OUT -b URL  restore a database [--txid N | --timestamp T]
  walsync list -b URL [--strict]      list the replicated databases
  walsync compact NAME -b URL         apply snapshot retention (dry run unless --force)
  walsync verify NAME -b URL          check a replica [--all] [--restore] [--json]
  walsync version

URL is s3://bucket/prefix, file:///dir or a directory path. Each database
is stored under a sub-path named after its directory and file, e.g.
/var/lib/app/t1/app.db is "t1/app"; databases found with --dir DIR are
named by their path relative to DIR ("t1/app.db"), as Litestream does.

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
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "walsync: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err := cmd(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "walsync %s: %v\n", args[0], err)
			return 2
		}
		fmt.Fprintf(stderr, "walsync %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// usageError is a mistake in the command line.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "walsync version", stderr)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "walsync %s\n", version)
	return nil
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
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
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
