// Package s3 is the replica backend for AWS S3 and S3-compatible services
// (MinIO, Tigris, Cloudflare R2, Backblaze B2, versitygw), in Litestream
// v0.5's layout: <prefix>/<level %04x>/<min %016x>-<max %016x>.ltx.
//
// It is a small SigV4 client over net/http rather than the AWS SDK: one
// transport and connection pool serve every database in the process, and it
// costs less memory (see docs/design/storage.md for the measurements).
package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/storage"
)

// Object metadata keys (sent as x-amz-meta-<key>).
const (
	MetaSHA256    = "sha256"
	MetaTimestamp = "litestream-timestamp" // RFC 3339 (nano) of the LTX header's timestamp, as Litestream writes it
)

// Client is a replica at a prefix of a bucket.
type Client struct {
	s      *store
	prefix string
}

var _ storage.Client = (*Client)(nil)

// New returns a client for cfg's bucket and prefix. It does no I/O; the
// first request reports unreachable endpoints, missing buckets or refused
// credentials.
func New(cfg Config) (*Client, error) {
	r, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{s: newStore(r), prefix: r.Prefix}, nil
}

// String implements storage.Client.
func (c *Client) String() string {
	if c.prefix == "" {
		return "s3://" + c.s.cfg.Bucket
	}
	return "s3://" + c.s.cfg.Bucket + "/" + c.prefix
}

// Bucket returns the bucket name.
func (c *Client) Bucket() string { return c.s.cfg.Bucket }

// Prefix returns the key prefix of this replica.
func (c *Client) Prefix() string { return c.prefix }

// Endpoint returns the endpoint URL requests go to.
func (c *Client) Endpoint() string { return c.s.endpointString() }

// CredentialSource says where the credentials come from (never their values).
func (c *Client) CredentialSource() string { return c.s.creds.src.name() }

// CredentialStatus says where the credentials come from, when they expire
// and whether renewing them fails (never their values).
func (c *Client) CredentialStatus() CredentialStatus { return c.s.creds.status() }

// ObtainCredentials gets the credentials requests are signed with (from
// the cache, or their source when due) and reports their status: the
// check command's first step. Its error names the source and what to do.
func (c *Client) ObtainCredentials(ctx context.Context) (CredentialStatus, error) {
	_, err := c.s.creds.get(ctx)
	return c.s.creds.status(), err
}

// Sub implements storage.Client. The new client shares c's connections.
func (c *Client) Sub(name string) storage.Client {
	return &Client{s: c.s, prefix: strings.Trim(path.Join(c.prefix, name), "/")}
}

func (c *Client) levelPrefix(level int) string {
	p := fmt.Sprintf("%04x/", level)
	if c.prefix != "" {
		p = c.prefix + "/" + p
	}
	return p
}

// Key returns the object key of an LTX file.
func (c *Client) Key(level int, minTXID, maxTXID ltx.TXID) string {
	return c.levelPrefix(level) + ltx.FormatFilename(minTXID, maxTXID)
}

func (c *Client) objectURL(key string) string { return "s3://" + c.s.cfg.Bucket + "/" + key }

func checkArgs(level int, minTXID, maxTXID ltx.TXID) error {
	if err := storage.ValidateLevel(level); err != nil {
		return err
	}
	return storage.ValidateRange(minTXID, maxTXID)
}

// WriteLTXFile implements storage.Client. The file is spooled to a temp
// file first: its SHA-256 must be known before the request headers are sent,
// and a retry must be able to send it again.
func (c *Client) WriteLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, r io.Reader) (*storage.FileInfo, error) {
	if err := checkArgs(level, minTXID, maxTXID); err != nil {
		return nil, err
	}
	sp, err := c.spool(r, minTXID, maxTXID)
	if err != nil {
		return nil, err
	}
	if sp.File != r {
		defer sp.File.Close()
	}
	key := c.Key(level, minTXID, maxTXID)
	h := http.Header{}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Amz-Meta-"+MetaSHA256, sp.SHA256)
	h.Set("X-Amz-Meta-"+MetaTimestamp, sp.Timestamp().Format(time.RFC3339Nano))

	if sp.Size >= c.s.cfg.MultipartThreshold {
		err = c.putMultipart(ctx, key, h, sp)
	} else {
		err = c.putObject(ctx, key, h, sp)
	}
	if preconditionFailed(err) || noSuchUpload(err) {
		// The object exists: another writer's, or our own earlier attempt
		// whose answer was lost. storage.ResolveExisting decides.
		other, herr := c.head(ctx, key)
		if herr != nil {
			return nil, fmt.Errorf("s3: %s already exists and its metadata cannot be read (will look again): %w", c.objectURL(key), herr)
		}
		if noSuchUpload(err) && other.SHA256 != sp.SHA256 {
			return nil, err
		}
		return storage.ResolveExisting(ctx, c, c.s.cfg.Logger, c.objectURL(key), level, minTXID, maxTXID, sp.SHA256, other)
	}
	if err != nil {
		return nil, err
	}
	return &storage.FileInfo{Level: level, MinTXID: minTXID, MaxTXID: maxTXID, Size: sp.Size, CreatedAt: sp.Timestamp(), SHA256: sp.SHA256}, nil
}

// spool returns the file to upload from: r itself when it is a local file
// at its start (capture's spool file), else a temp copy.
func (c *Client) spool(r io.Reader, minTXID, maxTXID ltx.TXID) (*storage.Spooled, error) {
	if f, ok := r.(*os.File); ok {
		if off, err := f.Seek(0, io.SeekCurrent); err == nil && off == 0 {
			return storage.InspectLTX(f, minTXID, maxTXID)
		}
	}
	f, err := storage.CreateUnlinkedTemp(c.s.cfg.TempDir)
	if err != nil {
		return nil, err
	}
	sp, err := storage.SpoolLTX(f, r, minTXID, maxTXID)
	if err != nil {
		f.Close()
		return nil, err
	}
	return sp, nil
}

func (c *Client) putObject(ctx context.Context, key string, h http.Header, sp *storage.Spooled) error {
	resp, err := c.s.doCreate(ctx, &request{
		op: "put", method: http.MethodPut, key: key, header: h,
		body: io.NewSectionReader(sp.File, 0, sp.Size), length: sp.Size, sha256: sp.SHA256,
	})
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// doCreate sends r, a request that creates an object, with If-None-Match: *
// so that it never replaces one (HTTP 412 PreconditionFailed if the object
// exists). A server that answers 501 NotImplemented to the header gets
// unconditional creates from then on, with a warning.
func (s *store) doCreate(ctx context.Context, r *request) (*http.Response, error) {
	if !s.noConditional.Load() {
		cr := *r
		cr.header = r.header.Clone()
		if cr.header == nil {
			cr.header = http.Header{}
		}
		cr.header.Set("If-None-Match", "*")
		resp, err := s.do(ctx, &cr)
		var se *Error
		if !errors.As(err, &se) || se.Status != http.StatusNotImplemented {
			return resp, err
		}
		if !s.noConditional.Swap(true) {
			s.cfg.Logger.Warn("the S3 server does not support conditional writes (If-None-Match): a second process writing the same replica cannot be detected; run one walsync per replica",
				"bucket", s.cfg.Bucket, "endpoint", s.endpointString(), "error", err)
		}
	}
	return s.do(ctx, r)
}

// preconditionFailed reports a create refused because the object exists.
func preconditionFailed(err error) bool {
	var se *Error
	return errors.As(err, &se) && (se.Status == http.StatusPreconditionFailed || se.Code == "PreconditionFailed")
}

// noSuchUpload reports a multipart completion whose upload is gone: after
// a retry, possibly because the first attempt completed it.
func noSuchUpload(err error) bool {
	var se *Error
	return errors.As(err, &se) && se.Code == "NoSuchUpload"
}

// head returns what the object's metadata says of it.
func (c *Client) head(ctx context.Context, key string) (storage.Existing, error) {
	resp, err := c.s.do(ctx, &request{op: "head", method: http.MethodHead, key: key})
	if err != nil {
		return storage.Existing{}, err
	}
	drain(resp)
	ex := storage.Existing{Size: resp.ContentLength, SHA256: strings.ToLower(resp.Header.Get("X-Amz-Meta-" + MetaSHA256))}
	if ts, err := time.Parse(time.RFC3339Nano, resp.Header.Get("X-Amz-Meta-"+MetaTimestamp)); err == nil {
		ex.CreatedAt = ts.UTC()
	} else if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		ex.CreatedAt = lm.UTC()
	}
	return ex, nil
}

// ProbeConditionalWrites reports whether the server refuses to replace an
// object created with If-None-Match: *, the protection against a second
// process writing the same replica. It creates one small object below the
// client's prefix twice and deletes it: three or four requests.
func (c *Client) ProbeConditionalWrites(ctx context.Context) (bool, error) {
	var rnd [8]byte
	if _, err := crand.Read(rnd[:]); err != nil {
		return false, err
	}
	key := ".walsync-probe-" + hex.EncodeToString(rnd[:])
	if c.prefix != "" {
		key = c.prefix + "/" + key
	}
	body := []byte("walsync conditional write probe\n")
	sum := sha256.Sum256(body)
	put := func() error {
		resp, err := c.s.do(ctx, &request{
			op: "put probe", method: http.MethodPut, key: key, header: http.Header{"If-None-Match": {"*"}},
			body: bytes.NewReader(body), length: int64(len(body)), sha256: hex.EncodeToString(sum[:]),
		})
		if err == nil {
			drain(resp)
		}
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if resp, err := c.s.do(dctx, &request{op: "delete probe", method: http.MethodDelete, key: key}); err == nil {
			drain(resp)
		} else {
			c.s.cfg.Logger.Warn("could not delete the conditional write probe object", "object", c.objectURL(key), "error", err)
		}
	}()
	var se *Error
	if err := put(); errors.As(err, &se) && se.Status == http.StatusNotImplemented {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("probe conditional writes: %w", err)
	}
	switch err := put(); {
	case err == nil:
		return false, nil // replaced: the header was ignored
	case preconditionFailed(err):
		return true, nil
	case errors.As(err, &se) && se.Status == http.StatusNotImplemented:
		return false, nil
	default:
		return false, fmt.Errorf("probe conditional writes: %w", err)
	}
}

// putMultipart uploads sp in parts read straight from the spool file, so
// memory does not grow with the object.
func (c *Client) putMultipart(ctx context.Context, key string, h http.Header, sp *storage.Spooled) (err error) {
	resp, err := c.s.do(ctx, &request{op: "create multipart upload", method: http.MethodPost, key: key, header: h, query: url.Values{"uploads": {""}}})
	if err != nil {
		return err
	}
	var created struct {
		UploadID string `xml:"UploadId"`
	}
	err = decodeXML(resp, &created)
	if err != nil || created.UploadID == "" {
		return fmt.Errorf("s3: create multipart upload for %s: no upload ID in the response: %v", c.objectURL(key), err)
	}
	uploadID := created.UploadID
	defer func() {
		if err == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if resp, aerr := c.s.do(actx, &request{op: "abort multipart upload", method: http.MethodDelete, key: key, query: url.Values{"uploadId": {uploadID}}}); aerr == nil {
			drain(resp)
		} else {
			c.s.cfg.Logger.Warn("could not abort multipart upload; a lifecycle rule for incomplete uploads will remove it", "object", c.objectURL(key), "error", aerr)
		}
	}()

	type part struct {
		PartNumber int    `xml:"PartNumber"`
		ETag       string `xml:"ETag"`
	}
	var parts []part
	partSize := c.s.cfg.PartSize
	for off, n := int64(0), 1; off < sp.Size; off, n = off+partSize, n+1 {
		size := min(partSize, sp.Size-off)
		sec := io.NewSectionReader(sp.File, off, size)
		hs := sha256.New()
		if _, err := io.Copy(hs, sec); err != nil {
			return fmt.Errorf("s3: read part %d of %s: %w", n, c.objectURL(key), err)
		}
		resp, err := c.s.do(ctx, &request{
			op: "upload part", method: http.MethodPut, key: key,
			query: url.Values{"partNumber": {strconv.Itoa(n)}, "uploadId": {uploadID}},
			body:  sec, length: size, sha256: hex.EncodeToString(hs.Sum(nil)),
		})
		if err != nil {
			return err
		}
		etag := resp.Header.Get("ETag")
		drain(resp)
		if etag == "" {
			return fmt.Errorf("s3: upload part %d of %s: no ETag in the response", n, c.objectURL(key))
		}
		parts = append(parts, part{PartNumber: n, ETag: etag})
	}

	body, err := xml.Marshal(struct {
		XMLName xml.Name `xml:"CompleteMultipartUpload"`
		Parts   []part   `xml:"Part"`
	}{Parts: parts})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	ch := http.Header{"Content-Type": {"application/xml"}}
	if !c.s.noConditional.Load() {
		// Never over an existing object; versitygw and AWS answer 412.
		ch.Set("If-None-Match", "*")
	}
	complete := &request{
		op: "complete multipart upload", method: http.MethodPost, key: key,
		query: url.Values{"uploadId": {uploadID}}, header: ch,
		body: bytes.NewReader(body), length: int64(len(body)), sha256: hex.EncodeToString(sum[:]),
	}
	// A 200 response may still carry an error document; a retryable one
	// (InternalError, SlowDown) is retried like any other.
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := c.s.backoff(ctx, attempt, complete, err); err != nil {
				return err
			}
		}
		resp, err = c.s.do(ctx, complete)
		var se *Error
		if errors.As(err, &se) && se.Status == http.StatusNotImplemented && complete.header.Get("If-None-Match") != "" {
			c.s.noConditional.Store(true)
			c.s.cfg.Logger.Warn("the S3 server does not support conditional multipart completion (If-None-Match): a second process writing the same replica cannot be detected on large files",
				"bucket", c.s.cfg.Bucket, "endpoint", c.s.endpointString())
			complete.header.Del("If-None-Match")
			resp, err = c.s.do(ctx, complete)
		}
		if err != nil {
			return err
		}
		var done struct {
			XMLName xml.Name
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		}
		if err := decodeXML(resp, &done); err != nil {
			return fmt.Errorf("s3: complete multipart upload of %s: %w", c.objectURL(key), err)
		}
		if done.XMLName.Local != "Error" {
			return nil
		}
		err = c.s.newError(complete, http.StatusOK, done.Code, done.Message)
		if !err.(*Error).retryable() || attempt >= c.s.cfg.MaxRetries {
			return err
		}
	}
}

// OpenLTXFile implements storage.Client. The object is downloaded into an
// unlinked temp file and verified there; a download cut short is retried.
func (c *Client) OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID) (io.ReadCloser, error) {
	if err := checkArgs(level, minTXID, maxTXID); err != nil {
		return nil, err
	}
	key := c.Key(level, minTXID, maxTXID)
	f, err := storage.CreateUnlinkedTemp(c.s.cfg.TempDir)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt <= c.s.cfg.MaxRetries; attempt++ {
		if attempt > 0 {
			if err := c.s.backoff(ctx, attempt, &request{op: "get", key: key}, lastErr); err != nil {
				f.Close()
				return nil, err
			}
		}
		var want string
		want, lastErr = c.download(ctx, key, f)
		if lastErr == nil {
			if err := storage.VerifyFile(f, c.objectURL(key), want, minTXID, maxTXID); err != nil {
				f.Close()
				return nil, err
			}
			return f, nil
		}
		var cut *cutShortError
		if ctx.Err() != nil || !errors.As(lastErr, &cut) {
			break // do() already retried what it could
		}
	}
	f.Close()
	return nil, lastErr
}

// download copies the object into f (truncating it first) and returns the
// SHA-256 from its metadata.
func (c *Client) download(ctx context.Context, key string, f io.WriteSeeker) (string, error) {
	if t, ok := f.(interface{ Truncate(int64) error }); ok {
		if err := t.Truncate(0); err != nil {
			return "", err
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	resp, err := c.s.do(ctx, &request{op: "get", method: http.MethodGet, key: key})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	n, err := io.Copy(f, resp.Body)
	if err != nil {
		return "", &cutShortError{fmt.Errorf("s3: download %s: %w", c.objectURL(key), err)}
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", &cutShortError{fmt.Errorf("s3: download %s: got %d of %d bytes", c.objectURL(key), n, resp.ContentLength)}
	}
	return strings.ToLower(resp.Header.Get("X-Amz-Meta-" + MetaSHA256)), nil
}

// cutShortError is a download whose body broke off; it is worth retrying.
type cutShortError struct{ err error }

func (e *cutShortError) Error() string { return e.err.Error() }
func (e *cutShortError) Unwrap() error { return e.err }

// OpenLTXRange implements storage.Client.
func (c *Client) OpenLTXRange(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	if err := checkArgs(level, minTXID, maxTXID); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("negative offset %d", offset)
	}
	h := http.Header{}
	if size > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+size-1))
	} else if offset > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := c.s.do(ctx, &request{op: "get range", method: http.MethodGet, key: c.Key(level, minTXID, maxTXID), header: h})
	if err != nil {
		return nil, err
	}
	if h.Get("Range") != "" && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, fmt.Errorf("s3: %s ignored the range request (HTTP %d)", c.objectURL(c.Key(level, minTXID, maxTXID)), resp.StatusCode)
	}
	return resp.Body, nil
}

// LTXFiles implements storage.Client with ListObjectsV2, starting after the
// key of TXID after so that earlier files are never listed again.
func (c *Client) LTXFiles(ctx context.Context, level int, after ltx.TXID) (storage.FileIterator, error) {
	if err := storage.ValidateLevel(level); err != nil {
		return nil, err
	}
	it := &listIterator{ctx: ctx, c: c, level: level, prefix: c.levelPrefix(level), after: after}
	if after > 0 {
		it.startAfter = it.prefix + ltx.FormatFilename(after, ^ltx.TXID(0))
	}
	return it, nil
}

// listPageSize is S3's maximum keys per ListObjectsV2 page.
const listPageSize = 1000

// maxListPages bounds the pages of one listing: a server that pages
// without end (new tokens, no keys) must not keep a listing going. 50,000
// by default, 50 million keys at full pages (the replicas below a URL are
// found by listing it whole); a level's listing stops earlier, at
// storage.ScanLimit.
func maxListPages() int { return storage.ScanLimit() / 20 }

// pager catches a server that pages without end: a continuation token it
// gave before (A, B, A, B... as well as A, A), or more than maxListPages.
// Tokens are kept as 64-bit hashes: the set stays small whatever the
// server sends.
type pager struct {
	seen  map[uint64]bool
	pages int
}

// next accepts the token of a page that says more follow.
func (p *pager) next(token string) error {
	if p.pages++; p.pages > maxListPages() {
		return fmt.Errorf("the server kept paging: more than %d pages", maxListPages())
	}
	h := fnv.New64a()
	h.Write([]byte(token))
	sum := h.Sum64()
	if p.seen == nil {
		p.seen = map[uint64]bool{}
	}
	if p.seen[sum] {
		return errors.New("the server repeated a continuation token: the listing would never end")
	}
	p.seen[sum] = true
	return nil
}

type listIterator struct {
	ctx        context.Context
	c          *Client
	level      int
	prefix     string
	after      ltx.TXID
	startAfter string
	token      string
	lastKey    string // the last key listed: every page must come after it
	walked     int    // keys and pages walked, against storage.ScanLimit
	pager      pager
	done       bool
	page       []*storage.FileInfo
	item       *storage.FileInfo
	err        error
}

func (it *listIterator) Next() bool {
	for len(it.page) == 0 {
		if it.done || it.err != nil {
			it.item = nil
			return false
		}
		it.err = it.fetch()
	}
	it.item, it.page = it.page[0], it.page[1:]
	return true
}

func (it *listIterator) fetch() error {
	q := url.Values{"list-type": {"2"}, "prefix": {it.prefix}, "max-keys": {strconv.Itoa(listPageSize)}}
	if it.token != "" {
		q.Set("continuation-token", it.token)
	} else if it.startAfter != "" {
		q.Set("start-after", it.startAfter)
	}
	resp, err := it.c.s.do(it.ctx, &request{op: "list", method: http.MethodGet, query: q})
	if err != nil {
		return err
	}
	var out struct {
		Contents []struct {
			Key          string    `xml:"Key"`
			Size         int64     `xml:"Size"`
			LastModified time.Time `xml:"LastModified"`
		} `xml:"Contents"`
		IsTruncated           bool   `xml:"IsTruncated"`
		NextContinuationToken string `xml:"NextContinuationToken"`
	}
	if err := decodeXML(resp, &out); err != nil {
		return fmt.Errorf("s3: list s3://%s/%s: %w", it.c.s.cfg.Bucket, it.prefix, err)
	}
	// A server that repeats a token or a key, or pages without end, would
	// keep a streaming consumer listing forever.
	if it.walked += 1 + len(out.Contents); it.walked > storage.ScanLimit() {
		return fmt.Errorf("s3: list s3://%s/%s: %w", it.c.s.cfg.Bucket, it.prefix, storage.ListingTooLong())
	}
	if out.IsTruncated && out.NextContinuationToken != "" {
		if err := it.pager.next(out.NextContinuationToken); err != nil {
			return fmt.Errorf("s3: list s3://%s/%s: %w", it.c.s.cfg.Bucket, it.prefix, err)
		}
	}
	for _, o := range out.Contents {
		name, ok := strings.CutPrefix(o.Key, it.prefix)
		if !ok || strings.Contains(name, "/") {
			continue
		}
		minTXID, maxTXID, err := ltx.ParseFilename(name)
		if err != nil || minTXID <= it.after {
			continue
		}
		// Consumers rely on the order (and a server listing the same
		// keys again would never end): the files used must ascend.
		if o.Key <= it.lastKey {
			return fmt.Errorf("s3: list s3://%s/%s: the server listed key %q after %q, out of order", it.c.s.cfg.Bucket, it.prefix, o.Key, it.lastKey)
		}
		it.lastKey = o.Key
		it.page = append(it.page, &storage.FileInfo{
			Level: it.level, MinTXID: minTXID, MaxTXID: maxTXID,
			Size: o.Size, CreatedAt: o.LastModified.UTC(),
		})
	}
	it.token = out.NextContinuationToken
	it.done = !out.IsTruncated || it.token == ""
	return nil
}

func (it *listIterator) Item() *storage.FileInfo { return it.item }
func (it *listIterator) Err() error              { return it.err }
func (it *listIterator) Close() error            { return nil }

// HasFiles implements storage.EmptyChecker: one ListObjectsV2 of a single
// key below the replica's path.
func (c *Client) HasFiles(ctx context.Context) (bool, error) {
	prefix := ""
	if c.prefix != "" {
		prefix = c.prefix + "/"
	}
	q := url.Values{"list-type": {"2"}, "prefix": {prefix}, "max-keys": {"1"}}
	resp, err := c.s.do(ctx, &request{op: "list", method: http.MethodGet, query: q})
	if err != nil {
		return false, err
	}
	var out struct {
		Contents []struct {
			Key string `xml:"Key"`
		} `xml:"Contents"`
	}
	if err := decodeXML(resp, &out); err != nil {
		return false, fmt.Errorf("s3: list s3://%s/%s: %w", c.s.cfg.Bucket, prefix, err)
	}
	return len(out.Contents) > 0, nil
}

// DeleteLTXFiles implements storage.Client with DeleteObjects, 1,000 keys a
// request.
func (c *Client) DeleteLTXFiles(ctx context.Context, files []*storage.FileInfo) error {
	for len(files) > 0 {
		batch := files[:min(len(files), 1000)]
		files = files[len(batch):]
		keys := make([]string, 0, len(batch))
		for _, fi := range batch {
			if err := checkArgs(fi.Level, fi.MinTXID, fi.MaxTXID); err != nil {
				return err
			}
			keys = append(keys, c.Key(fi.Level, fi.MinTXID, fi.MaxTXID))
		}
		if err := c.deleteObjects(ctx, "delete", keys); err != nil {
			return err
		}
	}
	return nil
}

// deleteObjects deletes up to 1,000 keys with one DeleteObjects request. A
// key already gone is not an error; AccessDenied for a key is a 403.
func (c *Client) deleteObjects(ctx context.Context, op string, keys []string) error {
	type object struct {
		Key string `xml:"Key"`
	}
	objs := make([]object, len(keys))
	for i, k := range keys {
		objs[i] = object{Key: k}
	}
	body, err := xml.Marshal(struct {
		XMLName xml.Name `xml:"Delete"`
		Quiet   bool     `xml:"Quiet"`
		Objects []object `xml:"Object"`
	}{Quiet: true, Objects: objs})
	if err != nil {
		return err
	}
	md := md5.Sum(body) // DeleteObjects requires Content-MD5
	sum := sha256.Sum256(body)
	resp, err := c.s.do(ctx, &request{
		op: op, method: http.MethodPost, query: url.Values{"delete": {""}},
		header: http.Header{"Content-Md5": {base64.StdEncoding.EncodeToString(md[:])}, "Content-Type": {"application/xml"}},
		body:   bytes.NewReader(body), length: int64(len(body)), sha256: hex.EncodeToString(sum[:]),
	})
	if err != nil {
		return err
	}
	var out struct {
		Errors []struct {
			Key     string `xml:"Key"`
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		} `xml:"Error"`
	}
	if err := decodeXML(resp, &out); err != nil {
		return fmt.Errorf("s3: delete in s3://%s: %w", c.s.cfg.Bucket, err)
	}
	for _, e := range out.Errors {
		if e.Code != "NoSuchKey" {
			status := http.StatusOK
			if e.Code == "AccessDenied" {
				status = http.StatusForbidden
			}
			return c.s.newError(&request{op: op, key: e.Key}, status, e.Code, e.Message)
		}
	}
	return nil
}

func decodeXML(resp *http.Response, v any) error {
	defer resp.Body.Close()
	if err := xml.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// ListReplicas implements storage.ReplicaLister: every prefix below this
// one that holds <level %04x>/<min>-<max>.ltx keys. It lists the whole
// prefix, so it is meant for administration, not for the hot path.
func (c *Client) ListReplicas(ctx context.Context) ([]string, error) {
	base := ""
	if c.prefix != "" {
		base = c.prefix + "/"
	}
	seen := map[string]bool{}
	token := ""
	var pg pager
	for {
		q := url.Values{"list-type": {"2"}, "prefix": {base}, "max-keys": {strconv.Itoa(listPageSize)}}
		if token != "" {
			q.Set("continuation-token", token)
		}
		resp, err := c.s.do(ctx, &request{op: "list", method: http.MethodGet, query: q})
		if err != nil {
			return nil, err
		}
		var out struct {
			Contents []struct {
				Key string `xml:"Key"`
			} `xml:"Contents"`
			IsTruncated           bool   `xml:"IsTruncated"`
			NextContinuationToken string `xml:"NextContinuationToken"`
		}
		if err := decodeXML(resp, &out); err != nil {
			return nil, err
		}
		for _, o := range out.Contents {
			rel := strings.TrimPrefix(o.Key, base)
			dir, name := path.Split(rel)
			if _, _, err := ltx.ParseFilename(name); err != nil {
				continue
			}
			dir = strings.TrimSuffix(dir, "/")
			lvl := path.Base(dir)
			if len(lvl) != 4 || strings.Trim(lvl, "0123456789abcdef") != "" {
				continue
			}
			name = path.Dir(dir)
			if name == "." {
				name = ""
			}
			seen[name] = true
		}
		if len(seen) > storage.MaxListedFiles {
			return nil, fmt.Errorf("s3: list s3://%s/%s: more than %d databases, the most walsync lists at once; list a narrower -b prefix", c.s.cfg.Bucket, base, storage.MaxListedFiles)
		}
		if !out.IsTruncated || out.NextContinuationToken == "" {
			break
		}
		token = out.NextContinuationToken
		if err := pg.next(token); err != nil {
			return nil, fmt.Errorf("s3: list s3://%s/%s: %w", c.s.cfg.Bucket, base, err)
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}
