package engine

// The scheduler's decisions: which jobs run now, in what order, and when to
// look again. Syncs, releases and closes come first, in turn across the
// databases; background work gets at most half the workers; opening waits
// for room in the hot set, which forced releases make.

import (
	"time"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/storage"
)

// jobKind is what a job does to its database.
type jobKind uint8

const (
	jobSync jobKind = iota
	jobSnapshot
	jobRetention
	jobCompact
	jobCool
	jobClose
)

// job is one unit of work handed to a worker; its database is busy until
// the result is back.
type job struct {
	e       *entry
	kind    jobKind
	db      *capture.DB       // the database before the job; the result's after it
	cold    *capture.State    // likewise
	counted bool              // in Engine.hot: open, or being opened
	force   bool              // jobCool: even if the state will not prove much
	level   int               // jobCompact: into Options.Levels[level-1]
	resync  string            // jobSync: why a full image is due, if it is
	last    *storage.FileInfo // that level's last output, if known
}

// result is a job done, handed back to the scheduler.
type result struct {
	job
	st        capture.Stats
	compacted *storage.FileInfo // a compaction's output, nil if nothing was new
	replaced  bool              // the database file was replaced: reopen with a resync
	err       error
}

// background reports whether a job is background work: snapshots,
// compaction and retention, whose failures do not delay syncs.
func (k jobKind) background() bool {
	return k == jobSnapshot || k == jobCompact || k == jobRetention
}

// plan decides the jobs to run now, at most free of them, and when the
// scheduler must look again.
func (eng *Engine) plan(now time.Time, polling bool, free int) ([]job, time.Time) {
	wake := now.Add(eng.opts.SweepInterval)
	waitingOpen, opening := 0, 0
	removed := false
	// Syncs (and cooling, which frees resources) come first; snapshots,
	// compaction and retention use at most half the workers, so a wave of
	// them never holds up a database's next sync.
	var syncs, background []job
	bgFree := min(free, max(1, eng.opts.Workers/2)-eng.background)
	canOpen := func() bool { return eng.hot+opening < eng.hotCap }
	// cool releases e once it has been idle long enough, or has the
	// scheduler look again when it will have been.
	cool := func(e *entry) {
		t, ok := eng.coolTime(e)
		switch {
		case !ok:
		case now.Before(t):
			wake = minTime(wake, t)
		case len(syncs) < free:
			syncs = append(syncs, job{e: e, kind: jobCool})
		}
	}
	// Start where the last pass stopped handing out syncs, so that every
	// database gets its turn when there is more to do than workers.
	n := len(eng.entries)
	start := 0
	if n > 0 {
		start = eng.planPos % n
	}
	next := start
	for k := 0; k < n; k++ {
		i := (start + k) % n
		e := eng.entries[i]
		if e.busy {
			continue
		}
		if e.removed {
			if e.db != nil && len(syncs) < free {
				syncs = append(syncs, job{e: e, kind: jobClose})
			}
			removed = removed || e.db == nil
			continue
		}
		if e.refused != "" {
			if e.db != nil && len(syncs) < free {
				syncs = append(syncs, job{e: e, kind: jobClose}) // refused while open
			}
			continue
		}
		if now.Before(e.fails.retryAt) {
			wake = minTime(wake, e.fails.retryAt)
			continue
		}
		if e.db == nil && !e.dirty && now.Before(e.nextDue) {
			wake = minTime(wake, e.nextDue)
			continue
		}
		if polling && e.db != nil {
			eng.poll(e, now)
		}
		due := e.lastSync.Add(eng.opts.SyncInterval)
		switch {
		case e.dirty && !now.Before(due):
			// When no worker is free, a result wakes the scheduler.
			switch {
			case len(syncs) >= free:
			case e.db == nil && !canOpen():
				waitingOpen++
			default:
				if e.db == nil {
					opening++
				}
				e.lastSync = now // the interval runs from the start of a sync
				syncs = append(syncs, job{e: e, kind: jobSync})
				next = i + 1
			}
		case e.dirty:
			wake = minTime(wake, due)
		case now.Before(e.bgFails.retryAt) && eng.backgroundDue(e, now):
			wake = minTime(wake, e.bgFails.retryAt)
			// Background work waiting out its back-off must not keep an
			// idle database open: it runs as well on a cold one.
			cool(e)
		case eng.snapshotDue(e, now):
			if len(background) < bgFree && (e.db != nil || canOpen()) {
				if e.db == nil {
					opening++
				}
				background = append(background, job{e: e, kind: jobSnapshot})
			}
		case eng.retentionDue(e, now):
			if len(background) < bgFree {
				background = append(background, job{e: e, kind: jobRetention})
			}
		case eng.compactionDue(e, now) > 0:
			if len(background) < bgFree {
				l := eng.compactionDue(e, now)
				background = append(background, job{e: e, kind: jobCompact, level: l, last: e.lastOut[l-1]})
			}
		default:
			cool(e)
		}
	}
	eng.planPos = next
	queue := make([]job, 0, min(free, len(syncs)+len(background)))
	for _, j := range syncs {
		queue = append(queue, eng.take(j))
	}
	for _, j := range background {
		if len(queue) >= free {
			break
		}
		eng.background++
		queue = append(queue, eng.take(j))
	}
	// Make room for databases waiting to open: cool the least recently
	// active hot databases, whatever their state proves.
	if waitingOpen > 0 {
		cands := eng.coolCandidates(waitingOpen, free-len(queue))
		for _, e := range cands {
			queue = append(queue, eng.take(job{e: e, kind: jobCool, force: true}))
		}
		if len(cands) == 0 && now.Sub(eng.fullWarned) > time.Minute {
			eng.fullWarned = now
			eng.log.Warn("hot set full: databases with changes wait for one to go idle (longer lag)",
				"hot_set", eng.hotCap, "waiting", waitingOpen)
		}
		wake = now.Add(eng.opts.PollInterval)
	}
	if removed {
		eng.forgetRemoved()
	}
	return queue, wake
}

// coolTime returns when hot e may be released, if ever: IdleTimeout after
// its last shipped change, and not before a refused attempt's retry.
func (eng *Engine) coolTime(e *entry) (time.Time, bool) {
	if e.db == nil || eng.opts.IdleTimeout <= 0 {
		return time.Time{}, false
	}
	return maxTime(e.active.Add(eng.opts.IdleTimeout), e.coolAt), true
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// take marks the job's database busy and fills in its handles.
func (eng *Engine) take(j job) job {
	e := j.e
	e.busy = true
	j.db, j.cold, j.resync = e.db, e.cold, e.resync
	j.counted = e.db != nil
	if e.db == nil && (j.kind == jobSync || j.kind == jobSnapshot) {
		eng.hot++ // opening
		j.counted = true
	}
	return j
}

// coolCandidates returns up to n idle hot databases, least recently active
// first.
func (eng *Engine) coolCandidates(n, free int) []*entry {
	n = min(n, free)
	var out []*entry
	for len(out) < n {
		var best *entry
		for _, e := range eng.entries {
			if e.db == nil || e.busy || e.dirty || e.removed || (best != nil && !e.active.Before(best.active)) {
				continue
			}
			best = e
		}
		if best == nil {
			break
		}
		best.busy = true // taken by the caller
		out = append(out, best)
	}
	for _, e := range out {
		e.busy = false
	}
	return out
}
