package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/faultproxy"
	"github.com/walsync/walsync/internal/testenv"
)

// TestHealthz: /healthz answers 200 while the database replicates, 503
// naming it (and why) once its changes cannot be shipped for longer than
// --health-max-lag (the S3 server answers 503 to everything, through a
// proxy in front of the real server), and 200 again once they can.
// status --summary shows the failing database first.
func TestHealthz(t *testing.T) {
	s3 := testenv.S3(t)
	bucket := s3.NewBucket(t)
	proxy, err := faultproxy.New(s3.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close) // after the watch stops (cleanups run last first)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	t.Setenv("AWS_REGION", s3.Region)

	dir := t.TempDir()
	dbPath := filepath.Join(dir, "hz", "app.db")
	walDB(t, dbPath, 3)
	addr, stderr := startWatch(t, 0, dbPath, "-b", "s3://"+bucket+"/hz", "--endpoint", proxy.URL(),
		"--sync-interval", "100ms", "--health-max-lag", "2s")
	t.Cleanup(func() { proxy.FailNext(0, 0, "") }) // before the watch stops: its final sync succeeds
	healthz := func() (int, string) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(want int, what string) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := healthz()
			if code == want {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /healthz %d %s, want %d\n%s", what, code, body, want, stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor(http.StatusOK, "replicating")

	proxy.FailNext(1<<30, http.StatusServiceUnavailable, "ServiceUnavailable")
	walDB(t, dbPath, 2) // changes that cannot be shipped
	body := waitFor(http.StatusServiceUnavailable, "storage failing")
	var h struct {
		OK        bool `json:"ok"`
		Count     int  `json:"count"`
		Unhealthy []struct {
			Path   string `json:"path"`
			Name   string `json:"name"`
			Reason string `json:"reason"`
		} `json:"unhealthy"`
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil || h.OK || h.Count != 1 || len(h.Unhealthy) != 1 ||
		h.Unhealthy[0].Path != dbPath || h.Unhealthy[0].Name != "hz/app" || !strings.Contains(h.Unhealthy[0].Reason, "shipped") {
		t.Fatalf("/healthz body %s (%v): want the one database named, with why", body, err)
	}
	code, out, errOut := cli(t, "status", "--addr", addr, "--summary")
	if code != 0 || !strings.Contains(out, "1 databases") || !strings.Contains(out, dbPath) {
		t.Fatalf("status --summary: exit %d\n%s%s", code, out, errOut)
	}

	proxy.FailNext(0, 0, "")
	waitFor(http.StatusOK, "storage back")
}
