package engine

import (
	"fmt"
	"time"
)

// Health is the verdict of /healthz: whether every database replicates
// within its lag budget.
type Health struct {
	OK     bool     `json:"ok"`
	MaxLag Duration `json:"max_lag"` // the budget
	// Unhealthy names the databases out of it, at most MaxUnhealthyListed
	// (Count has them all), each with why.
	Unhealthy []Unhealthy `json:"unhealthy,omitempty"`
	Count     int         `json:"count"`
}

// Unhealthy is one database out of its lag budget.
type Unhealthy struct {
	Path   string `json:"path"`
	Name   string `json:"name,omitempty"`
	Reason string `json:"reason"`
}

// MaxUnhealthyListed bounds the databases a Health lists: a fleet of
// 10,000 behind a dead bucket is one line of cause, not 10,000.
const MaxUnhealthyListed = 20

// CheckHealth is the one rule of health: a database is unhealthy when it
// is refused (its replica name is taken, or another writer holds its
// replica), when a change has waited longer than maxLag to be shipped, or
// when its attempts have failed for longer than maxLag (storage down, a
// database that cannot be read). An idle database whose storage is down
// is healthy until it has something to ship: nothing of it is at risk.
func CheckHealth(st Status, maxLag time.Duration) Health {
	h := Health{OK: true, MaxLag: Duration(maxLag)}
	for _, d := range st.DBs {
		reason := ""
		switch {
		case d.State == "refused":
			reason = "not replicated: " + d.Error
		case d.Pending && time.Duration(d.Lag) > maxLag:
			reason = fmt.Sprintf("a change has waited %s to be shipped", time.Duration(d.Lag).Round(time.Second))
			if d.Error != "" {
				reason += ": " + d.Error
			}
		case d.Failures > 0 && d.Error != "" && failingFor(d, st) > maxLag:
			reason = fmt.Sprintf("failing for %s: %s", failingFor(d, st).Round(time.Second), d.Error)
		default:
			continue
		}
		h.OK = false
		h.Count++
		if len(h.Unhealthy) < MaxUnhealthyListed {
			h.Unhealthy = append(h.Unhealthy, Unhealthy{Path: d.Path, Name: d.Name, Reason: reason})
		}
	}
	return h
}

// failingFor is how long d has gone without a successful sync: since its
// last one, or since the engine started.
func failingFor(d DBStatus, st Status) time.Duration {
	since := st.Started
	if d.LastSync.After(since) {
		since = d.LastSync
	}
	return st.Time.Sub(since)
}
