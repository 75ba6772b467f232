package compact

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/walsync/walsync/storage"
)

// GFS is grandfather-father-son snapshot retention, the original walsync's
// policy: keep the newest snapshot of each of the last Hourly hours,
// Daily days, Weekly ISO weeks and Monthly months, plus the newest
// snapshot, plus the incremental history of the dense window.
//
// The rules, exactly:
//
//   - A snapshot's time is its LTX header timestamp, which walsync sets to
//     the capture time of the TXID the snapshot holds (not the listing's
//     CreatedAt, which on S3 is the upload time). Periods are UTC hours,
//     UTC days, ISO 8601 weeks (Monday to Sunday, UTC) and UTC months.
//   - Each tier counts NON-EMPTY periods, newest first (as restic's
//     --keep-hourly and borg prune do): it keeps the newest snapshot of each
//     of the last N periods that hold a snapshot, at or before now. A
//     period without snapshots (the database was idle, or walsync was
//     stopped) does not use up a slot, so an idle replica keeps its
//     history however much time passes: only newer snapshots ever expire
//     older ones, and a repeated run deletes nothing new.
//   - The tiers are independent and their selections are united (a
//     snapshot kept as hourly may also be a tier's daily one). N = 0
//     disables a tier.
//   - The newest snapshot (highest TXID) is always kept, and so is any
//     snapshot dated after now.
//   - The dense window starts at the oldest snapshot the hourly tier keeps
//     (at the newest snapshot when Hourly is 0) and runs to the latest
//     state. Inside it every point that was restorable stays restorable:
//     every sync whose L0 file remains, every compaction boundary (L1 every
//     30 s by default) before that. Older incremental files (levels 0..8
//     ending below the dense window's first TXID) are deleted, so the
//     older snapshots the tiers keep become isolated restore points.
//
// With DefaultGFS and hourly snapshots, a replica holds about 24 hours of
// fine-grained history, then one point per day for a week, per week for
// 12 weeks and per month for a year.
type GFS struct {
	Hourly, Daily, Weekly, Monthly int
}

// DefaultGFS is the original walsync's policy.
var DefaultGFS = GFS{Hourly: 24, Daily: 7, Weekly: 12, Monthly: 12}

// Validate reports a negative count.
func (g GFS) Validate() error {
	for _, t := range g.tiers() {
		if t.n < 0 {
			return fmt.Errorf("GFS retention: %s count %d is negative", t.name, t.n)
		}
	}
	return nil
}

func (g GFS) String() string {
	return fmt.Sprintf("hourly %d, daily %d, weekly %d, monthly %d", g.Hourly, g.Daily, g.Weekly, g.Monthly)
}

type gfsTier struct {
	name string
	n    int
	// period returns a key that is the same for two times exactly when
	// they fall in the same period.
	period func(time.Time) int64
}

func (g GFS) tiers() []gfsTier {
	return []gfsTier{
		{KeptHourly, g.Hourly, func(t time.Time) int64 { return t.Unix() / 3600 }},
		{KeptDaily, g.Daily, func(t time.Time) int64 {
			y, m, d := t.UTC().Date()
			return int64(y)*10000 + int64(m)*100 + int64(d)
		}},
		{KeptWeekly, g.Weekly, func(t time.Time) int64 {
			y, w := t.UTC().ISOWeek()
			return int64(y)*100 + int64(w)
		}},
		{KeptMonthly, g.Monthly, func(t time.Time) int64 {
			y, m, _ := t.UTC().Date()
			return int64(y)*100 + int64(m)
		}},
	}
}

// selectSnapshots returns why each snapshot is kept (nil: it may go) and
// the index of the snapshot that starts the dense window (-1: no
// snapshots). snaps are ordered by MaxTXID; times[i] is snaps[i]'s time.
func (g GFS) selectSnapshots(snaps []*storage.FileInfo, times []time.Time, now time.Time) ([][]string, int) {
	reasons := make([][]string, len(snaps))
	if len(snaps) == 0 {
		return reasons, -1
	}
	keep := func(i int, why string) {
		if !slices.Contains(reasons[i], why) {
			reasons[i] = append(reasons[i], why)
		}
	}
	// Newest first: by time, then by TXID.
	order := make([]int, 0, len(snaps))
	for i := range snaps {
		if times[i].After(now) {
			keep(i, KeptFuture)
			continue
		}
		order = append(order, i)
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := times[b].Compare(times[a]); c != 0 {
			return c
		}
		return cmp.Compare(snaps[b].MaxTXID, snaps[a].MaxTXID)
	})
	dense := len(snaps) - 1 // the newest snapshot, unless the hourly tier keeps older ones
	for _, t := range g.tiers() {
		periods := 0
		var last int64
		for _, i := range order {
			if periods == t.n {
				break
			}
			if p := t.period(times[i]); periods == 0 || p != last {
				keep(i, t.name)
				periods++
				last = p
				if t.name == KeptHourly {
					dense = min(dense, i)
				}
			}
		}
	}
	keep(len(snaps)-1, KeptLatest)
	// Reasons in a fixed order for display.
	rank := map[string]int{KeptLatest: 0, KeptFuture: 1, KeptHourly: 2, KeptDaily: 3, KeptWeekly: 4, KeptMonthly: 5}
	for _, r := range reasons {
		slices.SortFunc(r, func(a, b string) int { return cmp.Compare(rank[a], rank[b]) })
	}
	return reasons, dense
}
