package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	// AWSPath is the aws CLI the helpers run. It is the Debian package's
	// binary, named by absolute path because a pyenv shim called "aws" may
	// come first on PATH.
	AWSPath = "/usr/bin/aws"

	// Region is the region the server is configured with.
	Region = "us-east-1"

	// EnvVersitygw names the environment variable that overrides the path
	// of the versitygw binary.
	EnvVersitygw = "WALSYNC_VERSITYGW"

	// EnvSidecar names the environment variable that, set to "1", makes the
	// server keep object metadata in a sidecar directory instead of user
	// extended attributes.
	EnvSidecar = "WALSYNC_S3_SIDECAR"

	depsHint = "run scripts/test-deps.sh from the repository root to install the test dependencies"

	startupTimeout = 30 * time.Second
	stopTimeout    = 10 * time.Second
	awsTimeout     = 2 * time.Minute
)

// S3Server is a running versitygw S3 server on 127.0.0.1 with a posix
// backend. It accepts path-style requests signed with AWS Signature V4 by
// AccessKey/SecretKey for Region.
type S3Server struct {
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
	awsDir  string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	waitErr error         // cmd.Wait's result, valid after done is closed
}

var (
	sharedMu  sync.Mutex
	shared    *S3Server
	sharedErr error

	bucketSeq atomic.Uint64
)

// S3 returns the test binary's shared S3 server, starting it on first use.
// It fails the test (never skips it) if the server cannot be started, for
// instance because versitygw is not installed. A start failure is remembered:
// every later call fails with the same error.
//
// The server runs until Stop is called (see Main) or the test binary exits.
func S3(t testing.TB) *S3Server {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = startS3()
	}
	if sharedErr != nil {
		t.Fatalf("testenv: S3 server unavailable: %v", sharedErr)
	}
	return shared
}

// Stop stops the shared S3 server, if it is running, and removes its
// temporary directory. It is safe to call more than once; a later S3 call
// starts a new server.
func Stop() error {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	s := shared
	shared, sharedErr = nil, nil
	if s == nil {
		return nil
	}
	return s.stop()
}

// Main is a TestMain helper: it runs the tests, stops the shared S3 server
// and exits with the tests' exit code. Use it as
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if err := Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
	}
	os.Exit(code)
}

// RepoRoot returns the repository root: the nearest directory at or above
// the working directory that holds a go.mod file.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return root
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repository root: %w", err)
	}
	// The main module's go.mod, not that of a nested test-only module.
	for dir := wd; ; {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module github.com/walsync/walsync\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("finding repository root: no go.mod in %s or any parent", wd)
		}
		dir = parent
	}
}

// versitygwPath returns the versitygw binary to run: $WALSYNC_VERSITYGW if
// set, else <repo>/.cache/bin/versitygw.
func versitygwPath() (string, error) {
	path := os.Getenv(EnvVersitygw)
	if path == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		path = filepath.Join(root, ".cache", "bin", "versitygw")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("versitygw binary not found at %s (%w): %s", path, err, depsHint)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("versitygw at %s is not an executable file: %s", path, depsHint)
	}
	return path, nil
}

// makeBaseDir creates the server's temporary directory, preferring one whose
// filesystem supports user extended attributes. It reports whether it found
// one; if not, the returned directory is in the first usable candidate.
func makeBaseDir() (dir string, xattrs bool, err error) {
	candidates := []string{os.TempDir()}
	if root, err := repoRoot(); err == nil {
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

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("testenv: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var errPortInUse = errors.New("port already in use")

func startS3() (*S3Server, error) {
	bin, err := versitygwPath()
	if err != nil {
		return nil, err
	}
	base, xattrs, err := makeBaseDir()
	if err != nil {
		return nil, err
	}
	s := &S3Server{
		AccessKey: "WT" + strings.ToUpper(randomHex(9)), // 20 chars, like AWS
		SecretKey: randomHex(20),                        // 40 chars
		Region:    Region,
		Dir:       filepath.Join(base, "data"),
		LogFile:   filepath.Join(base, "versitygw.log"),
		Sidecar:   !xattrs || os.Getenv(EnvSidecar) == "1",
		baseDir:   base,
		awsDir:    filepath.Join(base, "aws"),
	}
	if err := s.prepareDirs(); err != nil {
		_ = os.RemoveAll(base)
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		err = s.start(bin)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == 3 {
			_ = os.RemoveAll(base)
			return nil, err
		}
	}
}

func (s *S3Server) prepareDirs() error {
	for _, d := range []string{s.Dir, s.awsDir, filepath.Join(s.baseDir, "meta")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("preparing S3 server directories: %w", err)
		}
	}
	// Empty aws CLI config files, so that the user's ~/.aws does not leak
	// into the tests.
	for _, f := range []string{"config", "credentials"} {
		if err := os.WriteFile(filepath.Join(s.awsDir, f), nil, 0o600); err != nil {
			return fmt.Errorf("preparing aws CLI config: %w", err)
		}
	}
	return nil
}

// serverEnv is the environment of the versitygw process: ours, less any
// variable that versitygw reads (so the caller's environment cannot change
// its behaviour), plus the root credentials.
func (s *S3Server) serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "VGW_") || strings.HasPrefix(k, "ROOT_") ||
			k == "LOGFILE" || k == "WEBHOOK" {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"ROOT_ACCESS_KEY="+s.AccessKey,
		"ROOT_SECRET_KEY="+s.SecretKey,
	)
}

// args returns versitygw's command line for listening on addr.
func (s *S3Server) args(addr string) []string {
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
func (s *S3Server) start(bin string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.Endpoint = "http://" + addr

	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening versitygw log: %w", err)
	}
	args := s.args(addr)
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.baseDir
	cmd.Env = s.serverEnv()
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = childSysProcAttr()
	s.cmd = cmd
	s.done = make(chan struct{})
	s.waitErr = nil

	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that started the
		// child exits; keep this thread alive, and to ourselves, until the
		// child has exited. It is never unlocked, so it exits with us.
		runtime.LockOSThread()
		defer close(s.done)
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.waitErr = cmd.Wait()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}

	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	deadline := time.Now().Add(startupTimeout)
	for {
		select {
		case <-s.done:
			log := s.logTail()
			err := fmt.Errorf("versitygw %s exited during startup (%v); its log %s:\n%s",
				strings.Join(args, " "), s.waitErr, s.LogFile, log)
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
			_ = s.kill()
			return fmt.Errorf("versitygw %s did not answer on %s within %v (last error: %v); its log %s:\n%s",
				strings.Join(args, " "), s.Endpoint, startupTimeout, err, s.LogFile, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logTail returns the last few KiB of the server log.
func (s *S3Server) logTail() string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	const max = 4096
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// kill stops the process: SIGTERM, then SIGKILL after stopTimeout.
func (s *S3Server) kill() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = s.cmd.Process.Kill()
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(stopTimeout):
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing versitygw (pid %d): %w", s.cmd.Process.Pid, err)
	}
	<-s.done
	return nil
}

// stop kills the process and removes the server's directory.
func (s *S3Server) stop() error {
	err := s.kill()
	if rmErr := os.RemoveAll(s.baseDir); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("removing S3 server directory: %w", rmErr))
	}
	if err != nil {
		return fmt.Errorf("stopping S3 server: %w", err)
	}
	return nil
}

// NewBucket creates a new, uniquely named bucket (derived from the test's
// name) with the aws CLI and returns its name. Buckets are not deleted after
// the test; they go away with the server's directory.
func (s *S3Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := BucketName(t.Name())
	s.AWS(t, "s3api", "create-bucket", "--bucket", name)
	return name
}

// BucketName returns a fresh, DNS-valid bucket name (lowercase letters,
// digits and single hyphens, at most 63 characters) that contains a
// sanitized form of hint.
func BucketName(hint string) string {
	const maxHint = 36
	var b strings.Builder
	lastHyphen := true // no leading hyphen
	for _, r := range strings.ToLower(hint) {
		if b.Len() >= maxHint {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			lastHyphen = false
		} else if !lastHyphen {
			b.WriteByte('-')
			lastHyphen = true
		}
	}
	h := strings.TrimRight(b.String(), "-")
	if h == "" {
		h = "bucket"
	}
	return fmt.Sprintf("wt-%s-%d-%s", h, bucketSeq.Add(1), randomHex(4))
}

// AWS runs "/usr/bin/aws --endpoint-url <Endpoint> args..." with the
// server's credentials and an empty aws configuration, and returns its
// standard output. It fails the test, showing standard error, if the
// command fails.
func (s *S3Server) AWS(t testing.TB, args ...string) []byte {
	t.Helper()
	return s.AWSAt(t, s.Endpoint, args...)
}

// AWSAt is AWS against another endpoint with the same credentials, for
// instance a proxy in front of the server.
func (s *S3Server) AWSAt(t testing.TB, endpoint string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), awsTimeout)
	defer cancel()
	cmd := s.AWSCommand(ctx, endpoint, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("testenv: aws --endpoint-url %s %s: %v\nstderr:\n%s",
			endpoint, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// AWSCommand returns, unstarted, the command that AWSAt runs, so that a test
// can inspect a failure itself or add environment variables (later entries
// of cmd.Env win), e.g. AWS_MAX_ATTEMPTS=1 to disable the CLI's retries.
// If /usr/bin/aws is missing the command fails when run, with an error that
// says to run scripts/test-deps.sh.
func (s *S3Server) AWSCommand(ctx context.Context, endpoint string, args ...string) *exec.Cmd {
	all := append([]string{"--endpoint-url", endpoint}, args...)
	cmd := exec.CommandContext(ctx, AWSPath, all...)
	if _, err := os.Stat(AWSPath); err != nil {
		cmd.Err = fmt.Errorf("aws CLI not found at %s (%w): %s", AWSPath, err, depsHint)
	}
	cmd.Env = s.awsEnv()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// awsEnv is the aws CLI's environment: ours less every AWS_ variable, the
// proxy settings and the Python path overrides, plus the server's
// credentials and empty config files.
func (s *S3Server) awsEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "AWS_"),
			strings.EqualFold(k, "HTTP_PROXY"), strings.EqualFold(k, "HTTPS_PROXY"),
			strings.EqualFold(k, "ALL_PROXY"), strings.EqualFold(k, "NO_PROXY"),
			k == "PYTHONPATH", k == "PYTHONHOME", k == "PYTHONUSERBASE":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"AWS_ACCESS_KEY_ID="+s.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+s.SecretKey,
		"AWS_DEFAULT_REGION="+s.Region,
		"AWS_REGION="+s.Region,
		"AWS_CONFIG_FILE="+filepath.Join(s.awsDir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(s.awsDir, "credentials"),
		"AWS_PAGER=",
		"AWS_CLI_AUTO_PROMPT=off",
		"AWS_EC2_METADATA_DISABLED=true",
	)
}
