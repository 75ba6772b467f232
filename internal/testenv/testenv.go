package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/s3server"
)

const (
	// AWSPath is the aws CLI the helpers run. It is the Debian package's
	// binary, named by absolute path because a pyenv shim called "aws" may
	// come first on PATH.
	AWSPath = "/usr/bin/aws"

	// Region is the region the server is configured with.
	Region = s3server.Region

	// EnvVersitygw names the environment variable that overrides the path
	// of the versitygw binary.
	EnvVersitygw = s3server.EnvVersitygw

	// EnvSidecar names the environment variable that, set to "1", makes the
	// server keep object metadata in a sidecar directory instead of user
	// extended attributes.
	EnvSidecar = "WALSYNC_S3_SIDECAR"

	awsTimeout = 2 * time.Minute
)

// S3Server is a running versitygw S3 server on 127.0.0.1 with a posix
// backend (started by [s3server.Start]), with helpers that drive it with
// the aws CLI. It accepts path-style requests signed with AWS Signature V4
// by AccessKey/SecretKey for Region.
type S3Server struct {
	// The server's base URL (http://127.0.0.1:PORT), root credentials,
	// signing region, posix backend root (one subdirectory per bucket, one
	// file per object), log, and whether object metadata is kept in a
	// sidecar directory: those of [s3server.Server].
	Endpoint, AccessKey, SecretKey, Region, Dir, LogFile string
	Sidecar                                              bool

	srv    *s3server.Server
	awsDir string // empty aws CLI config files
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
	return s.srv.Stop()
}

// Main is a TestMain helper: it runs the tests, stops the shared S3 server
// and exits with the tests' exit code. Use it as
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	RemoveBinary()
	if err := Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
	}
	os.Exit(code)
}

// RepoRoot returns the repository root: the nearest directory at or above
// the working directory whose go.mod is walsync's main module.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := s3server.RepoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return root
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("testenv: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// startS3 starts a server in a new temporary directory, with empty aws CLI
// config files there so that the user's ~/.aws does not leak into the
// tests.
func startS3() (*S3Server, error) {
	srv, err := s3server.Start(s3server.Options{Sidecar: os.Getenv(EnvSidecar) == "1"})
	if err != nil {
		return nil, err
	}
	s := &S3Server{
		Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: srv.Region,
		Dir: srv.Dir, LogFile: srv.LogFile, Sidecar: srv.Sidecar,
		srv: srv, awsDir: filepath.Join(srv.Base(), "aws"),
	}
	err = os.MkdirAll(s.awsDir, 0o755)
	for _, f := range []string{"config", "credentials"} {
		if err == nil {
			err = os.WriteFile(filepath.Join(s.awsDir, f), nil, 0o600)
		}
	}
	if err != nil {
		_ = srv.Stop()
		return nil, fmt.Errorf("preparing aws CLI config: %w", err)
	}
	return s, nil
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
		cmd.Err = fmt.Errorf("aws CLI not found at %s (%w): %s", AWSPath, err, s3server.DepsHint)
	}
	cmd.Env = s.awsEnv()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// awsEnv is the aws CLI's environment: ours less every AWS_ variable, the
// proxy settings and the Python path overrides, plus the server's
// credentials and empty config files.
func (s *S3Server) awsEnv() []string {
	return s3server.Environ(func(k string) bool {
		return s3server.ClientSetting(k) || k == "PYTHONPATH" || k == "PYTHONHOME" || k == "PYTHONUSERBASE"
	},
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
