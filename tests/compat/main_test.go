package compat

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/litestream"
	lss3 "github.com/benbjohnson/litestream/s3"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/storage/s3"
)

func TestMain(m *testing.M) {
	// Both tools' S3 clients are configured explicitly below; keep the
	// caller's AWS environment out of them, as testenv does for the aws
	// CLI. AWS_CA_BUNDLE in particular makes every Litestream v0.5.18 S3
	// call fail: "s3: cannot load aws config: unable to add custom RootCAs
	// HTTPClient, has no WithTransportOptions, *http.Client" (its
	// ReplicaClient.Init hands the SDK a plain *http.Client).
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			os.Unsetenv(k)
		}
	}
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	testenv.Main(m)
}

// s3Replica is one replica path in a fresh bucket of the shared versitygw
// server, reachable with either tool's S3 client.
type s3Replica struct {
	srv    *testenv.S3Server
	bucket string
	prefix string
}

func newS3Replica(t *testing.T) s3Replica {
	t.Helper()
	srv := testenv.S3(t) // fails (never skips) with how to install versitygw
	// A nested prefix with a dot, as "s3://bucket/dbs/app.db" would give.
	return s3Replica{srv: srv, bucket: srv.NewBucket(t), prefix: "dbs/app.db"}
}

// walsync returns walsync's client for the replica.
func (r s3Replica) walsync(t *testing.T) *s3.Client {
	t.Helper()
	pathStyle := true
	c, err := s3.New(s3.Config{
		Bucket:         r.bucket,
		Prefix:         r.prefix,
		Endpoint:       r.srv.Endpoint,
		Region:         r.srv.Region,
		ForcePathStyle: &pathStyle,
		Credentials: &s3.Credentials{
			AccessKeyID:     r.srv.AccessKey,
			SecretAccessKey: r.srv.SecretKey,
			Source:          "test",
		},
		TempDir:    t.TempDir(),
		MaxRetries: 2,
		Logger:     quietLogger(),
	})
	if err != nil {
		t.Fatalf("walsync s3.New: %v", err)
	}
	return c
}

// litestream returns Litestream's client for the replica.
func (r s3Replica) litestream() *lss3.ReplicaClient {
	c := lss3.NewReplicaClient()
	c.Bucket = r.bucket
	c.Path = r.prefix
	c.Endpoint = r.srv.Endpoint
	c.Region = r.srv.Region
	c.AccessKeyID = r.srv.AccessKey
	c.SecretAccessKey = r.srv.SecretKey
	c.ForcePathStyle = true
	c.SetLogger(quietLogger())
	return c
}

// quietLogger keeps both tools' info logs out of the test output; warnings
// and errors still show (on stderr, printed when a test fails or with -v).
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// litestreamRestore restores client's replica with Litestream's own restore
// (the code path of "litestream restore") to a new file, at txid or at ts
// (both zero: the latest state), and has Litestream run its full
// integrity_check on the result.
func litestreamRestore(t *testing.T, client litestream.ReplicaClient, txid ltx.TXID, ts time.Time) (string, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "litestream-restored.db")
	r := litestream.NewReplicaWithClient(nil, client)
	opt := litestream.NewRestoreOptions()
	opt.OutputPath = out
	opt.TXID = txid
	opt.Timestamp = ts
	opt.IntegrityCheck = litestream.IntegrityCheckFull
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return out, r.Restore(ctx, opt)
}
