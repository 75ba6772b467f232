package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"text/tabwriter"
	"time"

	"github.com/walsync/walsync/engine"
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

// serveStatus serves GET /status (JSON engine.Status) until stop is called.
func serveStatus(ctx context.Context, addr string, eng *engine.Engine, log *slog.Logger) (stop func(), err error) {
	addr = listenAddr(addr)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status address %s: %w", addr, err)
	}
	if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" && host != "localhost" && host != "::1" {
		log.Warn("status is served beyond this machine; it lists database paths", "addr", ln.Addr().String())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		st, err := eng.Status(rctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	// Profiles, for "where does the memory go" on a live process.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("status server stopped", "error", err)
		}
	}()
	log.Info("serving status", "url", "http://"+ln.Addr().String()+"/status")
	return func() { srv.Close() }, nil
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "walsync status --addr ADDR [--json]", stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "`ADDR` a running walsync watch serves status on (its --addr)")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	url := "http://" + listenAddr(*addr) + "/status"
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	if err != nil {
		return usagef("invalid --addr %q: %v", *addr, err)
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
		return fmt.Errorf("status from %s: %s: %s", url, resp.Status, body)
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var st engine.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("status from %s is not walsync's: %w", url, err)
	}
	fmt.Fprintf(stdout, "%d databases: %d hot (limit %d), %d cold, %d failing; oldest unsynced change %s; up %s\n",
		st.Databases, st.Hot, st.HotSet, st.Cold, st.Failing, time.Duration(st.MaxLag), st.Time.Sub(st.Started).Round(time.Second))
	if st.SweepOnly != "" {
		fmt.Fprintf(stdout, "some changes are found by stat sweeps only: %s\n", st.SweepOnly)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tSTATE\tTXID\tLAST SYNC\tLAG\tERROR")
	for _, d := range st.DBs {
		last := "-"
		if !d.LastSync.IsZero() {
			last = d.LastSync.Local().Format(time.DateTime)
		}
		lag := "-"
		if d.Pending {
			lag = time.Duration(d.Lag).Round(time.Millisecond).String()
		}
		errText := d.Error
		if d.Failures > 0 {
			errText = fmt.Sprintf("%d failures, retry at %s: %s", d.Failures, d.RetryAt.Local().Format(time.TimeOnly), d.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", d.Path, d.State, d.TXID, last, lag, errText)
	}
	return tw.Flush()
}
