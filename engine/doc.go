// Package engine runs replication for many databases in one process: one
// scheduler goroutine, one timer and a bounded pool of workers, with no
// goroutine, timer, fd or connection per database.
//
// A database is hot while it changes: walsync holds its SQLite pin and
// polls its WAL. After IdleTimeout without change it is cooled: everything
// is shipped, the WAL is checkpointed and every fd and connection is
// released, leaving a few hundred bytes of state. A file-system event (one
// inotify watch per directory) or a slow stat sweep wakes it again, with no
// storage request. At most HotSet databases are hot at once.
//
// # Files
//
//   - engine.go: the API: Options and their defaults, Database, Source,
//     Engine and New.
//   - run.go: Run, the scheduler goroutine's loop (its one timer, events,
//     results, status requests), the worker pool and what a worker does
//     with each job.
//   - scheduler.go: plan, which picks the jobs to run now and when to
//     look again: priorities, fairness, the hot set, forced releases.
//   - lifecycle.go: one database (entry) and its states (new, hot, cold,
//     removed, refused; failing is a back-off on top of any): adding,
//     claiming a replica name, opening, taking in results, retries.
//   - background.go: snapshots, compaction and retention: when each is
//     due, what its result changes, its own back-off.
//   - discovery.go: file events, the stat sweep and scans of Sources:
//     what changed, and databases that appeared, moved or went.
//   - limits.go: process limits: running out of fds, trimming the C heap.
//   - shutdown.go: the final sync at stop, resyncs asked for included.
//   - statefile.go: the state file that lets a clean restart skip reading
//     every replica.
//   - status.go: Status, a picture taken on the scheduler goroutine.
//
// # Invariants
//
//   - One scheduler: only the scheduler goroutine touches entries and
//     Engine's scheduling fields. A worker gets a job for a busy entry and
//     hands back a result; while it is busy the scheduler changes nothing
//     the worker reads (see entry). Only the final sync, after the
//     scheduler has stopped, works on entries from several goroutines, one
//     entry each.
//   - Bounded work: Workers goroutines, never more jobs in flight than
//     Workers (nothing queues behind a slow upload, a result never waits),
//     background work on at most half of them, and at most one pass every
//     5 ms however many results arrive.
//   - An idle database costs nothing: a cold entry holds no goroutine,
//     timer, fd or connection, and an unchanged one is skipped by a pass
//     in a comparison (entry.nextDue) and makes no storage request.
//   - The hot set: Engine.hot counts databases open or being opened, from
//     the job that opens one to the result that releases it, and never
//     passes hotCap (HotSet, lowered when fds run out) by opening.
//   - A replica name is claimed by one database (Engine.byReplica, keyed
//     by storage.ClientKey): the first keeps it; a refused database is
//     never opened, never resumed from the state file and never synced at
//     stop.
//   - Failures back off (from twice SyncInterval, doubling, at most 5
//     minutes); syncs and background work back off apart, and background
//     work waiting out its back-off never holds up a sync nor keeps an idle
//     database hot.
//
// # Where new concerns go
//
//   - Leases (one process replicates a database at a time): taking one is
//     part of opening and giving it back part of releasing (lifecycle.go);
//     renewing is timed work with a due time in the entry, planned like
//     background work (scheduler.go, background.go); a database whose
//     lease is held elsewhere is a state like refused.
//   - Metrics: counted where results are settled (finish, settleBackground)
//     and read on the scheduler goroutine like Status; a metrics.go beside
//     status.go, with no goroutine or timer per database.
//   - Exec mode (replicate while a child process runs): a process edge for
//     the command, which cancels Run's context when the child exits; Run
//     then ships everything (shutdown.go). The engine needs nothing new.
//   - A change index (which databases changed, and when): fed from settle,
//     the one place a shipped change is recorded, written by a worker as
//     background work or at stop like the state file, never per change on
//     the scheduler goroutine.
package engine
