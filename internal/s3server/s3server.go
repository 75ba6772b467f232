// Package s3server starts and stops a local S3 server: versitygw with its
// posix backend, listening on 127.0.0.1. The tests (through
// internal/testenv), the benchmarks in bench/ and bench/s3client all start
// it here.
//
// The binary is built into <repo>/.cache/bin/versitygw by
// scripts/test-deps.sh; $WALSYNC_VERSITYGW overrides it.
package s3server

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// Region is the region the server is configured with.
	Region = "us-east-1"

	// EnvVersitygw names the environment variable that overrides the path
	// of the versitygw binary.
	EnvVersitygw = "WALSYNC_VERSITYGW"

	// DepsHint says how to install a missing dependency.
	DepsHint = "run scripts/test-deps.sh from the repository root to install the test dependencies"

	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	StopTimeout = 10 * time.Second

	startupTimeout = 30 * time.Second
)

// Options say how to start the server. The zero value runs the default
// binary in a new temporary directory.
type Options struct {
	// Bin is the versitygw binary; "" means FindBinary.
	Bin string
	// Dir holds the backend's data, its metadata and the log; it is created
	// if missing and left in place by Stop. "" means a new temporary
	// directory, preferably on a filesystem with user extended attributes,
	// which Stop removes.
	Dir string
	// Sidecar keeps object metadata in a sidecar directory even where the
	// filesystem supports user extended attributes (it is used anyway
	// where it does not).
	Sidecar bool
	// Buckets are created before the server starts, as the directories
	// that hold a posix bucket's objects.
	Buckets []string
}

// Server is a running versitygw on 127.0.0.1 with a posix backend. It
// accepts path-style requests signed with AWS Signature V4 by
// AccessKey/SecretKey for Region.
type Server struct {
	// Endpoint is the base URL, http://127.0.0.1:PORT.
	Endpoint string
	// AccessKey is the root user's access key id.
	AccessKey string
	// SecretKey is the root user's secret access key.
	SecretKey string
	// Region is the signing region, "us-east-1".
	Region string
	// Dir is the posix backend root: one subdirectory per bucket, one file
	// per object.
	Dir string
	// LogFile holds versitygw's output: its startup banner and one line
	// per request.
	LogFile string
	// Sidecar is true when object metadata is kept in a sidecar directory
	// rather than in user extended attributes of the object files.
	Sidecar bool

	baseDir string
	ownDir  bool // Start created baseDir: Stop removes it
	proc    *Process
}

var errPortInUse = errors.New("port already in use")

// Start runs versitygw on a free port and waits until it answers HTTP. A
// port taken between choosing and binding it is retried on another.
func Start(opts Options) (*Server, error) {
	bin := opts.Bin
	if bin == "" {
		var err error
		if bin, err = FindBinary(); err != nil {
			return nil, err
		}
	} else if err := checkBinary(bin); err != nil {
		return nil, err
	}
	s := &Server{
		AccessKey: "WT" + rand.Text()[:18],        // 20 characters, like AWS
		SecretKey: rand.Text() + rand.Text()[:14], // 40
		Region:    Region,
		baseDir:   opts.Dir,
	}
	xattrs := false
	if s.baseDir == "" {
		var err error
		if s.baseDir, xattrs, err = makeBaseDir(); err != nil {
			return nil, err
		}
		s.ownDir = true
	} else {
		if err := os.MkdirAll(s.baseDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating the S3 server directory: %w", err)
		}
		xattrs = supportsUserXattr(s.baseDir)
	}
	s.Dir = filepath.Join(s.baseDir, "data")
	s.LogFile = filepath.Join(s.baseDir, "versitygw.log")
	s.Sidecar = !xattrs || opts.Sidecar
	dirs := []string{s.Dir, filepath.Join(s.baseDir, "meta")}
	for _, b := range opts.Buckets {
		dirs = append(dirs, filepath.Join(s.Dir, b))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			s.removeDir()
			return nil, fmt.Errorf("preparing S3 server directories: %w", err)
		}
	}
	for attempt := 1; ; attempt++ {
		err := s.start(bin)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == 3 {
			s.removeDir()
			return nil, err
		}
	}
}

// Base returns the directory that holds Dir, the metadata and LogFile.
func (s *Server) Base() string { return s.baseDir }

// Pid returns the process id of versitygw.
func (s *Server) Pid() int { return s.proc.Pid() }

// Stop stops versitygw (SIGTERM, then SIGKILL after StopTimeout) and
// removes the server's directory if Start created it. It is safe to call
// more than once.
func (s *Server) Stop() error {
	var err error
	if !s.proc.Stop(StopTimeout) {
		err = fmt.Errorf("versitygw (pid %d) did not exit within %v of SIGTERM; killed", s.proc.Pid(), StopTimeout)
	}
	if s.ownDir {
		if rmErr := os.RemoveAll(s.baseDir); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("removing S3 server directory: %w", rmErr))
		}
	}
	if err != nil {
		return fmt.Errorf("stopping S3 server: %w", err)
	}
	return nil
}

func (s *Server) removeDir() {
	if s.ownDir {
		_ = os.RemoveAll(s.baseDir)
	}
}

// LogTail returns the last n bytes of the server log.
func (s *Server) LogTail(n int) string { return Tail(s.LogFile, n) }

// Tail returns the last n bytes of the file at path, or why it cannot.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// env is the environment of the versitygw process: ours, less any
// variable that versitygw reads (so the caller's environment cannot change
// its behaviour), plus the root credentials.
func (s *Server) env() []string {
	return Environ(func(k string) bool {
		return strings.HasPrefix(k, "VGW_") || strings.HasPrefix(k, "ROOT_") || k == "LOGFILE" || k == "WEBHOOK"
	}, "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
}

// args returns versitygw's command line for listening on addr.
func (s *Server) args(addr string) []string {
	args := []string{
		"--port", addr,
		"--region", s.Region,
		// Like real S3: without it every response closes the connection.
		"--keep-alive",
		"posix",
	}
	if s.Sidecar {
		args = append(args, "--sidecar", filepath.Join(s.baseDir, "meta"))
	}
	return append(args, s.Dir)
}

// start runs versitygw on a free port and waits until it answers HTTP.
func (s *Server) start(bin string) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.Endpoint = "http://" + addr
	args := s.args(addr)
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.baseDir
	cmd.Env = s.env()
	if s.proc, err = StartProcess(cmd, s.LogFile); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}

	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	deadline := time.Now().Add(startupTimeout)
	for {
		select {
		case <-s.proc.Done():
			log := s.LogTail(4096)
			err := fmt.Errorf("versitygw %s exited during startup (%v); its log %s:\n%s",
				strings.Join(args, " "), s.proc.Err(), s.LogFile, log)
			if strings.Contains(log, "address already in use") {
				err = fmt.Errorf("%w: %w", errPortInUse, err)
			}
			return err
		default:
		}
		// Any HTTP answer (403 for this anonymous request) means it serves.
		resp, err := client.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			s.proc.Stop(StopTimeout)
			return fmt.Errorf("versitygw %s did not answer on %s within %v (last error: %v); its log %s:\n%s",
				strings.Join(args, " "), s.Endpoint, startupTimeout, err, s.LogFile, s.LogTail(4096))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RepoRoot returns the repository root: the nearest directory at or above
// the working directory whose go.mod is walsync's main module (not that of
// a nested module such as bench/).
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repository root: %w", err)
	}
	for dir := wd; ; {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module github.com/walsync/walsync\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("finding repository root: no walsync go.mod in %s or any parent", wd)
		}
		dir = parent
	}
}

// FindBinary returns the versitygw binary to run: $WALSYNC_VERSITYGW if
// set, else <repo>/.cache/bin/versitygw. Its error says how to install it.
func FindBinary() (string, error) {
	path := os.Getenv(EnvVersitygw)
	if path == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", fmt.Errorf("locating versitygw: %w: %s", err, DepsHint)
		}
		path = filepath.Join(root, ".cache", "bin", "versitygw")
	}
	return path, checkBinary(path)
}

func checkBinary(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("versitygw binary not found at %s (%w): %s", path, err, DepsHint)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("versitygw at %s is not an executable file: %s", path, DepsHint)
	}
	return nil
}

// makeBaseDir creates the server's temporary directory, preferring one whose
// filesystem supports user extended attributes. It reports whether it found
// one; if not, the returned directory is in the first usable candidate.
func makeBaseDir() (dir string, xattrs bool, err error) {
	candidates := []string{os.TempDir()}
	if root, err := RepoRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, ".cache", "tmp"))
	}
	var fallback string
	var errs []error
	for _, c := range candidates {
		if err := os.MkdirAll(c, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		d, err := os.MkdirTemp(c, "walsync-s3-")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if supportsUserXattr(d) {
			if fallback != "" {
				_ = os.RemoveAll(fallback)
			}
			return d, true, nil
		}
		if fallback == "" {
			fallback = d
		} else {
			_ = os.RemoveAll(d)
		}
	}
	if fallback != "" {
		return fallback, false, nil
	}
	return "", false, fmt.Errorf("creating a temporary directory for the S3 server: %w", errors.Join(errs...))
}
