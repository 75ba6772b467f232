package engine

// The run loop: the one scheduler goroutine with its one timer, the worker
// pool, and what a worker does with each job.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/storage"
)

// minPlanGap is the least time between two scheduling passes.
const minPlanGap = 5 * time.Millisecond

// Run finds and opens the databases, replicates until ctx ends, then
// finishes in-flight uploads and a last sync within ShutdownTimeout.
func (eng *Engine) Run(ctx context.Context) error {
	eng.started = time.Now()
	// Work runs on a context that outlives ctx a little, so uploads in
	// flight at shutdown finish.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	eng.watch(ctx)
	for _, d := range eng.opts.Databases {
		eng.add(d, nil)
	}
	eng.rescan()
	if eng.opts.StateFile != "" {
		eng.loadState()
	}

	jobs := make(chan job)
	// Never more jobs in flight than workers, so a worker never waits to
	// hand in its result.
	results := make(chan result, eng.opts.Workers)
	wg := startWorkers(eng.opts.Workers, jobs, func(j job) { results <- eng.work(workCtx, j) })

	timer := time.NewTimer(0)
	defer timer.Stop()
	inFlight := 0
	var nextPoll, wake, lastPlan time.Time
	replan, polling := true, false
	for ctx.Err() == nil {
		if eng.drainEvents() {
			replan = true
		}
		now := time.Now()
		if !now.Before(nextPoll) {
			nextPoll = now.Add(eng.opts.PollInterval)
			eng.sweep(now)
			polling, replan = true, true
		}
		// A pass over every database costs; results and events arriving
		// together share one.
		if replan && now.Sub(lastPlan) < minPlanGap {
			wake = lastPlan.Add(minPlanGap)
		} else if replan {
			lastPlan = now
			var queue []job
			queue, wake = eng.plan(now, polling, eng.opts.Workers-inFlight)
			for _, j := range queue {
				jobs <- j // a worker is free: inFlight < Workers
				inFlight++
			}
			replan, polling = false, false
		}
		next := nextPoll
		if wake.Before(next) {
			next = wake
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
		case r := <-results:
			inFlight--
			eng.finish(r)
			replan = true
		case ev := <-eng.events:
			replan = eng.handleEvent(ev) || replan
		case ch := <-eng.statusCh:
			ch <- eng.status(time.Now())
		case <-timer.C:
			replan = true
		}
	}

	// Let in-flight work finish, then a last sync of everything open.
	deadline := time.AfterFunc(eng.opts.ShutdownTimeout, cancelWork)
	defer deadline.Stop()
	for inFlight > 0 {
		r := <-results
		inFlight--
		eng.finish(r)
	}
	close(jobs)
	wg.Wait()
	return eng.finalSync(workCtx)
}

// startWorkers runs do on each item of in, n at a time, until in is
// closed; the group waits for them.
func startWorkers[T any](n int, in <-chan T, do func(T)) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for x := range in {
				do(x)
			}
		})
	}
	return &wg
}

// backgroundRetries bounds the retries of each storage request of a
// compaction or retention job: the job is retried on its own back-off, and
// while it waits out a storage outage the database's syncs wait for it.
const backgroundRetries = 1

// work runs one job on a worker goroutine. It touches no entry field the
// scheduler writes meanwhile (see entry).
func (eng *Engine) work(ctx context.Context, j job) (r result) {
	r.job = j
	e := j.e
	switch j.kind {
	case jobCompact:
		r.compacted, r.err = eng.compact(storage.WithRetries(ctx, backgroundRetries), j)
		return r
	case jobRetention:
		r.err = eng.applyRetention(storage.WithRetries(ctx, backgroundRetries), e)
		return r
	case jobClose:
		r.err = j.db.Close(ctx)
		r.db = nil
		return r
	case jobCool:
		st, err := j.db.Cool(ctx, j.force)
		if err == nil {
			r.db, r.cold = nil, st
		}
		r.err = err
		return r
	}
	if r.db == nil {
		db, err := eng.open(ctx, e, j.cold)
		if err != nil {
			r.err = err
			return r
		}
		r.db, r.cold = db, nil
	}
	if j.kind == jobSnapshot {
		r.st, r.err = r.db.Snapshot(ctx)
		if r.err == nil {
			r.err = eng.applyRetention(ctx, e)
		}
		return r
	}
	if j.resync != "" {
		r.db.Resync(j.resync)
	}
	r.st, r.err = r.db.Sync(ctx)
	if errors.Is(r.err, capture.ErrReplaced) {
		eng.log.Warn("database file was replaced; replicating the new file as a new database state", "db", e.Path)
		r.db.Close(ctx)
		r.db = nil
		r.replaced, r.err = true, nil
	}
	return r
}
