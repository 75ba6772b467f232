package engine

import (
	"context"
	"errors"
	"runtime"
	"time"
)

// Status is a picture of the engine at one moment.
type Status struct {
	Time       time.Time  `json:"time"`
	Started    time.Time  `json:"started"`
	Databases  int        `json:"databases"`
	Hot        int        `json:"hot"`
	Cold       int        `json:"cold"`
	HotSet     int        `json:"hot_set"`      // current limit (lowered when fds run out)
	Watched    int        `json:"watched_dirs"` // directories with an inotify watch
	SweepOnly  string     `json:"sweep_only"`   // why some changes are found by sweeps only; "" if none
	Failing    int        `json:"failing"`      // databases whose last attempt failed
	Refused    int        `json:"refused"`      // databases not replicated: their replica name is taken, or another process writes their replica
	MaxLag     Duration   `json:"max_lag"`      // oldest unsynced change
	Goroutines int        `json:"goroutines"`
	DBs        []DBStatus `json:"dbs"`
}

// DBStatus is one database's state.
type DBStatus struct {
	Path    string `json:"path"`
	Name    string `json:"name"` // the replica name list shows; "" when the replica is its URL itself
	Replica string `json:"replica"`
	State   string `json:"state"` // new (not yet opened), hot, cold, removed, refused
	TXID    uint64 `json:"txid"`
	// TXIDTime is TXID's LTX header timestamp, list's LATEST TIME for
	// it; LastSync is when walsync last confirmed the replica ends there.
	TXIDTime time.Time `json:"txid_time,omitzero"`
	LastSync time.Time `json:"last_sync,omitzero"`
	Lag      Duration  `json:"lag"`      // since the oldest change not yet shipped; 0 if none
	Pending  bool      `json:"pending"`  // a change is waiting to be shipped
	Failures int       `json:"failures"` // consecutive failures
	Error    string    `json:"error,omitempty"`
	RetryAt  time.Time `json:"retry_at,omitzero"`
}

// Duration marshals as a string such as "1.5s".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// ErrNotRunning means Status was asked of an engine that is not running.
var ErrNotRunning = errors.New("engine is not running")

// Status returns the engine's state. It waits for the scheduler, which
// answers between two steps.
func (eng *Engine) Status(ctx context.Context) (Status, error) {
	ch := make(chan Status, 1)
	select {
	case eng.statusCh <- ch:
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	select {
	case st := <-ch:
		return st, nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

func (eng *Engine) status(now time.Time) Status {
	st := Status{Time: now, Started: eng.started, Databases: len(eng.entries), HotSet: eng.hotCap,
		Goroutines: runtime.NumGoroutine(), DBs: make([]DBStatus, 0, len(eng.entries))}
	if eng.watcher != nil {
		st.Watched = eng.watcher.Len()
	}
	switch {
	case eng.watcher == nil:
		st.SweepOnly = "no file events"
	case eng.watchErr != nil:
		st.SweepOnly = eng.watchErr.Error()
	}
	for _, e := range eng.entries {
		d := DBStatus{Path: e.Path, Name: e.Name, Replica: e.Client.String(), TXID: e.txid, TXIDTime: e.txidTime, LastSync: e.synced,
			Pending: e.dirty || e.kick, Failures: e.fails.n + e.bgFails.n, Error: e.fails.err, RetryAt: e.fails.retryAt}
		if d.Error == "" {
			d.Error, d.RetryAt = e.bgFails.err, e.bgFails.retryAt
		}
		d.State = e.state()
		switch d.State {
		case "refused":
			d.Error, d.Pending = e.refused, false
			st.Refused++
		case "hot":
			st.Hot++
		case "cold":
			st.Cold++
		}
		if d.Pending {
			d.Lag = Duration(now.Sub(e.dirtyAt))
			st.MaxLag = max(st.MaxLag, d.Lag)
		}
		if d.Failures > 0 {
			st.Failing++
		} else {
			d.RetryAt = time.Time{}
		}
		st.DBs = append(st.DBs, d)
	}
	return st
}
