package engine

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/walsync/walsync/capture"
	"github.com/walsync/walsync/compact"
	"github.com/walsync/walsync/discover"
	"github.com/walsync/walsync/fswatch"
	"github.com/walsync/walsync/storage"
)

// Defaults for Options fields left zero.
const (
	DefaultSyncInterval     = time.Second
	DefaultSnapshotInterval = 24 * time.Hour
	DefaultPollInterval     = 100 * time.Millisecond // how often hot WAL files are stat'ed
	DefaultSweepInterval    = 30 * time.Second       // how often cold databases are stat'ed, in case an event was lost
	DefaultWorkers          = 4
	DefaultShutdownTimeout  = 30 * time.Second
	DefaultHotSet           = 256
	DefaultIdleTimeout      = 30 * time.Second
)

// Database is one database to replicate.
type Database struct {
	Path   string
	Client storage.Client // its replica, at its own sub-path
	// Name is Client's sub-path below the replica URL, the name list
	// shows and restore takes; "" when Client is the URL itself.
	Name string
}

// Source is a directory whose databases are found and replicated, each at
// Client.Sub(its path relative to the directory).
type Source struct {
	discover.Source
	Client storage.Client
}

// Options configure an Engine.
type Options struct {
	Databases        []Database
	Sources          []Source      // directories to discover databases in (and watch for new ones)
	SyncInterval     time.Duration // at most one upload per database per interval
	SnapshotInterval time.Duration // level-9 snapshot of databases that changed; negative: never
	PollInterval     time.Duration
	SweepInterval    time.Duration // stat sweep of cold databases and rescans of sources
	Workers          int
	HotSet           int           // databases held open at once
	IdleTimeout      time.Duration // a database unchanged this long is cooled; negative: never
	ShutdownTimeout  time.Duration // bound on the final sync when stopping
	// Levels are the compaction levels; nil means compact.DefaultLevels,
	// an empty non-nil slice turns compaction off.
	Levels            []compact.Level
	L0Retention       time.Duration // see compact.DefaultL0Retention; negative: keep L0
	SnapshotRetention time.Duration // see compact.DefaultSnapshotRetention; negative: keep all
	// GFS, when set, replaces SnapshotRetention with grandfather-father-son
	// retention of snapshots (take them hourly for the hourly tier to mean it).
	GFS *compact.GFS
	// RetentionInterval also applies retention on this schedule to
	// databases that changed; zero: only after each snapshot.
	RetentionInterval time.Duration
	// NoFileEvents turns inotify off: changes are found by stat sweeps only.
	NoFileEvents bool
	// StateFile, when set, is written at a clean stop and read (then
	// deleted) at start, so a restart need not read every replica.
	StateFile string
	Capture   capture.Options
	Logger    *slog.Logger
}

// Engine replicates its databases until its context ends.
type Engine struct {
	opts     Options
	log      *slog.Logger
	statusCh chan chan Status
	started  time.Time

	// Scheduler state: touched only by the scheduler goroutine.
	entries    []*entry
	byPath     map[string]*entry
	byReplica  map[string]*entry // storage.ReplicaKey of each replica -> the database that owns it
	hot        int               // databases with an open capture.DB, or being opened
	hotCap     int               // HotSet, lowered when the fd limit is hit
	watcher    *fswatch.Watcher
	watchErr   error // why some directories are swept instead of watched
	events     chan fswatch.Event
	overflow   atomic.Bool
	sweepPos   int
	rescanAt   time.Time
	background int // snapshot, compaction and retention jobs in flight
	planPos    int // where the next scheduling pass starts
	fullWarned time.Time
	cooled     int       // databases released since the last trim of the C heap
	trimmed    time.Time // when the C heap was last trimmed
}

// New checks opts and returns an engine.
func New(opts Options) (*Engine, error) {
	if len(opts.Databases) == 0 && len(opts.Sources) == 0 {
		return nil, errors.New("no databases to replicate")
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.SnapshotInterval == 0 {
		opts.SnapshotInterval = DefaultSnapshotInterval
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.HotSet <= 0 {
		opts.HotSet = DefaultHotSet
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Levels == nil {
		opts.Levels = compact.DefaultLevels
	}
	if opts.L0Retention == 0 {
		opts.L0Retention = compact.DefaultL0Retention
	}
	if opts.SnapshotRetention == 0 {
		opts.SnapshotRetention = compact.DefaultSnapshotRetention
	}
	for i, s := range opts.Sources {
		n, err := s.Source.Normalize()
		if err != nil {
			return nil, err
		}
		opts.Sources[i].Source = n
	}
	return &Engine{opts: opts, log: opts.Logger, statusCh: make(chan chan Status),
		byPath: map[string]*entry{}, byReplica: map[string]*entry{}, hotCap: opts.HotSet}, nil
}
