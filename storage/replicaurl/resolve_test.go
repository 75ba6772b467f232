package replicaurl_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/file"
	"github.com/walsync/walsync/storage/replicaurl"
	"github.com/walsync/walsync/storage/s3"
	"github.com/walsync/walsync/storage/storagetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestResolveParentIsNoName: with only t1/app replicated, "t1" (a parent of
// a replica, not a replica) is an unknown name with the closest names, on
// every backend; S3's HasFiles sees t1/app's objects below t1 and once
// took it for a database, which restore then found empty.
func TestResolveParentIsNoName(t *testing.T) {
	backends := map[string]func(t *testing.T) storage.Client{
		"file": func(t *testing.T) storage.Client { return file.New(t.TempDir()) },
		"s3": func(t *testing.T) storage.Client {
			s := testenv.S3(t)
			c, err := s3.New(s3.Config{
				Bucket: s.NewBucket(t), Prefix: "rep", Endpoint: s.Endpoint, Region: s.Region,
				Credentials: &s3.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey, Source: "test"},
				TempDir:     t.TempDir(),
			})
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			c := open(t)
			data := storagetest.LTX(t, 1, 1, 2, 4096, time.Now(), false)
			if _, err := c.Sub("t1/app").WriteLTXFile(ctx, 0, 1, 1, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			got, err := replicaurl.Resolve(ctx, c, "t1/app")
			if err != nil || got != "t1/app" {
				t.Fatalf("Resolve(t1/app) = %q, %v; want t1/app", got, err)
			}
			for _, arg := range []string{"t1", "t1/"} {
				got, err = replicaurl.Resolve(ctx, c, arg)
				if err == nil {
					t.Fatalf("Resolve(%q) = %q: a parent of a replica taken for one", arg, got)
				}
				if msg := err.Error(); !strings.Contains(msg, `no database named "t1"`) || !strings.Contains(msg, `"t1/app"`) {
					t.Fatalf("Resolve(%q): %v; want no database named \"t1\" with the closest, t1/app", arg, err)
				}
			}
		})
	}
}
