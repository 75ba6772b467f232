package s3

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultRegion             = "us-east-1"
	DefaultPartSize           = 16 << 20 // bytes per multipart part
	DefaultMultipartThreshold = 64 << 20 // objects this large or larger go multipart
	DefaultMaxRetries         = 5        // attempts after the first; the engine retries a failed sync later
	DefaultRetryBaseDelay     = 200 * time.Millisecond
	DefaultRetryMaxDelay      = 15 * time.Second
	DefaultResponseTimeout    = 60 * time.Second // for the first response byte
	DefaultMaxConnsPerHost    = 32
)

// Config describes a bucket and how to reach it. Zero fields are filled from
// the environment the way the AWS CLI fills them, then from the defaults.
type Config struct {
	Bucket string
	Prefix string // key prefix, without leading or trailing slash

	// Endpoint is an S3-compatible service's URL ("https://…"; a bare host
	// gets https://). Empty: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS.
	Endpoint string
	// Region: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else
	// us-east-1 ("auto" for Cloudflare R2).
	Region string
	// ForcePathStyle: nil means path-style for custom endpoints and
	// virtual-hosted style for AWS.
	ForcePathStyle *bool

	// Credentials: nil means the AWS credential chain (credentials.go):
	// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or LITESTREAM_ACCESS_KEY_ID
	// / …), web identity, Profile's keys, role, SSO or credential_process,
	// container credentials, the EC2 instance metadata service.
	Credentials *Credentials
	Profile     string // empty: AWS_PROFILE, AWS_DEFAULT_PROFILE, "default"

	CABundle string // PEM file of extra roots; empty: AWS_CA_BUNDLE

	TempDir            string // where objects are spooled; empty: os.TempDir()
	PartSize           int64
	MultipartThreshold int64
	MaxRetries         int // negative: no retries
	RetryBaseDelay     time.Duration
	ResponseTimeout    time.Duration

	Logger *slog.Logger
}

// ParseURL splits "s3://bucket/prefix" into bucket and prefix. Its errors
// never repeat credentials written into the URL.
func ParseURL(raw string) (bucket, prefix string, err error) {
	shown := RedactUserinfo(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("invalid S3 URL %q: %s; expected s3://bucket/prefix", shown, parseReason(err, raw, shown))
	}
	if u.User != nil {
		return "", "", errors.New("invalid S3 URL: credentials do not belong in the URL; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if u.Scheme != "s3" {
		return "", "", fmt.Errorf("invalid S3 URL %q: expected s3://bucket/prefix", shown)
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("invalid S3 URL %q: no bucket; expected s3://bucket/prefix", shown)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(raw, "?") {
		// Dropped silently, a setting meant for the URL (an endpoint, a
		// region) would be ignored. Its keys and values may hold secrets:
		// neither is repeated.
		return "", "", fmt.Errorf("invalid S3 URL s3://%s/%s?…: walsync does not read a query or fragment in the URL; pass settings as flags (--endpoint, --region) or in the config file", u.Host, strings.Trim(u.Path, "/"))
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// parseReason is url.Parse's reason for refusing raw, without the URL it
// repeats; when redaction hid part of raw the reason is generic, since it
// may quote a piece of the hidden part (`invalid port ":SECRET" after host`).
func parseReason(err error, raw, shown string) string {
	if shown != raw {
		return "not a valid URL"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// RedactUserinfo returns raw, a URL, an endpoint or a config value that
// may not parse as a URL, fit for an error or a log: credentials are
// replaced with "REDACTED". It is the one redaction applied wherever such a
// value is shown. It hides
//
//   - everything between "://" and the last "@" after it (a password may
//     hold an unescaped "/", "?", "#" or "@": AWS secret keys often hold a
//     "/"), for every "://" in raw, so that a URL inside a query is covered;
//   - everything after an authority whose port is not a number
//     ("http://KEY:SECRET/x", where the "@" is missing);
//   - without "://", everything before the last "@" ("KEY:SECRET@host:9000");
//   - in the query, the value of every parameter whose name looks like a
//     credential (secret, password, token, signature, key, credential,
//     auth) or whose unescaped value holds an "@" (an escaped URL with
//     credentials, as in ?endpoint=http%3A%2F%2Fkey%3Asecret%40host).
//
// It works on the text alone, because a value that does not parse is
// exactly the kind that reaches an error, and it hides the union of what
// each rule finds in raw, so that one rule's view of where the query or
// the authority ends cannot expose what the other one hides.
func RedactUserinfo(raw string) string {
	var hide [][2]int // byte ranges of raw
	if strings.Contains(raw, "://") {
		for from := 0; ; {
			i := strings.Index(raw[from:], "://")
			if i < 0 {
				break
			}
			start := from + i + len("://")
			if at := strings.LastIndex(raw[start:], "@"); at >= 0 {
				hide = append(hide, [2]int{start, start + at})
			} else if badPortAuthority(raw[start:]) {
				// The rest may be the password too, cut by its own "/",
				// "?" or "#".
				hide = append(hide, [2]int{start, len(raw)})
			}
			from = start
		}
	} else if at := strings.LastIndex(raw, "@"); at >= 0 {
		hide = append(hide, [2]int{0, at})
	}
	hide = append(hide, queryCredentials(raw)...)
	if len(hide) == 0 {
		return raw
	}
	slices.SortFunc(hide, func(a, b [2]int) int { return a[0] - b[0] })
	var out strings.Builder
	pos := 0
	for _, h := range hide {
		if h[1] <= pos {
			continue // inside a range already hidden
		}
		if h[0] >= pos {
			out.WriteString(raw[pos:h[0]])
			out.WriteString(redacted)
		}
		pos = h[1]
	}
	out.WriteString(raw[pos:])
	return out.String()
}

const redacted = "REDACTED"

// badPortAuthority reports whether the authority at the start of rest (up
// to "/", "?" or "#") holds a ":" followed by something other than a port
// number. That is "KEY:SECRET" whose "@" is missing: mistyped, cut off by
// a "#" in the secret, or eaten by ${VAR} expansion ("pa$@ss").
func badPortAuthority(rest string) bool {
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host := rest[:end]
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i >= 0 {
			host = host[i+1:] // an IPv6 literal's colons
		}
	}
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return false
	}
	for _, c := range host[i+1:] {
		if c < '0' || c > '9' {
			return true
		}
	}
	return false
}

// queryCredentials returns the byte ranges of raw's query values to hide.
// The query runs from the first "?" to the end, a fragment included: a
// secret may hold an unescaped "#".
func queryCredentials(raw string) [][2]int {
	q := strings.IndexByte(raw, '?')
	if q < 0 {
		return nil
	}
	var hide [][2]int
	for i := q + 1; i <= len(raw); {
		end := strings.IndexAny(raw[i:], "&;")
		if end < 0 {
			end = len(raw)
		} else {
			end += i
		}
		if eq := strings.IndexByte(raw[i:end], '='); eq >= 0 {
			k, v := raw[i:i+eq], raw[i+eq+1:end]
			if credentialParam(k) || strings.Contains(unescape(v), "@") {
				hide = append(hide, [2]int{i + eq + 1, end})
			}
		}
		i = end + 1
	}
	return hide
}

// unescape decodes s's valid %XX escapes and "+", leaving anything
// invalid as is: a value with one bad escape still shows its "@".
func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		if s[i] == '+' {
			b.WriteByte(' ')
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// credentialParam reports whether a query parameter named name (raw, maybe
// escaped) may carry a credential: Litestream-style keys
// (secret-access-key), presigned URLs (X-Amz-Signature, X-Amz-Credential,
// X-Amz-Security-Token) and the usual password and token names.
func credentialParam(name string) bool {
	name = strings.ToLower(unescape(name))
	for _, w := range []string{"secret", "passw", "pwd", "token", "signature", "sig", "key", "credential", "auth"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// resolved is a Config with every default applied.
type resolved struct {
	Config
	endpoint  *url.URL
	creds     credentialSource
	custom    bool // not AWS
	pathStyle bool
	tls       *tls.Config
}

func resolve(cfg Config) (*resolved, error) {
	r := &resolved{Config: cfg}
	if r.Bucket == "" {
		return nil, errors.New("s3: no bucket given")
	}
	r.Prefix = strings.Trim(r.Prefix, "/")
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	if r.Profile == "" {
		r.Profile = firstEnv("AWS_PROFILE", "AWS_DEFAULT_PROFILE")
	}
	explicitProfile := r.Profile != ""
	if r.Profile == "" {
		r.Profile = "default"
	}
	if r.Endpoint == "" {
		r.Endpoint = firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	}
	files := loadAWSFiles()
	profileCfg, _ := files.configSection(r.Profile)
	if r.Region == "" {
		r.Region = firstEnv("AWS_REGION", "AWS_DEFAULT_REGION")
	}
	if r.Region == "" {
		r.Region = profileCfg["region"]
	}

	if r.Endpoint != "" {
		ep := r.Endpoint
		if !strings.Contains(ep, "://") {
			ep = "https://" + ep // B2 endpoints are often written bare
		}
		u, err := url.Parse(ep)
		if err != nil || u.Hostname() == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("s3: invalid endpoint %q%s: expected https://host[:port]", RedactUserinfo(r.Endpoint), endpointSource(cfg))
		}
		if u.User != nil {
			// Requests are signed with the credential chain's keys; a
			// password here would be ignored, so it is refused.
			return nil, fmt.Errorf("s3: invalid endpoint %q%s: credentials do not belong in the endpoint; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
				RedactUserinfo(r.Endpoint), endpointSource(cfg))
		}
		r.endpoint = &url.URL{Scheme: u.Scheme, Host: u.Host}
		r.custom = !strings.HasSuffix(u.Hostname(), ".amazonaws.com")
		if r.Region == "" && strings.HasSuffix(u.Hostname(), ".r2.cloudflarestorage.com") {
			r.Region = "auto"
		}
	}
	if r.Region == "" {
		r.Region = DefaultRegion
	}
	if r.endpoint == nil {
		r.endpoint = &url.URL{Scheme: "https", Host: "s3." + r.Region + ".amazonaws.com"}
	}
	if r.ForcePathStyle != nil {
		r.pathStyle = *r.ForcePathStyle
	} else {
		// Dotted bucket names break TLS with virtual-hosted style.
		r.pathStyle = r.custom || strings.Contains(r.Bucket, ".")
	}

	if r.CABundle == "" {
		r.CABundle = os.Getenv("AWS_CA_BUNDLE")
	}
	// The bundle matters only for TLS; parsing it costs ~3 MB of allocations.
	if r.CABundle != "" && r.endpoint.Scheme == "https" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(r.CABundle)
		if err != nil {
			return nil, fmt.Errorf("s3: read CA bundle (AWS_CA_BUNDLE): %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3: CA bundle %s holds no PEM certificate", r.CABundle)
		}
		r.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}

	if r.Credentials != nil {
		r.creds = staticSource{*r.Credentials}
	} else {
		src, err := resolveCredentials(credentialOptions{profile: r.Profile, explicit: explicitProfile,
			byName: cfg.Profile != "", region: r.Region, tls: r.tls, files: files})
		if err != nil {
			return nil, err
		}
		r.creds = src
	}
	if s, ok := r.creds.(staticSource); ok {
		if s.c.AccessKeyID == "" || s.c.SecretAccessKey == "" {
			return nil, errors.New("s3: incomplete credentials: both an access key ID and a secret access key are needed")
		}
		r.Credentials = &s.c
	}

	if r.PartSize <= 0 {
		r.PartSize = DefaultPartSize
	}
	if r.PartSize < 5<<20 {
		return nil, fmt.Errorf("s3: part size %d is below S3's 5 MiB minimum", r.PartSize)
	}
	if r.MultipartThreshold <= 0 {
		r.MultipartThreshold = DefaultMultipartThreshold
	}
	if r.MaxRetries == 0 {
		r.MaxRetries = DefaultMaxRetries
	} else if r.MaxRetries < 0 {
		r.MaxRetries = 0
	}
	if r.RetryBaseDelay <= 0 {
		r.RetryBaseDelay = DefaultRetryBaseDelay
	}
	if r.ResponseTimeout <= 0 {
		r.ResponseTimeout = DefaultResponseTimeout
	}
	return r, nil
}

// endpointSource names where an endpoint that did not come from cfg (the
// flag or the config file) came from, for its error.
func endpointSource(cfg Config) string {
	if cfg.Endpoint != "" {
		return ""
	}
	for _, n := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		if os.Getenv(n) != "" {
			return " (from " + n + ")"
		}
	}
	return ""
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// credentialsFilePath and configFilePath are the AWS CLI's files.
func credentialsFilePath() string {
	if path := os.Getenv("AWS_SHARED_CREDENTIALS_FILE"); path != "" {
		return path
	}
	return homeFile(".aws", "credentials")
}

func configFilePath() string {
	if path := os.Getenv("AWS_CONFIG_FILE"); path != "" {
		return path
	}
	return homeFile(".aws", "config")
}

func homeFile(elem ...string) string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(append([]string{home}, elem...)...)
}

// readINI parses the AWS CLI's INI files; a missing file is empty.
func readINI(path string) map[string]map[string]string {
	out := map[string]map[string]string{}
	if path == "" {
		return out
	}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	var cur map[string]string
	sc := bufio.NewScanner(f)
	// A line longer than this stops the scan: said, not silently ignored.
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	defer func() {
		if err := sc.Err(); err != nil {
			slog.Warn("an AWS credentials or config file could not be read to its end; its settings after the line that failed are ignored", "file", path, "error", err)
		}
	}()
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' && strings.HasSuffix(line, "]") {
			name := strings.TrimSpace(line[1 : len(line)-1])
			if out[name] == nil {
				out[name] = map[string]string{}
			}
			cur = out[name]
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && cur != nil {
			cur[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	return out
}
