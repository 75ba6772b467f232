package s3_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/faultproxy"
	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/restore"
	"github.com/walsync/walsync/storage/s3"
)

// step returns the named step of res.
func step(t *testing.T, res *s3.CheckResult, name string) s3.CheckStep {
	t.Helper()
	for _, s := range res.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no %q step in:\n%s", name, strings.Join(res.Lines(), "\n"))
	return s3.CheckStep{}
}

// wantOnly asserts that exactly the steps named in fail failed.
func wantOnly(t *testing.T, res *s3.CheckResult, fail ...string) {
	t.Helper()
	out := strings.Join(res.Lines(), "\n")
	t.Logf("check:\n%s", out)
	for _, s := range res.Steps {
		want := !strings.Contains(" "+strings.Join(fail, " ")+" ", " "+s.Name+" ")
		if s.OK != want {
			t.Fatalf("step %s OK=%v, want %v:\n%s", s.Name, s.OK, want, out)
		}
		if !s.OK && s.Fix == "" {
			t.Fatalf("step %s failed without a fix:\n%s", s.Name, out)
		}
	}
	if res.Failed() != (len(fail) > 0) {
		t.Fatalf("Failed() = %v with failing steps %v", res.Failed(), fail)
	}
}

func TestCheck(t *testing.T) {
	s := testenv.S3(t)
	ctx := context.Background()

	t.Run("all green, nothing left", func(t *testing.T) {
		bucket := s.NewBucket(t)
		c := newClient(t, s, s.Endpoint, bucket, "app", nil)
		res := c.Check(ctx, s3.CheckOptions{})
		wantOnly(t, res)
		for _, n := range []string{"credentials", "bucket", "clock", "put", "get", "list", "if-none-match", "if-match", "delete"} {
			step(t, res, n)
		}
		if res.Latency <= 0 || res.Latency > 5*time.Second {
			t.Fatalf("latency %v", res.Latency)
		}
		if out := s.AWS(t, "s3api", "list-objects-v2", "--bucket", bucket); strings.Contains(string(out), "walsync-check") {
			t.Fatalf("the probe object is left behind:\n%s", out)
		}
	})

	t.Run("delete refused", func(t *testing.T) {
		bucket := s.NewBucket(t)
		p := newProxy(t, s)
		p.SetFilter(func(r *http.Request) bool { return faultproxy.Operation(r) == "DeleteObjects" })
		p.FailNext(2, http.StatusForbidden, "AccessDenied") // the delete step and its cleanup
		c := newClient(t, s, p.URL(), bucket, "app", func(cfg *s3.Config) { cfg.MaxRetries = -1 })
		res := c.Check(ctx, s3.CheckOptions{})
		wantOnly(t, res, "delete", "cleanup")
		if f := step(t, res, "delete").Fix; !strings.Contains(f, "s3:DeleteObject") {
			t.Fatalf("delete fix %q does not name the IAM action", f)
		}
		// The probe left behind is no database: list, ListReplicas and a
		// restore of the replica do not see it.
		leftover := string(s.AWS(t, "s3api", "list-objects-v2", "--bucket", bucket))
		if !strings.Contains(leftover, "app/.walsync-check-") {
			t.Fatalf("the refused delete left no probe behind (the test proves nothing):\n%s", leftover)
		}
		root := newClient(t, s, s.Endpoint, bucket, "app", nil)
		names, err := root.ListReplicas(ctx)
		if err != nil || len(names) != 0 {
			t.Fatalf("ListReplicas with a probe left behind: %v, %v; want none", names, err)
		}
		dbs, err := restore.ListDatabases(ctx, root)
		if err != nil || len(dbs) != 0 {
			t.Fatalf("ListDatabases with a probe left behind: %v, %v; want none", dbs, err)
		}
		if has, err := root.HasFiles(ctx); err != nil {
			t.Fatal(err)
		} else if has {
			// A database's replica is below app/<name>/: the probe sits
			// beside them, never inside one.
			sub := root.Sub("t1/app").(*s3.Client)
			if has, _ := sub.HasFiles(ctx); has {
				t.Fatal("a database's replica holds the probe")
			}
		}
	})

	t.Run("conditional headers stripped", func(t *testing.T) {
		p := newProxy(t, s)
		p.StripRequestHeaders("If-None-Match", "If-Match")
		c := newClient(t, s, p.URL(), s.NewBucket(t), "app", nil)
		wantOnly(t, c.Check(ctx, s3.CheckOptions{}), "if-none-match", "if-match")
	})

	t.Run("clock 20 minutes off", func(t *testing.T) {
		target, _ := url.Parse(s.Endpoint)
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.ModifyResponse = func(r *http.Response) error {
			r.Header.Set("Date", time.Now().Add(20*time.Minute).UTC().Format(http.TimeFormat))
			return nil
		}
		srv := httptest.NewServer(rp)
		defer srv.Close()
		c := newClient(t, s, srv.URL, s.NewBucket(t), "app", nil)
		res := c.Check(ctx, s3.CheckOptions{})
		wantOnly(t, res, "clock")
		if d := res.ClockOffset; d < 19*time.Minute || d > 21*time.Minute {
			t.Fatalf("clock offset %v, want about 20m", d)
		}
	})

	t.Run("wrong region", func(t *testing.T) {
		c := newClient(t, s, s.Endpoint, s.NewBucket(t), "app", func(cfg *s3.Config) { cfg.Region = "eu-west-3" })
		res := c.Check(ctx, s3.CheckOptions{})
		wantOnly(t, res, "bucket")
		if f := step(t, res, "bucket").Fix; !strings.Contains(f, "--region "+s.Region) {
			t.Fatalf("bucket fix %q does not name the bucket's region", f)
		}
		if len(res.Steps) > 3 {
			t.Fatal("the check went on writing after the bucket step failed")
		}
	})

	t.Run("read-only writes nothing", func(t *testing.T) {
		p := newProxy(t, s)
		c := newClient(t, s, p.URL(), s.NewBucket(t), "app", nil)
		wantOnly(t, c.Check(ctx, s3.CheckOptions{ReadOnly: true}))
		for op := range p.Operations() {
			if op != "HeadBucket" {
				t.Fatalf("the read-only check sent %s", op)
			}
		}
	})
}

// TestCheckUntrustedCertificate: an https endpoint whose certificate no
// CA here vouches for fails the bucket step with the fix that applies
// (AWS_CA_BUNDLE), not "the endpoint did not answer".
func TestCheckUntrustedCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	c, err := s3.New(s3.Config{
		Bucket: "b", Prefix: "p", Endpoint: srv.URL, Region: "us-east-1",
		Credentials: &s3.Credentials{AccessKeyID: "AK", SecretAccessKey: "SK", Source: "test"},
		TempDir:     t.TempDir(), MaxRetries: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := step(t, c.Check(context.Background(), s3.CheckOptions{ReadOnly: true}), "bucket")
	if s.OK || !strings.Contains(s.Fix, "AWS_CA_BUNDLE") {
		t.Fatalf("bucket step behind an untrusted certificate: %+v; want a failure whose fix names AWS_CA_BUNDLE", s)
	}
}
