package s3

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Clock offsets from the server's Date header: beyond ClockWarn the check
// warns (timestamps in the replica and restores by time are off by as
// much); beyond ClockFail it fails (S3 refuses requests signed more than
// 15 minutes off, and retention decides by time).
const (
	ClockWarn = 30 * time.Second
	ClockFail = 5 * time.Minute
)

// CheckStep is one line of a check: what was checked, whether it holds,
// and what to do when it does not.
type CheckStep struct {
	Name   string // "credentials", "bucket", "put", …
	OK     bool
	Warn   bool   // OK, but something weakens walsync's guarantees
	Detail string // what was found
	Fix    string // what to do; empty when OK
}

// CheckResult is what Check found.
type CheckResult struct {
	Steps       []CheckStep
	ClockOffset time.Duration // server's Date minus ours (at the request's midpoint)
	Latency     time.Duration // median round trip of the small requests
}

// Failed reports whether any step failed.
func (r *CheckResult) Failed() bool {
	return slices.ContainsFunc(r.Steps, func(s CheckStep) bool { return !s.OK })
}

// CheckOptions select what Check does.
type CheckOptions struct {
	// ReadOnly: only the credentials, the bucket and its region, and the
	// clock; nothing is written. watch runs this at start.
	ReadOnly bool
}

// checkProbePrefix starts the probe object's name: a key below the
// replica's prefix that no replica layout lists (no level directory, not
// an LTX file name), so that a probe left behind (a refused delete, a
// kill) is never taken for a database.
const checkProbePrefix = ".walsync-check-"

// Check tells whether this replica can work: where the credentials come
// from, that the bucket exists in the configured region, that objects can
// be written, read, listed and deleted under the prefix (one small probe
// object, removed at the end), that the server honours If-None-Match and
// If-Match, the clock offset from the server's Date and the latency of a
// small round trip. Each failed step says how to fix it.
func (c *Client) Check(ctx context.Context, opts CheckOptions) *CheckResult {
	res := &CheckResult{}
	add := func(s CheckStep) { res.Steps = append(res.Steps, s) }
	var rtts []time.Duration
	var offsets []time.Duration
	timed := func(r *request) (*http.Response, error) {
		start := time.Now()
		resp, err := c.s.do(ctx, r)
		rtt := time.Since(start)
		hdr := http.Header(nil)
		if resp != nil {
			hdr = resp.Header
		} else if se := (*Error)(nil); errors.As(err, &se) {
			hdr = se.header
		}
		if hdr != nil {
			rtts = append(rtts, rtt)
			if d, derr := http.ParseTime(hdr.Get("Date")); derr == nil {
				// Date is truncated to the second: its middle is half a
				// second later.
				offsets = append(offsets, d.Add(500*time.Millisecond).Sub(start.Add(rtt/2)))
			}
		}
		return resp, err
	}
	defer func() {
		if len(rtts) > 0 {
			slices.Sort(rtts)
			res.Latency = rtts[len(rtts)/2]
		}
	}()

	// 1. Credentials.
	st, err := c.ObtainCredentials(ctx)
	if err != nil {
		add(CheckStep{Name: "credentials", Detail: err.Error(), Fix: credentialsFix(err)})
		return res
	}
	detail := "from " + st.Source
	if !st.Expires.IsZero() {
		detail += fmt.Sprintf(", expire %s (renewed ahead)", st.Expires.UTC().Format(time.RFC3339))
	}
	add(CheckStep{Name: "credentials", OK: true, Detail: detail})

	// 2. The bucket and its region (HeadBucket: s3:ListBucket).
	resp, err := timed(&request{op: "head bucket", method: http.MethodHead})
	if err == nil {
		drain(resp)
		d := fmt.Sprintf("s3://%s exists at %s, region %s", c.s.cfg.Bucket, c.s.endpointString(), c.s.cfg.Region)
		if reg := resp.Header.Get("X-Amz-Bucket-Region"); reg != "" && reg != c.s.cfg.Region {
			add(CheckStep{Name: "bucket", Detail: d + ", but the bucket says region " + reg, Fix: "pass --region " + reg + " (or set AWS_REGION, or region: in the config)"})
			return res
		}
		add(CheckStep{Name: "bucket", OK: true, Detail: d})
	} else {
		var se *Error
		if errors.As(err, &se) && se.Code == "" {
			// A HEAD answer has no error document; a listing's says why.
			q := url.Values{"list-type": {"2"}, "max-keys": {"1"}}
			if resp, lerr := timed(&request{op: "list", method: http.MethodGet, query: q}); lerr != nil {
				err = lerr
			} else {
				drain(resp)
			}
		}
		add(CheckStep{Name: "bucket", Detail: err.Error(), Fix: c.bucketFix(err)})
		clockStep(res, offsets, add)
		return res
	}
	clockStep(res, offsets, add)
	if opts.ReadOnly {
		return res
	}

	// 3. Write, read, list and delete a probe object under the prefix.
	var rnd [8]byte
	if _, err := crand.Read(rnd[:]); err != nil {
		add(CheckStep{Name: "put", Detail: err.Error()})
		return res
	}
	key := checkProbePrefix + hex.EncodeToString(rnd[:])
	if c.prefix != "" {
		key = c.prefix + "/" + key
	}
	obj := c.objectURL(key)
	body := []byte("walsync check probe: safe to delete\n")
	created := false
	defer func() {
		if !created {
			return
		}
		// The delete step failed or did not run: one more try, so that
		// nothing is left behind when it can be helped.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := c.deleteKey(dctx, key); err != nil {
			add(CheckStep{Name: "cleanup", Detail: "the probe object " + obj + " is left behind: " + err.Error(),
				Fix: "delete it (aws s3 rm " + obj + "); walsync ignores it meanwhile"})
		}
	}()

	put := func(h http.Header, b []byte) (string, error) {
		sum := sha256.Sum256(b)
		resp, err := timed(&request{op: "put probe", method: http.MethodPut, key: key, header: h,
			body: bytes.NewReader(b), length: int64(len(b)), sha256: hex.EncodeToString(sum[:])})
		if err != nil {
			return "", err
		}
		drain(resp)
		return resp.Header.Get("ETag"), nil
	}
	etag, err := put(http.Header{"If-None-Match": {"*"}}, body)
	if err != nil {
		add(CheckStep{Name: "put", Detail: err.Error(), Fix: c.actionFix(err, "s3:PutObject")})
		return res
	}
	created = true
	add(CheckStep{Name: "put", OK: true, Detail: "wrote " + obj})

	resp, err = timed(&request{op: "get probe", method: http.MethodGet, key: key})
	if err != nil {
		add(CheckStep{Name: "get", Detail: err.Error(), Fix: c.actionFix(err, "s3:GetObject")})
	} else {
		got, rerr := readAllLimited(resp, 1<<10)
		switch {
		case rerr != nil:
			add(CheckStep{Name: "get", Detail: rerr.Error(), Fix: "check the network path to " + c.s.endpointString()})
		case !bytes.Equal(got, body):
			add(CheckStep{Name: "get", Detail: fmt.Sprintf("read back %d bytes that differ from the %d written", len(got), len(body)),
				Fix: "something between walsync and the server changes objects (a proxy, a gateway): fix it"})
		default:
			add(CheckStep{Name: "get", OK: true, Detail: "read it back intact"})
		}
	}

	q := url.Values{"list-type": {"2"}, "prefix": {key}, "max-keys": {"10"}}
	resp, err = timed(&request{op: "list probe", method: http.MethodGet, query: q})
	if err != nil {
		add(CheckStep{Name: "list", Detail: err.Error(), Fix: c.actionFix(err, "s3:ListBucket")})
	} else {
		var out struct {
			Contents []struct {
				Key string `xml:"Key"`
			} `xml:"Contents"`
		}
		if derr := decodeXML(resp, &out); derr != nil || !slices.ContainsFunc(out.Contents, func(o struct {
			Key string `xml:"Key"`
		}) bool {
			return o.Key == key
		}) {
			add(CheckStep{Name: "list", Detail: "the listing does not show the object just written",
				Fix: "the server's listings are not read-after-write consistent; walsync needs that (Tigris: it sends X-Tigris-Consistent)"})
		} else {
			add(CheckStep{Name: "list", OK: true, Detail: "listed it under " + c.String()})
		}
	}

	// 4. Conditional writes: If-None-Match (walsync never replaces an
	// object) and If-Match (the single-writer lease).
	_, err = put(http.Header{"If-None-Match": {"*"}}, body)
	switch {
	case preconditionFailed(err):
		add(CheckStep{Name: "if-none-match", OK: true, Detail: "honoured: an existing object is not replaced"})
	case err == nil || isNotImplemented(err):
		add(CheckStep{Name: "if-none-match", Detail: "ignored: a PUT with If-None-Match: * replaced an existing object",
			Fix: "a second process writing this replica would go undetected and could replace its files: use a server that supports conditional writes (AWS S3, MinIO, R2, Tigris, versitygw) and nothing between that drops the header, or run exactly one walsync per replica"})
	default:
		add(CheckStep{Name: "if-none-match", Detail: err.Error(), Fix: c.actionFix(err, "s3:PutObject")})
	}
	_, err = put(http.Header{"If-Match": {`"00000000000000000000000000000000"`}}, body)
	switch {
	case preconditionFailed(err):
		if etag != "" {
			if _, err = put(http.Header{"If-Match": {etag}}, body); err != nil {
				add(CheckStep{Name: "if-match", Detail: "a PUT with the object's own ETag in If-Match was refused: " + err.Error(),
					Fix: "the server's If-Match is broken; walsync's single-writer lease needs it: run exactly one walsync per replica"})
				break
			}
		}
		add(CheckStep{Name: "if-match", OK: true, Detail: "honoured: a PUT with a stale ETag is refused"})
	case err == nil || isNotImplemented(err):
		add(CheckStep{Name: "if-match", Detail: "ignored: a PUT with a stale ETag in If-Match replaced the object",
			Fix: "walsync's single-writer lease needs If-Match on PUT: use a server that supports it (AWS S3, versitygw, recent MinIO) and nothing between that drops the header, or run exactly one walsync per replica"})
	default:
		add(CheckStep{Name: "if-match", Detail: err.Error(), Fix: c.actionFix(err, "s3:PutObject")})
	}

	// 5. Delete, the way retention does (DeleteObjects: s3:DeleteObject).
	if err := c.deleteKey(ctx, key); err != nil {
		add(CheckStep{Name: "delete", Detail: err.Error(), Fix: c.actionFix(err, "s3:DeleteObject") + "; without it retention cannot remove old files"})
	} else {
		created = false
		add(CheckStep{Name: "delete", OK: true, Detail: "deleted it"})
	}
	return res
}

// clockStep adds the clock line from the offsets measured so far.
func clockStep(res *CheckResult, offsets []time.Duration, add func(CheckStep)) {
	if len(offsets) == 0 {
		return
	}
	slices.Sort(offsets)
	off := offsets[len(offsets)/2]
	res.ClockOffset = off
	abs := max(off, -off)
	d := fmt.Sprintf("this machine's clock is %s %s the server's (from its Date header, ±1s)", abs.Round(time.Second), map[bool]string{true: "behind", false: "ahead of"}[off > 0])
	if abs < time.Second {
		d = "this machine's clock agrees with the server's (from its Date header, ±1s)"
	}
	switch {
	case abs > ClockFail:
		add(CheckStep{Name: "clock", Detail: d, Fix: "set the clock right (NTP: timedatectl set-ntp true); S3 refuses requests signed 15 minutes off, and snapshot times and retention follow this clock"})
	case abs > ClockWarn:
		add(CheckStep{Name: "clock", OK: true, Warn: true, Detail: d, Fix: "set the clock right (NTP): restore --timestamp and retention follow this clock"})
	default:
		add(CheckStep{Name: "clock", OK: true, Detail: d})
	}
}

// deleteKey deletes one object with DeleteObjects, as retention does.
func (c *Client) deleteKey(ctx context.Context, key string) error {
	return c.deleteObjects(ctx, "delete probe", []string{key})
}

func isNotImplemented(err error) bool {
	var se *Error
	return errors.As(err, &se) && se.Status == http.StatusNotImplemented
}

func readAllLimited(resp *http.Response, n int64) ([]byte, error) {
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err := b.ReadFrom(&limitedReader{r: resp.Body, n: n})
	return b.Bytes(), err
}

type limitedReader struct {
	r interface{ Read([]byte) (int, error) }
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("response larger than expected")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// regionInMessage finds the region a server names in an
// AuthorizationHeaderMalformed message ("… expecting 'eu-west-1'").
var regionInMessage = regexp.MustCompile(`expecting ['"]([a-z0-9-]+)['"]`)

// bucketFix says what to do when HeadBucket failed.
func (c *Client) bucketFix(err error) string {
	var se *Error
	if !errors.As(err, &se) {
		var ce *CredentialsError
		if errors.As(err, &ce) {
			return credentialsFix(err)
		}
		if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
			return "the endpoint's TLS certificate is not trusted here: give its CA with AWS_CA_BUNDLE=/path/ca.pem (or SSL_CERT_FILE), or its http:// form if it has one"
		}
		return "the endpoint did not answer: check --endpoint (or AWS_ENDPOINT_URL_S3), the network and any proxy (HTTPS_PROXY)"
	}
	reg := se.region
	if reg == "" {
		reg = se.header.Get("X-Amz-Bucket-Region")
	}
	if reg == "" {
		if m := regionInMessage.FindStringSubmatch(se.Message); m != nil {
			reg = m[1]
		}
	}
	switch {
	case reg != "" && reg != c.s.cfg.Region:
		return "the bucket is in region " + reg + ": pass --region " + reg + " (or set AWS_REGION, or region: in the config)"
	case se.Status == http.StatusMovedPermanently || se.Code == "PermanentRedirect" || se.Code == "AuthorizationHeaderMalformed":
		return "the bucket is in another region: pass --region REGION (aws s3api get-bucket-location --bucket " + c.s.cfg.Bucket + " tells which)"
	case se.Code == "NoSuchBucket" || se.Status == http.StatusNotFound && se.Code == "":
		return "create the bucket, or correct its name in the URL or the --endpoint"
	case se.Status == http.StatusForbidden:
		return "allow s3:ListBucket on arn:aws:s3:::" + c.s.cfg.Bucket + " for these credentials (HeadBucket and listings need it), or correct the keys"
	}
	if h := se.hint(); h != "" {
		return h
	}
	return "see the error; --endpoint and --force-path-style select how the server is reached"
}

// actionFix says what to do when a request that needs IAM action failed.
func (c *Client) actionFix(err error, action string) string {
	var se *Error
	if errors.As(err, &se) && (se.Status == http.StatusForbidden || se.Code == "AccessDenied") {
		res := "arn:aws:s3:::" + c.s.cfg.Bucket + "/*"
		if action == "s3:ListBucket" {
			res = "arn:aws:s3:::" + c.s.cfg.Bucket
		}
		return "allow " + action + " on " + res + " for these credentials"
	}
	if errors.As(err, &se) {
		if h := se.hint(); h != "" {
			return h
		}
	}
	return "see the error"
}

// credentialsFix says what to do when no credentials could be had.
func credentialsFix(err error) string {
	var ce *CredentialsError
	if errors.As(err, &ce) && !ce.Permanent {
		return "the credential source did not answer; it is asked again (see the error)"
	}
	return "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE to a profile in ~/.aws/config (keys, role_arn, sso_session, credential_process), or run where a role is provided (EC2 instance profile, ECS task role, EKS IRSA)"
}

// formatDuration shows small latencies in ms.
func formatDuration(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	}
	return d.Round(time.Millisecond).String()
}

// Lines returns the check's result as plain lines, one per step, "ok",
// "WARN" or "FAIL" first, then the latency.
func (r *CheckResult) Lines() []string {
	var lines []string
	for _, s := range r.Steps {
		mark := "ok  "
		switch {
		case !s.OK:
			mark = "FAIL"
		case s.Warn:
			mark = "WARN"
		}
		lines = append(lines, fmt.Sprintf("%s %-13s %s", mark, s.Name, s.Detail))
		if s.Fix != "" {
			lines = append(lines, strings.Repeat(" ", 19)+"fix: "+s.Fix)
		}
	}
	if r.Latency > 0 {
		lines = append(lines, fmt.Sprintf("ok   %-13s %s (median round trip of a small request)", "latency", formatDuration(r.Latency)))
	}
	return lines
}
