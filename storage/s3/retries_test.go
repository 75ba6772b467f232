package s3_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/s3"
)

// TestRetriesFromContext: storage.WithRetries bounds a request's retries
// below the client's own, so background work fails fast during an outage
// (and is retried on its own back-off) instead of holding the database's
// next sync behind a whole back-off. No real server fails on demand for
// every request; a stand-in answering 503 counts the attempts.
func TestRetriesFromContext(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c, err := s3.New(s3.Config{
		Bucket: "b", Prefix: "p", Endpoint: srv.URL, Region: "us-east-1",
		Credentials:    &s3.Credentials{AccessKeyID: "AK", SecretAccessKey: "SK", Source: "test"},
		TempDir:        t.TempDir(),
		MaxRetries:     5,
		RetryBaseDelay: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ctx  context.Context
		want int64
	}{
		{context.Background(), 6},
		{storage.WithRetries(context.Background(), 1), 2},
		{storage.WithRetries(context.Background(), 0), 1},
		{storage.WithRetries(context.Background(), 50), 6}, // never more than configured
	} {
		requests.Store(0)
		it, err := c.LTXFiles(tc.ctx, 0, 0)
		if err == nil {
			_, err = storage.Collect(it)
		}
		if err == nil {
			t.Fatal("a listing against a server answering 503 succeeded")
		}
		if got := requests.Load(); got != tc.want {
			t.Errorf("%d requests, want %d", got, tc.want)
		}
	}
}
