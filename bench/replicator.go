package main

// Running either replicator: its command line or Litestream configuration,
// its environment, its process from start to SIGTERM, and its log.
// (run.sh builds Litestream v0.5.18 into .cache/bin.)

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/walsync/walsync/internal/s3server"
)

// toolRun is one replicator in one run, and what every mode records of it.
type toolRun struct {
	name   string // "walsync" or "litestream"
	outDir string // its logs and raw data
	work   string // its temporary directory

	rep     *s3server.Process
	logPath string
	started time.Time

	failures, notes []string
	logLines        []string // log lines worth showing

	cpuTotal            float64 // rusage, whole life
	shutdown            time.Duration
	exitStatus          string
	logErrors, logWarns int
}

// base is the toolRun of any mode's tool (see failedState).
func (t *toolRun) base() *toolRun { return t }

func (t *toolRun) fail(format string, a ...any) {
	t.failures = append(t.failures, fmt.Sprintf(format, a...))
}

func (t *toolRun) note(format string, a ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, a...))
}

// makeWork creates the temporary directory, named after pattern (as in
// os.MkdirTemp).
func (t *toolRun) makeWork(c *config, pattern string) error {
	var err error
	if t.work, err = os.MkdirTemp(c.tmpDir, pattern); err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	if c.keep {
		t.note("work dir kept: %s", t.work)
	}
	return nil
}

// removeWork removes the temporary directory unless --keep.
func (t *toolRun) removeWork(c *config) {
	if t.work != "" && !c.keep {
		os.RemoveAll(t.work)
	}
}

// start starts the replicator, its output in <outDir>/<name>.log.
func (t *toolRun) start(cmd *exec.Cmd) error {
	t.logPath = filepath.Join(t.outDir, t.name+".log")
	_ = os.Remove(t.logPath)
	t.started = time.Now()
	var err error
	if t.rep, err = s3server.StartProcess(cmd, t.logPath); err != nil {
		return fmt.Errorf("starting %s: %w", t.name, err)
	}
	return nil
}

// exitedEarly says, with its log's tail, that the replicator exited by
// itself before the bench stopped it; "" if it is running.
func (t *toolRun) exitedEarly(during string, tail int) string {
	if !t.rep.Exited() {
		return ""
	}
	return fmt.Sprintf("%s %s (%v); log tail:\n%s", t.name, during, t.rep.Err(), s3server.Tail(t.logPath, tail))
}

// failIfDied fails the run if the replicator exited during it.
func (t *toolRun) failIfDied(during string) {
	if msg := t.exitedEarly("died during "+during, 3000); msg != "" {
		t.fail("%s", msg)
	}
}

// stop sends SIGTERM, kills the replicator if it has not exited within
// 60 s, and records how long it took, its CPU time and its exit status.
// A replicator that was running and exits with an error fails the run.
func (t *toolRun) stop() {
	running := !t.rep.Exited()
	t0 := time.Now()
	alone := t.rep.Stop(60 * time.Second)
	t.shutdown = time.Since(t0)
	if !alone {
		t.fail("%s did not exit within 60 s of SIGTERM (killed)", t.name)
	}
	st := t.rep.State()
	t.cpuTotal = cpuTotal(st)
	t.exitStatus = st.String()
	if running && alone && !st.Success() {
		t.fail("%s exited with %s after SIGTERM; log tail:\n%s", t.name, st, s3server.Tail(t.logPath, 2000))
	}
}

// kill stops a replicator that is still running, for clean-up.
func (t *toolRun) kill() {
	if t.rep != nil && !t.rep.Exited() {
		t.rep.Stop(10 * time.Second)
	}
}

// scanLog counts the ERROR and WARN lines of the replicator's log, keeps
// the first few, and fails the run on a panic.
func (t *toolRun) scanLog() {
	f, err := os.Open(t.logPath)
	if err != nil {
		t.note("reading log: %v", err)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "level=ERROR"):
			t.logErrors++
		case strings.Contains(line, "level=WARN"):
			t.logWarns++
		case strings.HasPrefix(line, "panic:"), strings.HasPrefix(line, "fatal error:"):
			t.fail("replicator crashed: %s", line)
		default:
			continue
		}
		if len(t.logLines) < 5 {
			if len(line) > 400 {
				line = line[:400] + "..."
			}
			t.logLines = append(t.logLines, "log: "+line)
		}
	}
}

// childEnv is our environment without any AWS, Litestream or proxy
// settings, plus the server's credentials (placeholders without one).
func childEnv(s *s3server.Server) []string {
	key, secret := "unused", "unused"
	if s != nil {
		key, secret = s.AccessKey, s.SecretKey
	}
	return s3server.Environ(func(k string) bool { return s3server.ClientSetting(k) || strings.HasPrefix(k, "LITESTREAM_") },
		"AWS_ACCESS_KEY_ID="+key,
		"AWS_SECRET_ACCESS_KEY="+secret,
		"AWS_REGION="+s3server.Region,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	)
}

// replicaLoc is where a replica is: a bucket (path-style, through
// endpoint; path is a database's directory in it, or "" for directory
// mode) or, without a bucket, the directory path.
type replicaLoc struct {
	bucket, endpoint, path string
}

// lsDB is a database (path) or a directory of them (dir) in a Litestream
// configuration, with its replica.
type lsDB struct {
	path, dir string
	replica   replicaLoc
}

// litestreamYAML returns a Litestream configuration: a header naming the
// mode, the top-level settings in globals (YAML lines), then dbs.
func litestreamYAML(mode, globals string, dbs []lsDB) string {
	var b strings.Builder
	b.WriteString("# generated by walsync bench" + mode + "\n" + globals + "dbs:\n")
	for _, d := range dbs {
		if d.dir != "" {
			fmt.Fprintf(&b, "  - dir: %q\n", d.dir)
			b.WriteString("    pattern: \"*.db\"\n    recursive: true\n    watch: true\n")
		} else {
			fmt.Fprintf(&b, "  - path: %q\n", d.path)
		}
		b.WriteString("    replica:\n")
		r := d.replica
		if r.bucket == "" {
			b.WriteString("      type: file\n")
			fmt.Fprintf(&b, "      path: %q\n", r.path)
			continue
		}
		b.WriteString("      type: s3\n")
		fmt.Fprintf(&b, "      bucket: %q\n", r.bucket)
		if r.path != "" {
			fmt.Fprintf(&b, "      path: %q\n", r.path)
		}
		fmt.Fprintf(&b, "      endpoint: %q\n", r.endpoint)
		fmt.Fprintf(&b, "      region: %q\n", s3server.Region)
		b.WriteString("      force-path-style: true\n")
	}
	return b.String()
}

// litestreamCmd writes cfg to the work directory (and a copy to outDir)
// and returns "litestream replicate" with it.
func (t *toolRun) litestreamCmd(c *config, cfg string) (*exec.Cmd, error) {
	path := filepath.Join(t.work, "litestream.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("writing the Litestream config: %w", err)
	}
	_ = os.WriteFile(filepath.Join(t.outDir, "litestream.yml"), []byte(cfg), 0o644)
	return exec.Command(c.litestream, "replicate", "-config", path), nil
}

// walsyncCmd returns walsync with args, recording its command line
// (shown, when args is too long to keep) in <outDir>/command.txt.
func (t *toolRun) walsyncCmd(c *config, args []string, shown string) *exec.Cmd {
	if shown == "" {
		shown = strings.Join(args, " ")
	}
	_ = os.WriteFile(filepath.Join(t.outDir, "command.txt"), []byte("walsync "+shown+"\n"), 0o644)
	return exec.Command(c.walsync, args...)
}

// replicatorCmd returns walsync with args or Litestream with cfg.
func (t *toolRun) replicatorCmd(c *config, args []string, cfg string) (*exec.Cmd, error) {
	if t.name == "walsync" {
		return t.walsyncCmd(c, args, ""), nil
	}
	return t.litestreamCmd(c, cfg)
}
