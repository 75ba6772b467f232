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
package engine
