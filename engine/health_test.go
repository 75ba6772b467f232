package engine

import (
	"strings"
	"testing"
	"time"
)

// TestCheckHealth: the rule's cases, and the bound on what it lists.
func TestCheckHealth(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	st := Status{Time: now, Started: now.Add(-time.Hour)}
	budget := 10 * time.Second
	for _, tc := range []struct {
		name string
		db   DBStatus
		want string // "" healthy, else a part of the reason
	}{
		{"idle and synced", DBStatus{LastSync: now.Add(-time.Hour)}, ""},
		{"pending within budget", DBStatus{Pending: true, Lag: Duration(5 * time.Second), LastSync: now}, ""},
		{"pending too long", DBStatus{Pending: true, Lag: Duration(time.Minute), LastSync: now.Add(-time.Minute)}, "waited 1m0s"},
		{"refused", DBStatus{State: "refused", Error: "replica name taken"}, "replica name taken"},
		{"failing briefly", DBStatus{Failures: 2, Error: "boom", LastSync: now.Add(-5 * time.Second)}, ""},
		{"failing long", DBStatus{Failures: 9, Error: "boom", LastSync: now.Add(-time.Minute)}, "failing for 1m0s: boom"},
		{"failing since start, never synced", DBStatus{Failures: 9, Error: "not a SQLite database"}, "failing for 1h0m0s"},
		{"idle, storage down, nothing to ship", DBStatus{LastSync: now.Add(-time.Hour)}, ""},
	} {
		st.DBs = []DBStatus{tc.db}
		h := CheckHealth(st, budget)
		switch {
		case tc.want == "" && !h.OK:
			t.Errorf("%s: unhealthy: %+v", tc.name, h.Unhealthy)
		case tc.want != "" && (h.OK || h.Count != 1 || !strings.Contains(h.Unhealthy[0].Reason, tc.want)):
			t.Errorf("%s: %+v, want a reason with %q", tc.name, h, tc.want)
		}
	}
	st.DBs = make([]DBStatus, 1000)
	for i := range st.DBs {
		st.DBs[i] = DBStatus{State: "refused"}
	}
	if h := CheckHealth(st, budget); h.Count != 1000 || len(h.Unhealthy) != MaxUnhealthyListed {
		t.Errorf("1,000 refused: count %d, listed %d; want 1000 and %d", h.Count, len(h.Unhealthy), MaxUnhealthyListed)
	}
}
