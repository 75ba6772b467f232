package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/walsync/walsync/engine"
	"github.com/walsync/walsync/storage/s3"
)

// listenAddr gives a bare ":PORT" the loopback host: status is for this
// machine unless a host is named.
func listenAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "" {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// checkAddr refuses an --addr that is not host:port or :port. It never
// repeats credentials someone wrote into it.
func checkAddr(flag, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || strings.ContainsAny(host, "@/") {
		return usagef("invalid %s %q: expected host:port or :port, e.g. 127.0.0.1:9090", flag, s3.RedactUserinfo(addr))
	}
	return nil
}

// The status server's limits. Each connection costs an fd, and fds are the
// replication's budget (databases, WAL files, spool files, storage
// connections): idle clients must not take them. Connections beyond
// statusMaxConns are closed as soon as they are accepted; the timeouts
// close slow or idle ones.
const (
	statusMaxConns          = 64
	statusReadHeaderTimeout = 5 * time.Second
	statusReadTimeout       = 10 * time.Second
	statusWriteTimeout      = 30 * time.Second // GET /status waits up to 10 s for the engine
	statusIdleTimeout       = 30 * time.Second
	// pprof's CPU profile lasts ?seconds=30 by default and must end before
	// the write timeout.
	pprofWriteTimeout = 2 * time.Minute
	// refusedLogEvery bounds the refusal warnings: one per flood, not one
	// per connection.
	refusedLogEvery = time.Hour
)

// statusOptions are watch's status-server flags.
type statusOptions struct {
	Addr  string // --addr
	Pprof bool   // --pprof: also serve /debug/pprof/
	// HealthMaxLag is /healthz's lag budget (engine.CheckHealth).
	HealthMaxLag time.Duration
}

// serveStatus serves GET /status (JSON engine.Status), GET /healthz (200
// or 503 with JSON engine.Health), and the Go profiles with o.Pprof, until
// stop is called.
func serveStatus(ctx context.Context, o statusOptions, eng *engine.Engine, log *slog.Logger) (stop func(), err error) {
	if err := checkAddr("--addr", o.Addr); err != nil {
		return nil, err
	}
	addr := listenAddr(o.Addr)
	inner, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status address %s: %w; choose another --addr", addr, err)
	}
	if ip := inner.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		exposed := "database paths, replica URLs and errors"
		if o.Pprof {
			exposed += ", and profiles of this process (--pprof: goroutine stacks, heap and CPU profiles)"
		}
		log.Warn("status is served beyond this machine: whoever reaches it reads "+exposed+"; use --addr :PORT for this machine only",
			"addr", inner.Addr().String())
	}
	ln := newLimitListener(inner, statusMaxConns, log)
	mux := http.NewServeMux()
	// withStatus answers with what fn makes of the engine's status, or 503
	// when the engine does not answer in time.
	withStatus := func(fn func(http.ResponseWriter, engine.Status)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			rctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			st, err := eng.Status(rctx)
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fn(w, st)
		}
	}
	mux.HandleFunc("GET /status", withStatus(func(w http.ResponseWriter, st engine.Status) {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	}))
	mux.HandleFunc("GET /healthz", withStatus(func(w http.ResponseWriter, st engine.Status) {
		h := engine.CheckHealth(st, o.HealthMaxLag)
		if !h.OK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(h)
	}))
	writeTimeout := statusWriteTimeout
	if o.Pprof {
		// Profiles, for "where does the memory go" on a live process; only
		// when asked, as they show the process's insides. Index serves the
		// named profiles; /debug/pprof/cmdline is left out on purpose: a
		// command line can hold an endpoint URL.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		writeTimeout = pprofWriteTimeout
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: statusReadHeaderTimeout,
		ReadTimeout:       statusReadTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       statusIdleTimeout,
		MaxHeaderBytes:    16 << 10,
		// Accept errors (EMFILE) are retried by the server, which would
		// print each one: they go to the debug log.
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("status server stopped", "error", err)
		}
	}()
	log.Info("serving status", "url", "http://"+inner.Addr().String()+"/status", "max_connections", statusMaxConns)
	if o.Pprof {
		log.Info("serving profiles", "url", "http://"+inner.Addr().String()+"/debug/pprof/")
	}
	return func() { srv.Close() }, nil
}

// limitListener accepts at most max connections at once; it closes the
// ones beyond at once (a refusal the client sees as a closed connection)
// and warns about refusals at most once per refusedLogEvery.
type limitListener struct {
	net.Listener
	slots chan struct{}
	log   *slog.Logger

	mu      sync.Mutex
	refused int       // since the last warning
	warned  time.Time // zero: never
}

func newLimitListener(inner net.Listener, max int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: inner, slots: make(chan struct{}, max), log: log}
}

// Accept returns the next connection there is room for.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitConn{Conn: c, free: func() { <-l.slots }}, nil
		default:
			c.Close()
			l.refuse()
		}
	}
}

func (l *limitListener) refuse() {
	l.mu.Lock()
	l.refused++
	now := time.Now()
	if !l.warned.IsZero() && now.Sub(l.warned) < refusedLogEvery {
		l.mu.Unlock()
		return
	}
	n := l.refused
	l.refused, l.warned = 0, now
	l.mu.Unlock()
	l.log.Warn("status server refuses connections: it holds its limit of open connections, and closes new ones at once so that "+
		"replication keeps its file descriptors (this is logged at most once an hour)",
		"limit", cap(l.slots), "refused", n, "addr", l.Addr().String())
}

// limitConn frees its listener slot when closed.
type limitConn struct {
	net.Conn
	once sync.Once
	free func()
}

func (c *limitConn) Close() error {
	c.once.Do(c.free)
	return c.Conn.Close()
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "walsync status --addr ADDR [--json] [--strict]", stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "`ADDR` a running walsync watch serves status on (its --addr)")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	strict := fs.Bool("strict", false, "exit non-zero when a database is failing (each is listed with its error either way)")
	summary := fs.Bool("summary", false, "print the counts and the databases that are failing or waiting longest, not one row per database (for thousands of them)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := checkAddr("--addr", *addr); err != nil {
		return err
	}
	url := "http://" + listenAddr(*addr) + "/status"
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	if err != nil {
		return usagef("invalid --addr %q: %v", s3.RedactUserinfo(*addr), err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("no walsync answers at %s (start it with watch --addr %s): %w", url, *addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read status from %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status from %s: %s: %s", url, resp.Status, termText(strings.TrimSpace(string(body))))
	}
	var st engine.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("status from %s is not walsync's: %w", url, err)
	}
	if *asJSON {
		if _, err := stdout.Write(body); err != nil {
			return err
		}
	} else {
		if *summary {
			st.DBs = worstDatabases(st.DBs, summaryRows)
		}
		if err := printStatus(stdout, st); err != nil {
			return err
		}
		if *summary && st.Databases > len(st.DBs) {
			fmt.Fprintf(stdout, "(the %d databases that are refused, failing or waiting longest of %d; walsync status without --summary lists every one)\n", len(st.DBs), st.Databases)
		}
	}
	if *strict && st.Failing > 0 {
		return fmt.Errorf("%d of %d databases are failing; see their ERROR", st.Failing, st.Databases)
	}
	return nil
}

// summaryRows is how many databases status --summary shows.
const summaryRows = 10

// worstDatabases returns at most n of dbs, those that most need a look
// first: refused, then failing (most failures first), then by lag.
func worstDatabases(dbs []engine.DBStatus, n int) []engine.DBStatus {
	rank := func(d engine.DBStatus) int {
		switch {
		case d.State == "refused":
			return 0
		case d.Failures > 0:
			return 1
		case d.Pending:
			return 2
		}
		return 3
	}
	dbs = slices.Clone(dbs)
	slices.SortStableFunc(dbs, func(a, b engine.DBStatus) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(b.Failures, a.Failures), cmp.Compare(b.Lag, a.Lag))
	})
	var out []engine.DBStatus
	for _, d := range dbs[:min(n, len(dbs))] {
		if rank(d) < 3 {
			out = append(out, d)
		}
	}
	return out
}

// printStatus prints st as a summary line and a table. Paths and errors
// come from file systems and replicas: they are escaped for the terminal.
func printStatus(stdout io.Writer, st engine.Status) error {
	fmt.Fprintf(stdout, "%d databases: %d hot (limit %d), %d cold, %d failing; oldest unsynced change %s; up %s\n",
		st.Databases, st.Hot, st.HotSet, st.Cold, st.Failing, time.Duration(st.MaxLag), st.Time.Sub(st.Started).Round(time.Second))
	if st.SweepOnly != "" {
		fmt.Fprintf(stdout, "some changes are found by stat sweeps only: %s\n", termText(st.SweepOnly))
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	// NAME, TXID and LATEST TIME are list's for the same replica (the
	// LTX header's time of TXID). CHECKED is when walsync last confirmed
	// the replica holds every commit, later when nothing new was shipped.
	// Times in UTC, as list shows them.
	fmt.Fprintln(tw, "NAME\tDATABASE\tSTATE\tTXID\tLATEST TIME (UTC)\tCHECKED (UTC)\tLAG\tERROR")
	utc := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, d := range st.DBs {
		name := "-"
		if d.Name != "" {
			name = termName(d.Name)
		}
		lag := "-"
		if d.Pending {
			lag = time.Duration(d.Lag).Round(time.Millisecond).String()
		}
		errText := d.Error
		if d.Failures > 0 {
			errText = fmt.Sprintf("%d failures, retry at %s: %s", d.Failures, d.RetryAt.Local().Format(time.TimeOnly), d.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", name, termName(d.Path), termText(d.State), d.TXID,
			utc(d.TXIDTime), utc(d.LastSync), lag, termText(errText))
	}
	return tw.Flush()
}
