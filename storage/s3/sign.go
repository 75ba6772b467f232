package s3

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// emptySHA256 is the hex SHA-256 of an empty payload.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// signer signs requests with AWS Signature Version 4 for the s3 service
// (or service, when set: the credential chain's STS calls).
type signer struct {
	service   string // "" means s3
	mu        sync.Mutex
	keyDate   string // yyyymmdd the cached key is for
	keyReg    string
	keySecret string // the secret it was derived from: credentials rotate
	key       []byte
}

// sign adds the SigV4 headers to req. payloadSHA256 is the hex SHA-256 of
// the body (emptySHA256 for none). Signing the real payload hash (rather
// than UNSIGNED-PAYLOAD or aws-chunked trailers) works on every provider,
// including R2 and B2, which reject streaming trailer checksums.
func (s *signer) sign(req *http.Request, creds Credentials, region, payloadSHA256 string, now time.Time) {
	now = now.UTC()
	amzDate := now.Format("20060102T150405Z")
	date := amzDate[:8]

	req.Header.Set("X-Amz-Date", amzDate)
	req.Header.Set("X-Amz-Content-Sha256", payloadSHA256)
	if creds.SessionToken != "" {
		req.Header.Set("X-Amz-Security-Token", creds.SessionToken)
	} else {
		req.Header.Del("X-Amz-Security-Token") // a retry after renewal
	}

	// Sign host, content-md5, content-type and every x-amz-* header.
	names := []string{"host"}
	values := map[string]string{"host": req.URL.Host}
	if req.Host != "" {
		values["host"] = req.Host
	}
	for k, v := range req.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-") || lk == "content-md5" || lk == "content-type" {
			names = append(names, lk)
			values[lk] = strings.Join(trimAll(v), ",")
		}
	}
	sort.Strings(names)
	var canonHeaders strings.Builder
	for _, n := range names {
		canonHeaders.WriteString(n)
		canonHeaders.WriteByte(':')
		canonHeaders.WriteString(values[n])
		canonHeaders.WriteByte('\n')
	}
	signedHeaders := strings.Join(names, ";")

	canonReq := strings.Join([]string{
		req.Method,
		canonicalPath(req.URL),
		canonicalQuery(req.URL.Query()),
		canonHeaders.String(),
		signedHeaders,
		payloadSHA256,
	}, "\n")

	scope := date + "/" + region + "/" + s.svc() + "/aws4_request"
	sum := sha256.Sum256([]byte(canonReq))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	sig := hex.EncodeToString(hmacSHA256(s.signingKey(creds.SecretAccessKey, date, region), toSign))

	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+creds.AccessKeyID+"/"+scope+
		", SignedHeaders="+signedHeaders+", Signature="+sig)
}

func (s *signer) signingKey(secret, date, region string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keyDate == date && s.keyReg == region && s.keySecret == secret {
		return s.key
	}
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, s.svc())
	k = hmacSHA256(k, "aws4_request")
	s.keyDate, s.keyReg, s.keySecret, s.key = date, region, secret, k
	return k
}

func (s *signer) svc() string {
	if s.service == "" {
		return "s3"
	}
	return s.service
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func trimAll(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return out
}

// canonicalPath is the URI-encoded path; S3 encodes each segment once.
func canonicalPath(u *url.URL) string {
	if u.Path == "" {
		return "/"
	}
	// Re-encode from the decoded path so that every reserved character is
	// escaped the way SigV4 wants, whatever net/url chose.
	return escapePath(u.Path)
}

func canonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, uriEncode(k)+"="+uriEncode(v))
		}
	}
	return strings.Join(parts, "&")
}

// uriEncode escapes everything but the unreserved characters (RFC 3986).
func uriEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		const hexDigits = "0123456789ABCDEF"
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// escapePath encodes a key or bucket path for the request URL the same way
// the signature does, so the server computes the same canonical path.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = uriEncode(s)
	}
	return strings.Join(segs, "/")
}
