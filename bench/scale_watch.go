package main

// What a scale case watches while a tool runs: its /proc figures and its
// own status (walsync's /status, Litestream's /metrics), and the watch
// sample's way into the replica.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// walsyncStatus is the part of walsync's /status (engine.Status) used here.
type walsyncStatus struct {
	Databases  int    `json:"databases"`
	Hot        int    `json:"hot"`
	Cold       int    `json:"cold"`
	HotSet     int    `json:"hot_set"`
	Watched    int    `json:"watched_dirs"`
	SweepOnly  string `json:"sweep_only"`
	Failing    int    `json:"failing"`
	MaxLag     string `json:"max_lag"`
	Goroutines *int   `json:"goroutines"`
	DBs        []struct {
		State    string `json:"state"`
		LastSync string `json:"last_sync"`
		Error    string `json:"error"`
	} `json:"dbs"`
}

// scraper returns what the sampler runs after each /proc reading: a read
// of the tool's status or metrics every statusEvery (every second until
// walsync has found every database, to time that closely).
func (t *scaleTool) scraper() func() {
	if t.scrape == "" {
		return nil
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	var last time.Time
	return func() {
		every := t.o.statusEvery
		t.mu.Lock()
		if t.name == "walsync" && t.statusAllAt == 0 && t.since() < t.o.startTimeout {
			every = time.Second
		}
		t.mu.Unlock()
		if time.Since(last) >= every {
			last = time.Now()
			t.scrapeOnce(hc)
		}
	}
}

func (t *scaleTool) scrapeOnce(hc *http.Client) {
	at := t.since()
	failed := func(msg string) {
		t.mu.Lock()
		t.scrapeErr = msg
		t.mu.Unlock()
	}
	resp, err := hc.Get(t.scrape)
	if err != nil {
		failed(err.Error())
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		failed(fmt.Sprintf("%s: %d %v", t.scrape, resp.StatusCode, err))
		return
	}
	g := -1
	var st *statusSample
	if t.name == "litestream" {
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					g = int(f)
				}
			}
		}
	} else {
		var ws walsyncStatus
		if err := json.Unmarshal(b, &ws); err != nil {
			failed("status JSON: " + err.Error())
			return
		}
		if ws.Goroutines != nil {
			g = *ws.Goroutines
		}
		st = &statusSample{at: at, dbs: ws.Databases, hot: ws.Hot, cold: ws.Cold, failing: ws.Failing}
		st.maxLag, _ = time.ParseDuration(ws.MaxLag)
		var errs []string
		for _, d := range ws.DBs {
			if d.LastSync != "" {
				st.synced++
			}
			if d.Error != "" && len(errs) < 3 {
				errs = append(errs, d.Error)
			}
		}
		t.mu.Lock()
		t.sweepOnly = ws.SweepOnly
		for _, e := range errs {
			if len(t.statusErrs) < 5 && !slices.Contains(t.statusErrs, e) {
				t.statusErrs = append(t.statusErrs, e)
			}
		}
		t.mu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastScrape = b
	t.scrapes++
	if g >= 0 {
		t.gors = append(t.gors, gorSample{at: at, n: g})
	}
	if st != nil {
		t.statuses = append(t.statuses, *st)
		if st.dbs >= t.sc.n && t.statusAllAt == 0 {
			t.statusAllAt = at
		}
		if st.synced >= t.sc.n && t.syncedAllAt == 0 {
			t.syncedAllAt = at
		}
	}
}

// waitReady polls the watch sample until every sentinel is in the replica,
// the tool exits or startTimeout passes.
func (t *scaleTool) waitReady(ctx context.Context) {
	t.watchAll = -1
	deadline := t.started.Add(t.o.startTimeout)
	for {
		if t.rep.Exited() {
			t.startErr = startError(t.logPath, t.rep.Err())
			logf("%s/%s %s: EXITED during start-up: %s", t.name, t.kind, t.sc.label, t.startErr)
			return
		}
		seen := 0
		var last time.Time
		for _, tn := range t.watchT {
			if tn.seenAt.IsZero() {
				t.probeWatch(ctx, tn)
			}
			if !tn.seenAt.IsZero() {
				seen++
				if tn.seenAt.After(last) {
					last = tn.seenAt
				}
			}
		}
		t.watchSeen = seen
		if seen == len(t.watchT) {
			t.watchAll = last.Sub(t.started)
			break
		}
		if time.Now().After(deadline) {
			t.note("start-up: only %d/%d databases of the watch sample replicated within %v", seen, len(t.watchT), t.o.startTimeout)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.readyAt = t.since()
	t.cpuReady = cpuNow(t.rep.Pid())
	t.reqReady = t.reqs()
	logf("%s/%s %s: ready after %v (watch sample %d/%d, all replicated after %v)", t.name, t.kind, t.sc.label,
		t.readyAt.Round(10*time.Millisecond), t.watchSeen, len(t.watchT), t.watchAll.Round(10*time.Millisecond))
}

func (t *scaleTool) probeWatch(ctx context.Context, tn *scaleTenant) {
	keys, err := t.view.all(ctx, tn.name)
	listedAt := time.Now()
	if err != nil {
		return
	}
	for _, k := range keys {
		if tn.seenKeys[k] {
			continue
		}
		data, err := t.view.get(ctx, k)
		if err != nil {
			continue // removed by compaction meanwhile, or not complete yet
		}
		pages, err := decodeLTXPages(data)
		if err != nil {
			continue
		}
		tn.seenKeys[k] = true
		if strings.Contains(string(pages), tn.sentinel) {
			tn.seenAt = listedAt
			return
		}
	}
}

// startError is the line that says why a tool exited.
func startError(logPath string, waitErr error) string {
	b, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	pick := ""
	for _, l := range lines {
		ll := strings.ToLower(l)
		if strings.Contains(ll, "level=error") || strings.Contains(ll, "error") || strings.HasPrefix(ll, "panic") || strings.HasPrefix(ll, "fatal") {
			pick = l
			break
		}
	}
	if pick == "" && len(lines) > 0 {
		pick = lines[len(lines)-1]
	}
	if len(pick) > 400 {
		pick = pick[:400] + "..."
	}
	return fmt.Sprintf("exit %v: %s", waitErr, pick)
}
