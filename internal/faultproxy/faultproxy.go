// Package faultproxy is a small HTTP reverse proxy for tests that injects
// faults between an S3 client and a real S3 server on the same machine.
//
// The proxy forwards each request as the client sent it: same method, raw
// path and query, headers and body, and in particular the same Host header.
// AWS Signature V4 signs the Host header, so a client pointed at the proxy
// signs for the proxy's host:port, and the server must see that same value to
// accept the signature; the proxy therefore never rewrites Host. Hop-by-hop
// headers (Connection, Keep-Alive, TE, ...) are not forwarded; none of them
// is signed by S3 clients.
//
// Faults are armed with FailNext, DropNextMidBody, DropNextResponseMidBody
// and Delay, and may be restricted to some requests with SetFilter. All
// methods are safe for concurrent use.
package faultproxy

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// unknownLengthPart is how much of a body of unknown length (chunked)
	// passes before a mid-body drop.
	unknownLengthPart = 4 << 10

	// maxDrain bounds how much of a failed request's body is read.
	maxDrain = 64 << 20
)

// Proxy is a fault-injecting reverse proxy listening on 127.0.0.1.
type Proxy struct {
	target    *url.URL
	ln        net.Listener
	srv       *http.Server
	transport *http.Transport

	mu         sync.Mutex
	failN      int
	failStatus int
	failCode   string
	dropReqN   int
	dropRespN  int
	delay      time.Duration
	filter     func(*http.Request) bool
	byMethod   map[string]int
	byOp       map[string]int
	injected   int
	requestSeq int
	strip      []string // request headers not forwarded
}

// New starts a proxy on 127.0.0.1 (a free port) that forwards to target, an
// http URL such as "http://127.0.0.1:7070" (any path is ignored).
func New(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: parsing target %q: %w", target, err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q: want http://host:port", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listening: %w", err)
	}
	p := &Proxy{
		target: &url.URL{Scheme: u.Scheme, Host: u.Host},
		ln:     ln,
		transport: &http.Transport{
			Proxy:                 nil, // never an HTTP proxy from the environment
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			DisableCompression:    true, // pass bodies through untouched
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       30 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		byMethod: map[string]int{},
		byOp:     map[string]int{},
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() { _ = p.srv.Serve(ln) }() // returns ErrServerClosed on Close
	return p, nil
}

// URL returns the proxy's base URL, http://127.0.0.1:PORT; point the S3
// client's endpoint at it.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Close stops the proxy and closes all its connections, including any in
// flight. It is safe to call more than once.
func (p *Proxy) Close() {
	_ = p.srv.Close()
	p.transport.CloseIdleConnections()
}

// FailNext makes the next n requests (that pass the filter) fail with the
// given HTTP status and an S3 XML error body with the given code, e.g.
// FailNext(1, 503, "SlowDown") or FailNext(2, 500, "InternalError"). They
// do not reach the server: the proxy reads and discards the request body,
// then answers. It replaces any pending FailNext.
func (p *Proxy) FailNext(n int, status int, s3Code string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failN, p.failStatus, p.failCode = n, status, s3Code
}

// DropNextMidBody arms a connection reset for the next n requests (that
// pass the filter) that have a body: the proxy reads part of the body (half
// of Content-Length, or 4 KiB when the length is unknown), then resets the
// client connection (TCP RST) without forwarding anything, as a network
// failure mid-upload would. FailNext takes precedence when both are armed.
func (p *Proxy) DropNextMidBody(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropReqN = n
}

// DropNextResponseMidBody arms a connection reset for the next n responses
// (to requests that pass the filter) that have a body: the request is
// forwarded and handled by the server, then the proxy sends the response
// headers and part of the body (half of Content-Length, or 4 KiB when the
// length is unknown) and resets the client connection, as a network failure
// mid-download would.
func (p *Proxy) DropNextResponseMidBody(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropRespN = n
}

// Delay holds every response (to requests that pass the filter) for d before
// sending it to the client; for forwarded requests the server has already
// handled the request by then. Zero disables it.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// SetFilter restricts faults and Delay to requests for which f returns true;
// other requests pass through untouched and do not use up armed faults.
// For example, to fail only part uploads:
//
//	p.SetFilter(func(r *http.Request) bool { return faultproxy.Operation(r) == "UploadPart" })
//
// A nil f (the default) selects every request. f must not read the body;
// it may be called concurrently.
func (p *Proxy) SetFilter(f func(r *http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.filter = f
}

// StripRequestHeaders removes the named headers from every request it
// forwards (until Reset), as a server that ignores them would: for
// example "If-None-Match", which SigV4 does not sign, for a server
// without conditional writes.
func (p *Proxy) StripRequestHeaders(names ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.strip = append(p.strip, names...)
}

// Requests returns the number of requests received since New or Reset, by
// HTTP method ("GET", "PUT", ...), including those that got a fault.
func (p *Proxy) Requests() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneCounts(p.byMethod)
}

// Operations returns the number of requests received since New or Reset, by
// S3 operation as named by Operation ("PutObject", "UploadPart", ...).
func (p *Proxy) Operations() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneCounts(p.byOp)
}

// Injected returns the number of faults injected since New or Reset (failed
// requests and dropped requests or responses; delays do not count).
func (p *Proxy) Injected() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.injected
}

// Reset disarms every fault, removes the delay and the filter, and zeroes
// the counters.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failN, p.failStatus, p.failCode = 0, 0, ""
	p.dropReqN, p.dropRespN, p.delay, p.filter = 0, 0, 0, nil
	p.byMethod, p.byOp = map[string]int{}, map[string]int{}
	p.injected = 0
	p.strip = nil
}

func cloneCounts(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

type faultKind int

const (
	faultNone faultKind = iota
	faultFail
	faultDropRequest
)

// plan is what to do with one request, decided when it arrives.
type plan struct {
	kind     faultKind
	status   int
	code     string
	delay    time.Duration
	selected bool // the request passed the filter
	seq      int
}

// admit counts r and decides its fault.
func (p *Proxy) admit(r *http.Request) plan {
	op := Operation(r)
	p.mu.Lock()
	p.requestSeq++
	p.byMethod[r.Method]++
	p.byOp[op]++
	pl := plan{seq: p.requestSeq}
	filter := p.filter
	p.mu.Unlock()

	// Called without the lock: the filter may use the Proxy's methods.
	if filter != nil && !filter(r) {
		return pl
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pl.selected = true
	pl.delay = p.delay
	switch {
	case p.failN > 0:
		p.failN--
		p.injected++
		pl.kind, pl.status, pl.code = faultFail, p.failStatus, p.failCode
	case p.dropReqN > 0 && hasBody(r):
		p.dropReqN--
		p.injected++
		pl.kind = faultDropRequest
	}
	return pl
}

// takeResponseDrop reports whether to cut this response short.
func (p *Proxy) takeResponseDrop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dropRespN > 0 {
		p.dropRespN--
		p.injected++
		return true
	}
	return false
}

func hasBody(r *http.Request) bool { return r.ContentLength != 0 }

// partLen is how much of a body of length n passes before a drop.
func partLen(n int64) int64 {
	if n < 0 {
		return unknownLengthPart
	}
	return n / 2
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pl := p.admit(r)
	switch pl.kind {
	case faultFail:
		// Consume the body first, so that the client reliably reads the
		// error response rather than a reset from a connection closed
		// under an unread upload.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxDrain))
		if sleep(r.Context(), pl.delay) {
			writeS3Error(w, r, pl.status, pl.code, "fault injected by faultproxy", pl.seq)
		}
		return
	case faultDropRequest:
		// Read part of the body so the client is mid-upload, then reset.
		_, _ = io.CopyN(io.Discard, r.Body, max(1, partLen(r.ContentLength)))
		resetConn(w, false)
		return
	}

	resp, err := p.forward(r)
	if err != nil {
		if r.Context().Err() == nil {
			writeS3Error(w, r, http.StatusBadGateway, "BadGateway",
				"faultproxy: forwarding: "+err.Error(), pl.seq)
		}
		return
	}
	defer resp.Body.Close()
	if !sleep(r.Context(), pl.delay) {
		return
	}

	h := w.Header()
	for k, vv := range resp.Header {
		if !isHopByHop(k) {
			h[k] = vv
		}
	}
	drop := pl.selected && r.Method != http.MethodHead &&
		resp.ContentLength != 0 && p.takeResponseDrop()
	w.WriteHeader(resp.StatusCode)
	if drop {
		_, _ = io.CopyN(w, resp.Body, partLen(resp.ContentLength))
		resetConn(w, true)
		return
	}
	_, _ = io.Copy(w, resp.Body)
}

// forward sends r to the target, unchanged but for hop-by-hop headers.
func (p *Proxy) forward(r *http.Request) (*http.Response, error) {
	out := &http.Request{
		Method:        r.Method,
		URL:           p.targetURL(r),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        make(http.Header, len(r.Header)),
		Host:          r.Host, // signed by SigV4: keep the client's value
		ContentLength: r.ContentLength,
		Body:          r.Body,
	}
	for k, vv := range r.Header {
		if !isHopByHop(k) && !strings.EqualFold(k, "Content-Length") {
			out.Header[k] = vv
		}
	}
	for _, k := range connectionTokens(r.Header) {
		out.Header.Del(k)
	}
	p.mu.Lock()
	for _, k := range p.strip {
		out.Header.Del(k)
	}
	p.mu.Unlock()
	if _, ok := r.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // add none of our own
	}
	if r.ContentLength == 0 {
		out.Body = nil
		// The transport writes "Content-Length: 0" for POST, PUT and
		// PATCH anyway; for others (DELETE) only with an explicit identity
		// encoding and a non-nil body. The client may have signed the
		// header, so send it if it was sent.
		if _, ok := r.Header["Content-Length"]; ok {
			out.Body = http.NoBody
			out.TransferEncoding = []string{"identity"}
		}
	}
	out = out.WithContext(r.Context())
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.Method, out.URL, err)
	}
	return resp, nil
}

// targetURL is the target with the request's path and query exactly as the
// client wrote them (the canonical request of SigV4 uses the encoded path).
func (p *Proxy) targetURL(r *http.Request) *url.URL {
	u := &url.URL{Scheme: p.target.Scheme, Host: p.target.Host, RawQuery: r.URL.RawQuery}
	rawPath, _, _ := strings.Cut(r.RequestURI, "?")
	if strings.HasPrefix(rawPath, "/") && !strings.HasPrefix(rawPath, "//") {
		u.Opaque = rawPath
	} else {
		u.Path, u.RawPath = r.URL.Path, r.URL.RawPath
	}
	return u
}

var hopByHop = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

func isHopByHop(k string) bool { return hopByHop[http.CanonicalHeaderKey(k)] }

// connectionTokens returns the header names listed in Connection, which are
// hop-by-hop too.
func connectionTokens(h http.Header) []string {
	var names []string
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				names = append(names, f)
			}
		}
	}
	return names
}

// sleep waits d, or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// resetConn closes the client connection with a TCP RST (SO_LINGER 0)
// rather than an orderly FIN. With flush, what the handler wrote so far is
// sent first; without, nothing is (flushing would send an implicit
// "200 OK" header when nothing was written).
func resetConn(w http.ResponseWriter, flush bool) {
	rc := http.NewResponseController(w)
	if flush {
		_ = rc.Flush()
	}
	conn, _, err := rc.Hijack()
	if err != nil {
		// Cannot happen with net/http's HTTP/1 server; make the handler
		// fail loudly in the server's log rather than answer normally.
		panic(fmt.Errorf("faultproxy: hijacking connection: %w", err))
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// s3Error is the body of an S3 error response.
type s3Error struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource"`
	RequestID string   `xml:"RequestId"`
}

func writeS3Error(w http.ResponseWriter, r *http.Request, status int, code, msg string, seq int) {
	reqID := "faultproxy-" + strconv.Itoa(seq)
	body, err := xml.Marshal(s3Error{Code: code, Message: msg, Resource: r.URL.Path, RequestID: reqID})
	if err != nil {
		body = nil // cannot happen: only strings
	}
	body = append([]byte(xml.Header), body...)
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Amz-Request-Id", reqID)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
