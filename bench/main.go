// Command bench compares walsync with Litestream v0.5.18, side by side.
// Run it through run.sh. Its modes, one file (or a few) each:
//
//   - replicate.go (the default): N SQLite databases replicated to a local
//     versitygw: replication lag, the replicator's memory, file
//     descriptors, threads, CPU and S3 requests, verified by restoring
//     with walsync;
//   - history.go (--history): a simulated day, then timestamp restores;
//   - scale.go (--scale-mode, run.sh --scale): issue 4's cases, up to
//     10,000 databases, S3 and file replicas;
//   - memory.go (--memory): the peak RSS of each operation on one large
//     database.
//
// What they share: procstat.go (process statistics), workload.go (the
// databases, their writer and the lag probe), replica.go (reading a
// replica), s3.go (the S3 server, client and counting proxy),
// replicator.go (running either tool), restore.go (restoring with either
// tool and checking the result) and report.go (the side-by-side tables).
// bench/s3client is a separate benchmark of S3 clients with its own run.sh.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// config is what every mode reads from the command line.
type config struct {
	dbs        []int
	duration   time.Duration
	tools      []string
	walsync    string
	litestream string
	versitygw  string
	outDir     string
	tmpDir     string
	sampleMax  int
	drain      time.Duration
	probeEvery time.Duration
	keep       bool
}

func main() {
	var c config
	var dbs, tools string
	flag.StringVar(&dbs, "dbs", "1,10,100", "comma-separated database counts")
	flag.DurationVar(&c.duration, "duration", 60*time.Second, "workload duration per run")
	flag.StringVar(&tools, "tools", "walsync,litestream", "replicators to run")
	flag.StringVar(&c.walsync, "walsync", "", "walsync binary")
	flag.StringVar(&c.litestream, "litestream", "", "litestream binary")
	flag.StringVar(&c.versitygw, "versitygw", "", "versitygw binary")
	flag.StringVar(&c.outDir, "out", "out", "output directory")
	flag.StringVar(&c.tmpDir, "tmp", os.TempDir(), "parent of the per-run temporary directories")
	flag.IntVar(&c.sampleMax, "sample", 10, "databases probed for lag and restored (all when N is at most this)")
	flag.DurationVar(&c.drain, "drain", 5*time.Second, "wait between stopping the writer and stopping the replicator")
	flag.DurationVar(&c.probeEvery, "probe-interval", 50*time.Millisecond, "L0 listing interval of the lag probe")
	flag.BoolVar(&c.keep, "keep", false, "keep the per-run temporary directories")
	history := flag.Bool("history", false, "simulated day: both tools side by side with intervals divided by --scale, then timestamp restores (see history.go)")
	scale := flag.Float64("scale", 60, "--history: divide 24 h and every compaction/retention interval by this")
	restoreDBs := flag.Int("restore-dbs", 3, "--history: databases per tool restored to each target")
	scaleMode := flag.Bool("scale-mode", false, "issue 4's scale cases, both tools side by side (see scale.go; run.sh --scale)")
	var so scaleOpts
	cases := flag.String("cases", "10x100%,1000x10%,10000x1%,idle1000", "--scale-mode: NxP% (N DBs, P% writing) or idleN, comma-separated")
	replicas := flag.String("replica", "both", "--scale-mode: s3, file or both")
	flag.DurationVar(&so.idle, "idle", 10*time.Minute, "--scale-mode: length of the idle window of idleN cases")
	flag.DurationVar(&so.settle, "settle", 30*time.Second, "--scale-mode: idle cases wait this long after start-up before counting")
	flag.DurationVar(&so.startTimeout, "start-timeout", 3*time.Minute, "--scale-mode: longest wait for the watch sample after start")
	flag.DurationVar(&so.statusEvery, "status-interval", 5*time.Second, "--scale-mode: how often walsync's /status and Litestream's /metrics are read")
	flag.IntVar(&so.watchSample, "watch-sample", 20, "--scale-mode: databases written right after start to time 'all watched'")
	flag.IntVar(&so.restoreExtra, "restore-extra", 10, "--scale-mode: untouched databases restored besides the probed ones")
	flag.StringVar(&so.walsyncDir, "walsync-dir", "auto", "--scale-mode: run walsync with --dir (yes, no, auto: when watch -h lists it)")
	memory := flag.Bool("memory", false, "peak RSS of snapshot, restore, verify, compaction and watch's first snapshot on one large database (see memory.go; run.sh --memory)")
	memSize := flag.String("size", "small", "--memory: small (200 MB), full (784 MB of 512-byte pages and 4 GiB of 4 KiB pages) or objects (a replica of 150,000 stray objects)")
	flag.Parse()
	if *scaleMode {
		var err error
		if so.cases, err = parseScaleCases(*cases); err != nil {
			fatalf("--cases: %v", err)
		}
		switch *replicas {
		case "s3", "file":
			so.replicas = []string{*replicas}
		case "both":
			so.replicas = []string{"s3", "file"}
		default:
			fatalf("--replica: want s3, file or both")
		}
		if so.walsyncDir != "auto" && so.walsyncDir != "yes" && so.walsyncDir != "no" {
			fatalf("--walsync-dir: want auto, yes or no")
		}
		probeSet := false
		flag.Visit(func(f *flag.Flag) { probeSet = probeSet || f.Name == "probe-interval" })
		if !probeSet {
			c.probeEvery = 100 * time.Millisecond
		}
	}
	for _, s := range strings.Split(dbs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatalf("invalid --dbs entry %q", s)
		}
		c.dbs = append(c.dbs, n)
	}
	for _, t := range strings.Split(tools, ",") {
		t = strings.TrimSpace(t)
		if t != "walsync" && t != "litestream" {
			fatalf("unknown tool %q", t)
		}
		c.tools = append(c.tools, t)
	}
	if c.walsync == "" || c.versitygw == "" || (c.litestream == "" && slices.Contains(c.tools, "litestream")) {
		fatalf("--walsync, --versitygw and --litestream are required")
	}
	var ok bool
	switch {
	case *memory:
		ok = runMemory(&c, *memSize)
	case *scaleMode:
		ok = runScale(&c, &so)
	case *history:
		if *scale <= 0 {
			fatalf("--scale must be positive")
		}
		ok = runHistory(&c, *scale, *restoreDBs)
	default:
		ok = runReplicate(&c)
	}
	if !ok {
		os.Exit(1)
	}
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "\nprocessor") + map[bool]int{true: 1}[strings.HasPrefix(string(b), "processor")]
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
	os.Exit(2)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}
