package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/walsync/walsync/storage"
)

// idleTimeout cancels a request whose body has not moved for this long.
const idleTimeout = 60 * time.Second

// Error is a failed S3 request. It names the bucket, object and endpoint,
// never a credential.
type Error struct {
	Op       string // "put", "get", "list", "delete", …
	Bucket   string
	Key      string
	Endpoint string
	Status   int
	Code     string // S3 error code, e.g. "NoSuchBucket"
	Message  string

	header http.Header // the response's, when there was one: Date, X-Amz-Bucket-Region
	region string      // the error document's Region: where the bucket is
}

func (e *Error) Error() string {
	obj := "s3://" + e.Bucket
	if e.Key != "" {
		obj += "/" + e.Key
	}
	msg := fmt.Sprintf("s3: %s %s at %s: HTTP %d", e.Op, obj, e.Endpoint, e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if h := e.hint(); h != "" {
		msg += " (" + h + ")"
	}
	return msg
}

func (e *Error) hint() string {
	switch {
	case e.Code == "NoSuchBucket":
		return fmt.Sprintf("bucket %q does not exist at %s: create it, or correct the bucket name or endpoint", e.Bucket, e.Endpoint)
	case e.Code == "RequestTimeTooSkewed":
		return "this machine's clock is off: fix it (NTP) and retry"
	case e.Code == "ExpiredToken" || e.Code == "InvalidToken" || e.Code == "TokenRefreshRequired":
		return fmt.Sprintf("access to bucket %q was refused: the session token is expired or invalid: renew the credentials (AWS_SESSION_TOKEN with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the profile)", e.Bucket)
	case e.Status == http.StatusForbidden || e.Code == "InvalidAccessKeyId" || e.Code == "SignatureDoesNotMatch" ||
		e.Code == "XAdminUserNotFound": // versitygw's answer (HTTP 404) to an unknown access key ID
		return fmt.Sprintf("access to bucket %q was refused: check the access key ID and secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the profile) and the bucket's permissions", e.Bucket)
	case e.Status == http.StatusMovedPermanently || e.Code == "PermanentRedirect" || e.Code == "AuthorizationHeaderMalformed":
		return "the bucket is in another region: set AWS_REGION or the replica's region"
	}
	return ""
}

// Unwrap maps missing objects to storage.ErrNotFound: NoSuchKey, or a 404
// without an error document (HEAD) for an object. Any other 404 (a missing
// bucket, versitygw's unknown access key) is not a missing file.
func (e *Error) Unwrap() error {
	if e.Code == "NoSuchKey" || (e.Status == http.StatusNotFound && e.Code == "" && e.Key != "") {
		return storage.ErrNotFound
	}
	return nil
}

// permanent reports whether retrying err cannot help: the one rule for
// which storage failures are retried. An S3 answer that is not retryable
// (refused credentials, a missing bucket), a credential source that says
// no (CredentialsError.Permanent), a TLS verification failure and an
// endpoint of the wrong scheme (schemeError) are permanent; throttling,
// 5xx, timeouts and broken connections are not.
func permanent(err error) bool {
	var se *Error
	if errors.As(err, &se) {
		return !se.retryable()
	}
	var ce *CredentialsError
	if errors.As(err, &ce) {
		return ce.Permanent
	}
	var sch *schemeError
	return isCertificateError(err) || errors.As(err, &sch)
}

// retryable reports whether the failure may go away by itself.
func (e *Error) retryable() bool {
	switch e.Code {
	case "SlowDown", "InternalError", "RequestTimeout", "ServiceUnavailable", "Throttling", "ThrottlingException", "RequestTimeTooSkewed",
		"ConditionalRequestConflict": // AWS: a concurrent conditional write to the key; retry it

		return e.Code != "RequestTimeTooSkewed"
	}
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout
}

// request is one S3 call.
type request struct {
	op     string
	method string
	key    string // "" for bucket-level calls
	query  url.Values
	header http.Header
	body   io.ReadSeeker // nil for none; rewound on every attempt
	length int64
	sha256 string // hex payload hash; "" means empty payload
}

// store is what every Client derived from one New shares: the endpoint,
// credentials and one HTTP transport with its connection pool.
type store struct {
	cfg    *resolved
	http   *http.Client
	signer *signer
	creds  *credentialCache
	tigris bool
	// noConditional: the server answered 501 to If-None-Match; creates
	// are sent without it.
	noConditional atomic.Bool
}

func newStore(cfg *resolved) *store {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       cfg.tls,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.ResponseTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          DefaultMaxConnsPerHost,
		MaxIdleConnsPerHost:   DefaultMaxConnsPerHost,
		MaxConnsPerHost:       DefaultMaxConnsPerHost,
		IdleConnTimeout:       60 * time.Second,
		DisableCompression:    true,
		// HTTP/1.1 only: S3 does not need HTTP/2 and its buffers cost memory.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	host := cfg.endpoint.Hostname()
	return &store{
		cfg:    cfg,
		http:   &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		signer: &signer{},
		creds:  newCredentialCache(cfg.creds, cfg.Logger),
		tigris: strings.Contains(host, "tigris") || strings.HasSuffix(host, ".storage.dev"),
	}
}

func (s *store) url(key string, q url.Values) *url.URL {
	u := &url.URL{Scheme: s.cfg.endpoint.Scheme, Host: s.cfg.endpoint.Host}
	p := "/" + key
	if s.cfg.pathStyle {
		p = "/" + s.cfg.Bucket + p
	} else {
		u.Host = s.cfg.Bucket + "." + u.Host
	}
	u.Path = p
	u.RawPath = escapePath(p)
	if len(q) > 0 {
		u.RawQuery = canonicalQuery(q)
	}
	return u
}

func (s *store) endpointString() string { return s.cfg.endpoint.String() }

func (s *store) newError(r *request, status int, code, msg string) *Error {
	return &Error{Op: r.op, Bucket: s.cfg.Bucket, Key: r.key, Endpoint: s.endpointString(), Status: status, Code: code, Message: msg}
}

// do sends r, retrying with backoff on throttling, 5xx, timeouts and
// connection failures, and returns a response with a 2xx status. The
// response body is guarded: if it stalls for idleTimeout the request is
// cancelled. The caller closes the body.
func (s *store) do(ctx context.Context, r *request) (*http.Response, error) {
	var lastErr error
	renewed := false
	for attempt := 0; ; attempt++ {
		if attempt > 0 && lastErr != nil {
			if err := s.backoff(ctx, attempt, r, lastErr); err != nil {
				return nil, err
			}
		}
		resp, used, err := s.attempt(ctx, r)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !renewed && refusedCredentials(err) && s.creds.expire(used) {
			// Expired or revoked session credentials: once more, at once,
			// with renewed ones.
			renewed, lastErr = true, nil
			attempt--
			continue
		}
		if permanent(err) {
			return nil, err
		}
		lastErr = err
		maxRetries := s.cfg.MaxRetries
		if n, ok := storage.Retries(ctx); ok {
			maxRetries = min(maxRetries, n)
		}
		if attempt >= maxRetries {
			return nil, fmt.Errorf("giving up after %d attempts: %w", attempt+1, lastErr)
		}
	}
}

// backoff sleeps before retry number attempt: exponential with jitter.
func (s *store) backoff(ctx context.Context, attempt int, r *request, lastErr error) error {
	d := s.cfg.RetryBaseDelay << min(attempt-1, 16)
	if d > DefaultRetryMaxDelay || d <= 0 {
		d = DefaultRetryMaxDelay
	}
	d = d/2 + rand.N(d/2+1)
	level := slog.LevelDebug
	if attempt >= 2 {
		level = slog.LevelWarn
	}
	s.cfg.Logger.Log(ctx, level, "retrying S3 request", "op", r.op, "bucket", s.cfg.Bucket, "key", r.key, "attempt", attempt, "delay", d, "error", lastErr)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// attempt sends r once and returns the credentials it was signed with.
func (s *store) attempt(ctx context.Context, r *request) (*http.Response, Credentials, error) {
	creds, err := s.creds.get(ctx)
	if err != nil {
		return nil, creds, err
	}
	resp, err := s.send(ctx, r, creds)
	return resp, creds, err
}

func (s *store) send(ctx context.Context, r *request, creds Credentials) (*http.Response, error) {
	actx, cancel := context.WithCancel(ctx)
	guard := newIdleGuard(cancel)
	req, err := http.NewRequestWithContext(actx, r.method, s.url(r.key, r.query).String(), nil)
	if err != nil {
		guard.stop()
		return nil, err
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if s.tigris {
		req.Header.Set("X-Tigris-Consistent", "true")
	}
	sum := r.sha256
	if sum == "" {
		sum = emptySHA256
	}
	if r.body != nil {
		if _, err := r.body.Seek(0, io.SeekStart); err != nil {
			guard.stop()
			return nil, err
		}
		req.Body = io.NopCloser(guard.reader(r.body))
		req.ContentLength = r.length
		if r.length == 0 {
			req.Body = http.NoBody
		}
	}
	s.signer.sign(req, creds, s.cfg.Region, sum, time.Now())

	resp, err := s.http.Do(req)
	if err != nil {
		guard.stop()
		err = fmt.Errorf("s3: %s s3://%s/%s at %s: %w", r.op, s.cfg.Bucket, r.key, s.endpointString(), err)
		if s.cfg.endpoint.Scheme == "https" && speaksPlainHTTP(err) {
			return nil, &schemeError{err: err, host: s.cfg.endpoint.Host}
		}
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		resp.Body = guard.body(resp.Body)
		return resp, nil
	}
	defer guard.stop()
	defer resp.Body.Close()
	var xe struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
		Region  string `xml:"Region"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = xml.Unmarshal(b, &xe)
	if xe.Code == "" && resp.StatusCode == http.StatusNotFound && r.key == "" {
		xe.Code = "NoSuchBucket"
	}
	// A server may quote the request in its message, session token
	// included: what reaches an error, a log or /status holds neither it
	// nor the secret.
	e := s.newError(r, resp.StatusCode, xe.Code, shortText(scrubSecrets(xe.Message, creds)))
	e.header, e.region = resp.Header, xe.Region
	return nil, e
}

// idleGuard cancels a request when its body stops moving.
// stop ends the request's context; call it when the request is finished.
type idleGuard struct {
	timer  *time.Timer
	cancel context.CancelFunc
}

func newIdleGuard(cancel context.CancelFunc) *idleGuard {
	return &idleGuard{timer: time.AfterFunc(idleTimeout, cancel), cancel: cancel}
}

func (g *idleGuard) touch() { g.timer.Reset(idleTimeout) }

func (g *idleGuard) stop() {
	g.timer.Stop()
	g.cancel()
}

func (g *idleGuard) reader(r io.Reader) io.Reader { return &guardedReader{r: r, g: g} }

func (g *idleGuard) body(rc io.ReadCloser) io.ReadCloser {
	return &guardedBody{guardedReader: guardedReader{r: rc, g: g}, c: rc}
}

type guardedReader struct {
	r io.Reader
	g *idleGuard
}

func (gr *guardedReader) Read(p []byte) (int, error) {
	n, err := gr.r.Read(p)
	gr.g.touch()
	return n, err
}

type guardedBody struct {
	guardedReader
	c io.Closer
}

func (gb *guardedBody) Close() error {
	gb.g.stop()
	return gb.c.Close()
}

// schemeError is an HTTPS request answered in plain HTTP: the endpoint
// was written without http:// (a bare host is taken as https).
type schemeError struct {
	err  error
	host string
}

func (e *schemeError) Error() string {
	return fmt.Sprintf("%v (the server at %s speaks plain HTTP, not HTTPS: write the endpoint as http://%s)", e.err, e.host, e.host)
}

func (e *schemeError) Unwrap() error { return e.err }

// speaksPlainHTTP reports a TLS handshake answered by a plain-HTTP server.
// net/http says so only in its message.
func speaksPlainHTTP(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// isCertificateError reports a TLS verification failure: retrying cannot
// fix a wrong CA bundle or host name.
func isCertificateError(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}
