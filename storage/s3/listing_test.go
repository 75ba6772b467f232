package s3_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
	"github.com/walsync/walsync/storage/s3"
)

// TestHostileListing: a server (or something between us and it) that
// answers ListObjectsV2 without end, with a repeated continuation token
// or with keys out of order cannot keep a listing going: each ends with an
// error after a bounded number of requests, also for consumers that hold
// nothing (storage.Newest). No real server can be made to do this, so the
// server is a stand-in that answers listings only.
func TestHostileListing(t *testing.T) {
	defer func(n int) { storage.MaxListedFiles = n }(storage.MaxListedFiles)
	storage.MaxListedFiles = 50 // ScanLimit 500

	key := func(i int) string {
		return "p/0000/" + ltx.FormatFilename(ltx.TXID(i), ltx.TXID(i))
	}
	for _, tc := range []struct {
		name string
		page func(n int) (keys []string, token string) // n: the request's number, from 0
		want string
	}{
		{"endless empty pages", func(n int) ([]string, string) { return nil, fmt.Sprint("t", n) }, "kept paging"},
		{"endless foreign keys", func(n int) ([]string, string) {
			var keys []string
			for j := range 50 {
				keys = append(keys, fmt.Sprintf("p/0000/zz-%08d-%02d", n, j))
			}
			return keys, fmt.Sprint("t", n)
		}, "too many LTX files"},
		{"repeated token", func(n int) ([]string, string) { return []string{key(n + 1)}, "same" }, "repeated a continuation token"},
		{"alternating tokens", func(n int) ([]string, string) { return nil, fmt.Sprint("t", n%2) }, "repeated a continuation token"},
		{"keys going back", func(n int) ([]string, string) { return []string{key(1)}, fmt.Sprint("t", n) }, "out of order"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, requests := hostileLister(t, tc.page)
			it, err := c.LTXFiles(context.Background(), 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = storage.Newest(it)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Newest over %s: %v; want an error saying %q", tc.name, err, tc.want)
			}
			if n := requests.Load(); n > int64(storage.ScanLimit())+1 {
				t.Fatalf("%d list requests, more than the scan limit %d", n, storage.ScanLimit())
			}
		})
	}
}

// TestHostileReplicaListing: the listing that finds the databases below a
// URL (list -b, verify --all, a name not found) is bounded the same way:
// by tokens seen before, by pages, and by the databases it holds.
func TestHostileReplicaListing(t *testing.T) {
	defer func(n int) { storage.MaxListedFiles = n }(storage.MaxListedFiles)
	storage.MaxListedFiles = 50 // ScanLimit 500, 25 pages
	for _, tc := range []struct {
		name string
		page func(n int) (keys []string, token string)
		want string
	}{
		{"alternating tokens", func(n int) ([]string, string) { return nil, fmt.Sprint("t", n%2) }, "repeated a continuation token"},
		{"endless empty pages", func(n int) ([]string, string) { return nil, fmt.Sprint("t", n) }, "kept paging"},
		{"endless databases", func(n int) ([]string, string) {
			var keys []string
			for j := range 5 {
				keys = append(keys, fmt.Sprintf("p/db%06d-%d/0009/0000000000000001-0000000000000001.ltx", n, j))
			}
			return keys, fmt.Sprint("t", n)
		}, "more than 50 databases"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, requests := hostileLister(t, tc.page)
			_, err := c.ListReplicas(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ListReplicas over %s: %v; want an error saying %q", tc.name, err, tc.want)
			}
			if n := requests.Load(); n > 60 {
				t.Fatalf("%d list requests", n)
			}
		})
	}
}

// hostileLister returns a client of a stand-in server that answers every
// listing with page(n) for its n-th request (from 0), always truncated,
// and the count of requests.
func hostileLister(t *testing.T, page func(n int) (keys []string, token string)) (*s3.Client, *atomic.Int64) {
	t.Helper()
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(requests.Add(1)) - 1
		keys, token := page(n)
		var b strings.Builder
		b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>`)
		for _, k := range keys {
			fmt.Fprintf(&b, "<Contents><Key>%s</Key><Size>1</Size><LastModified>2026-11-20T10:00:00Z</LastModified></Contents>", k)
		}
		fmt.Fprintf(&b, "<IsTruncated>true</IsTruncated><NextContinuationToken>%s</NextContinuationToken></ListBucketResult>", token)
		w.Header().Set("Content-Type", "application/xml")
		_, _ = w.Write([]byte(b.String()))
	}))
	t.Cleanup(srv.Close)
	c, err := s3.New(s3.Config{
		Bucket: "b", Prefix: "p", Endpoint: srv.URL, Region: "us-east-1",
		Credentials: &s3.Credentials{AccessKeyID: "AK", SecretAccessKey: "SK", Source: "test"},
		TempDir:     t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, &requests
}
