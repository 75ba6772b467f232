package faultproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/walsync/walsync/internal/faultproxy"
)

// echoed is what the backend saw of one request.
type echoed struct {
	requestURI string
	host       string
	header     http.Header
	body       string
}

// rawRequest writes req verbatim on a new connection to addr and returns
// the final (non-1xx) response.
func rawRequest(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	for err == nil && resp.StatusCode/100 == 1 { // 100 Continue
		resp, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The backend sees the request line, Host and end-to-end headers exactly as
// the client sent them, and nothing the proxy made up.
func TestForwardIsVerbatim(t *testing.T) {
	seen := make(chan echoed, 10)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- echoed{r.RequestURI, r.Host, r.Header.Clone(), string(b)}
		w.Header().Set("X-Amz-Meta-Sha256", "abc")
		w.Header().Set("ETag", `"e"`)
		fmt.Fprint(w, "response body")
	}))
	defer backend.Close()
	p, err := faultproxy.New(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	addr := strings.TrimPrefix(p.URL(), "http://")

	for _, tc := range []struct {
		name, method, uri, extra, body string
	}{
		{"put with escapes", "PUT", "/b/dir/a%20b%2Bc%21%28x%29%2A~.txt?x-id=PutObject&b=2&a=%7E", "Expect: 100-continue\r\n", "hello"},
		{"delete with content-length 0", "DELETE", "/b/k", "", ""},
		{"get", "GET", "/b?list-type=2&prefix=a%2Fb", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.method + " " + tc.uri + " HTTP/1.1\r\n" +
				"Host: signed-host.example:1234\r\n" +
				"Authorization: AWS4-HMAC-SHA256 Credential=x\r\n" +
				"X-Amz-Date: 20260101T000000Z\r\n" +
				"Connection: keep-alive, X-Hop\r\n" +
				"X-Hop: must-not-pass\r\n" +
				tc.extra
			if tc.method != "GET" {
				req += fmt.Sprintf("Content-Length: %d\r\n", len(tc.body))
			}
			req += "\r\n" + tc.body
			resp := rawRequest(t, addr, req)
			body, err := io.ReadAll(resp.Body)
			if err != nil || string(body) != "response body" || resp.Header.Get("X-Amz-Meta-Sha256") != "abc" {
				t.Fatalf("response: %s %q %v (err %v)", resp.Status, body, resp.Header, err)
			}
			var got echoed
			select {
			case got = <-seen:
			case <-time.After(10 * time.Second):
				t.Fatal("backend saw no request")
			}
			if got.requestURI != tc.uri {
				t.Errorf("backend request URI = %q, want %q", got.requestURI, tc.uri)
			}
			if got.host != "signed-host.example:1234" {
				t.Errorf("backend Host = %q, want the client's", got.host)
			}
			if got.body != tc.body {
				t.Errorf("backend body = %q, want %q", got.body, tc.body)
			}
			h := got.header
			if h.Get("Authorization") != "AWS4-HMAC-SHA256 Credential=x" || h.Get("X-Amz-Date") != "20260101T000000Z" {
				t.Errorf("signed headers changed: %v", h)
			}
			if tc.method != "GET" && h.Get("Content-Length") != fmt.Sprint(len(tc.body)) {
				t.Errorf("Content-Length = %q, want %d", h.Get("Content-Length"), len(tc.body))
			}
			for _, k := range []string{"X-Hop", "X-Forwarded-For", "User-Agent", "Accept-Encoding"} {
				if v, ok := h[k]; ok {
					t.Errorf("backend got header %s: %q", k, v)
				}
			}
		})
	}
}
