package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/walsync/walsync/storage/s3"
)

// Replica is where a database is replicated: an S3 bucket and key prefix
// or a local directory. Parse fills every field from the replica's keys,
// its url and the top-level defaults, so callers read the fields and need
// not parse URL.
//
// Printing a Replica with any fmt verb, String or slog shows no
// credential.
type Replica struct {
	// Type is "s3" or "file".
	Type string
	// URL is the url key as written (after ${VAR} expansion), "" if the
	// replica was given as type/bucket/path. Informational: its parts are
	// in the fields below. Never print it; print the Replica.
	URL string
	// Bucket is the S3 bucket.
	Bucket string
	// Path is the S3 key prefix, without leading or trailing slash, or the
	// file replica's absolute directory.
	Path string
	// Endpoint is the S3-compatible service's URL, with a scheme: as in
	// Litestream, a bare host in the endpoint key gets https://, and one in
	// the url's endpoint parameter gets http:// if it is local or private.
	// "" for AWS or the environment's default.
	Endpoint string
	// Region is the S3 region; "" for the environment's default.
	Region string
	// ForcePathStyle is nil when neither the config nor the URL chose:
	// path-style for custom endpoints, virtual-hosted for AWS.
	ForcePathStyle *bool
	// SkipVerify disables TLS certificate verification of the endpoint.
	SkipVerify bool
	// AccessKeyID and SecretAccessKey are static S3 credentials from the
	// config ("" to use the environment's); both or neither are set.
	AccessKeyID     string
	SecretAccessKey string
	// SyncInterval is this replica's own sync-interval (nil: the default,
	// Config.Walsync.SyncInterval).
	SyncInterval *time.Duration
	// Line is the replica's line in the file, for messages.
	Line int
}

// ReplicaURL returns the URL walsync's storage/replicaurl opens:
// s3://bucket/prefix or file:///dir. Endpoint, Region, ForcePathStyle,
// SkipVerify and the credentials are not part of it; pass them as options.
func (r Replica) ReplicaURL() (string, error) {
	switch r.Type {
	case "s3":
		if r.Bucket == "" {
			return "", errors.New("s3 replica without a bucket")
		}
		u := url.URL{Scheme: "s3", Host: r.Bucket}
		if p := strings.Trim(r.Path, "/"); p != "" {
			u.Path = "/" + p
		}
		return u.String(), nil
	case "file":
		if !filepath.IsAbs(r.Path) {
			return "", fmt.Errorf("file replica path %q is not absolute", r.Path)
		}
		return (&url.URL{Scheme: "file", Path: filepath.ToSlash(r.Path)}).String(), nil
	}
	return "", fmt.Errorf("replica type %q is not supported by walsync; supported: s3, file", r.Type)
}

// String describes the replica for people: its URL and S3 options, with
// credentials shown only as "credentials from config".
func (r Replica) String() string {
	u, err := r.ReplicaURL()
	if err != nil {
		return "invalid replica (" + err.Error() + ")"
	}
	var opts []string
	if r.Endpoint != "" {
		opts = append(opts, "endpoint "+s3.RedactUserinfo(r.Endpoint))
	}
	if r.Region != "" {
		opts = append(opts, "region "+r.Region)
	}
	if r.ForcePathStyle != nil {
		opts = append(opts, "force-path-style "+strconv.FormatBool(*r.ForcePathStyle))
	}
	if r.SkipVerify {
		opts = append(opts, "skip-verify")
	}
	if r.AccessKeyID != "" || r.SecretAccessKey != "" {
		opts = append(opts, "credentials from config")
	}
	if len(opts) == 0 {
		return u
	}
	return u + " (" + strings.Join(opts, ", ") + ")"
}

// GoString is String, so that %#v shows no credential either.
func (r Replica) GoString() string { return "config.Replica{" + r.String() + "}" }

// Format prints String for every verb (GoString for %#v), so that no
// verb prints the credential fields.
func (r Replica) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, r.GoString())
		return
	}
	fmt.Fprint(f, r.String())
}

// LogValue logs the replica as a group; credentials appear as "REDACTED".
func (r Replica) LogValue() slog.Value {
	u, err := r.ReplicaURL()
	if err != nil {
		u = "invalid"
	}
	attrs := []slog.Attr{slog.String("url", u)}
	if r.Endpoint != "" {
		attrs = append(attrs, slog.String("endpoint", s3.RedactUserinfo(r.Endpoint)))
	}
	if r.Region != "" {
		attrs = append(attrs, slog.String("region", r.Region))
	}
	if r.ForcePathStyle != nil {
		attrs = append(attrs, slog.Bool("force-path-style", *r.ForcePathStyle))
	}
	if r.SkipVerify {
		attrs = append(attrs, slog.Bool("skip-verify", true))
	}
	if r.AccessKeyID != "" {
		attrs = append(attrs, slog.String("access-key-id", "REDACTED"))
	}
	if r.SecretAccessKey != "" {
		attrs = append(attrs, slog.String("secret-access-key", "REDACTED"))
	}
	return slog.GroupValue(attrs...)
}

// identity names the storage the replica writes to, to find two databases
// sharing one.
func (r Replica) identity() (string, error) {
	u, err := r.ReplicaURL()
	if err != nil {
		return "", err
	}
	return strings.ToLower(r.Endpoint) + " " + u, nil
}

// ReplicaFor returns the replica of the database at dbPath, which db lists
// (db.Path) or finds in its directory (db.Dir).
//
// A database with its own replica is replicated exactly as Litestream
// would: a path entry's replica as given; in directory mode, the
// directory's replica with the database's path relative to db.Dir appended
// (dir /srv/tenants, replica s3://b/t: /srv/tenants/a/app.db goes to
// s3://b/t/a/app.db), so that either tool restores the other's replicas.
//
// Otherwise it returns Walsync.Replica and shared true: the caller stores
// the database below it under its walsync name, as `walsync watch -b URL`
// does (storage/replicaurl.Name).
func (c *Config) ReplicaFor(db DB, dbPath string) (r Replica, shared bool, err error) {
	if db.Replica == nil {
		if c.Walsync.Replica == nil {
			return Replica{}, false, fmt.Errorf("database %s has no replica and the config has no walsync.replica", dbPath)
		}
		return *c.Walsync.Replica, true, nil
	}
	r = *db.Replica
	if db.Dir == "" {
		return r, false, nil
	}
	abs, err := filepath.Abs(dbPath)
	if err != nil {
		return Replica{}, false, fmt.Errorf("replica of %s: %w", dbPath, err)
	}
	rel, err := filepath.Rel(db.Dir, abs)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return Replica{}, false, fmt.Errorf("replica of %s: the database is not inside directory %s", abs, db.Dir)
	}
	switch r.Type {
	case "file":
		r.Path = filepath.Join(r.Path, rel)
	default:
		r.Path = strings.Trim(path.Join(r.Path, filepath.ToSlash(rel)), "/")
	}
	r.URL = ""
	return r, false, nil
}

// replicaKeys are the replica keys given in one mapping (a replica, or the
// top level's defaults).
type replicaKeys struct {
	typ, url, path, bucket, endpoint, region string
	accessKeyID, secretAccessKey             string
	forcePathStyle, skipVerify               *bool
	syncInterval                             *time.Duration
	given                                    map[string]field // for lines
}

// replicaSettings returns handlers for the replica keys that may also be
// given at the top level as defaults.
func (p *parser) replicaSettings(k *replicaKeys) map[string]func(field) {
	k.given = map[string]field{}
	str := func(dst *string) func(field) {
		return func(f field) {
			if s, ok := p.str(f); ok {
				*dst = s
				k.given[f.name] = f
			}
		}
	}
	flag := func(dst **bool) func(field) {
		return func(f field) {
			if b, ok := p.boolean(f); ok {
				*dst = &b
				k.given[f.name] = f
			}
		}
	}
	return map[string]func(field){
		"access-key-id":     str(&k.accessKeyID),
		"secret-access-key": str(&k.secretAccessKey),
		"region":            str(&k.region),
		"bucket":            str(&k.bucket),
		"endpoint":          str(&k.endpoint),
		"force-path-style":  flag(&k.forcePathStyle),
		"skip-verify":       flag(&k.skipVerify),
		"sync-interval": func(f field) {
			if d, ok := p.positive(f, false); ok {
				k.syncInterval = d
			}
		},
	}
}

// replica parses a replica mapping and resolves it against the top-level
// defaults. It returns nil after reporting an error.
func (p *parser) replica(f field, g *replicaKeys) *Replica {
	var k replicaKeys
	keys := p.replicaSettings(&k)
	for name, dst := range map[string]*string{"type": &k.typ, "url": &k.url, "path": &k.path} {
		keys[name] = func(f field) {
			if s, ok := p.str(f); ok {
				*dst = s
				k.given[f.name] = f
			}
		}
	}
	before := len(p.errs)
	p.walk(f.val, f.path, schema{
		keys:        keys,
		unsupported: union(replicaUnsupported, replicaSettingsUnsupported),
		refused:     replicaSettingsRefused,
	})
	if len(p.errs) > before {
		return nil
	}
	r, ok := p.resolveReplica(f, &k, g)
	if !ok {
		return nil
	}
	return r
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func firstBool(bs ...*bool) *bool {
	for _, b := range bs {
		if b != nil {
			return b
		}
	}
	return nil
}

var schemeRE = regexp.MustCompile(`^\w+://`)

// resolveReplica combines a replica's keys, its url and the top-level
// defaults g, with Litestream's precedence: the replica's keys, then the
// defaults, then what the url says (but a url's bucket is never replaced).
func (p *parser) resolveReplica(f field, k, g *replicaKeys) (*Replica, bool) {
	at := func(name string) (*yaml.Node, string) {
		if kf, ok := k.given[name]; ok {
			return kf.val, kf.path
		}
		return f.key, f.path
	}
	r := &Replica{URL: k.url, Line: line(f.key), SyncInterval: k.syncInterval}

	// The type: the url's scheme, else type, else file (as in Litestream).
	r.Type = strings.ToLower(k.typ)
	if k.url != "" {
		n, key := at("url")
		if !schemeRE.MatchString(k.url) {
			p.errorf(n, key, "key %s: %q is not a URL: expected s3://bucket/path or file:///dir (a directory goes in path:)", key, s3.RedactUserinfo(k.url))
			return nil, false
		}
		scheme := strings.ToLower(k.url[:strings.Index(k.url, "://")])
		if scheme == "webdavs" {
			scheme = "webdav"
		}
		if r.Type != "" && r.Type != scheme {
			tn, tkey := at("type")
			p.warnf(tn, tkey, "key %s: type %s differs from the url's scheme %s; using the url, as Litestream does", tkey, r.Type, scheme)
		}
		r.Type = scheme
	}
	if r.Type == "" {
		r.Type = "file"
	}
	if schemeRE.MatchString(k.path) {
		n, key := at("path")
		p.errorf(n, key, "key %s: the path of a replica cannot be a URL; use url: instead", key)
		return nil, false
	}
	switch r.Type {
	case "s3":
		return r, p.resolveS3(f, r, k, g, at)
	case "file":
		return r, p.resolveFile(f, r, k, at)
	}
	n, key := at("type")
	if k.url != "" {
		n, key = at("url")
	}
	p.errorf(n, key, "key %s: replica type %s is not supported by walsync; supported: s3, file", key, r.Type)
	return nil, false
}

func (p *parser) resolveFile(f field, r *Replica, k *replicaKeys, at func(string) (*yaml.Node, string)) bool {
	dir := k.path
	switch {
	case k.url != "" && k.path != "":
		n, key := at("path")
		p.errorf(n, key, "%s: give url or path, not both", f.path)
		return false
	case k.url != "":
		n, key := at("url")
		u, err := url.Parse(k.url)
		if err != nil || (u.Host != "" && u.Host != "localhost") || u.Path == "" {
			p.errorf(n, key, "key %s: invalid file URL %q: expected file:///absolute/dir", key, s3.RedactUserinfo(k.url))
			return false
		}
		dir = path.Clean(u.Path)
	case dir == "":
		p.errorf(f.key, f.path, "%s: a file replica needs a directory: path: /backups/app or url: file:///backups/app (for S3 add type: s3)", f.path)
		return false
	}
	abs, err := expandPath(dir)
	if err != nil {
		n, key := at("path")
		p.errorf(n, key, "key %s: %v", key, err)
		return false
	}
	r.Path = abs
	for _, name := range []string{"bucket", "endpoint", "region", "force-path-style", "skip-verify", "access-key-id", "secret-access-key"} {
		if kf, ok := k.given[name]; ok {
			p.warnf(kf.key, kf.path, "key %s has no effect on a file replica (add type: s3 for S3); ignored", kf.path)
		}
	}
	return true
}

func (p *parser) resolveS3(f field, r *Replica, k, g *replicaKeys, at func(string) (*yaml.Node, string)) bool {
	var fromURL struct {
		bucket, path, region, endpoint string
		pathStyle, skipVerify          *bool
	}
	if k.url != "" {
		n, key := at("url")
		for _, other := range []string{"path", "bucket"} {
			if _, ok := k.given[other]; ok {
				on, okey := at(other)
				p.errorf(on, okey, "%s: give url or %s, not both (the url holds the bucket and path)", f.path, other)
				return false
			}
		}
		if strings.HasPrefix(strings.ToLower(k.url), "s3://arn:") {
			p.errorf(n, key, "key %s: S3 access point ARNs are not supported by walsync; use s3://bucket/path", key)
			return false
		}
		u, err := url.Parse(k.url)
		if err != nil {
			p.errorf(n, key, "key %s: invalid URL %q: expected s3://bucket/path", key, s3.RedactUserinfo(k.url))
			return false
		}
		if u.User != nil {
			p.errorf(n, key, "key %s: credentials do not belong in the URL; use access-key-id and secret-access-key (or the environment)", key)
			return false
		}
		fromURL.bucket, fromURL.region, fromURL.endpoint, fromURL.pathStyle = parseS3Host(u.Host)
		fromURL.path = u.Path
		q := u.Query()
		if v := q.Get("endpoint"); v != "" {
			fromURL.endpoint = v
			if q.Get("forcePathStyle") != "false" {
				t := true
				fromURL.pathStyle = &t
			}
		}
		if v := q.Get("region"); v != "" {
			fromURL.region = v
		}
		for param, dst := range map[string]**bool{"forcePathStyle": &fromURL.pathStyle, "skipVerify": &fromURL.skipVerify} {
			if v := q.Get(param); v != "" {
				b := strings.EqualFold(v, "true") || v == "1"
				*dst = &b
			}
		}
		for param := range q {
			switch param {
			case "endpoint", "region", "forcePathStyle", "skipVerify":
			case "signPayload", "sign-payload", "requireContentMD5", "require-content-md5",
				"storageClass", "storage-class", "partSize", "part-size", "concurrency":
				p.warnf(n, key, "key %s: URL parameter %s is not supported by walsync; ignored", key, param)
			default:
				if s3.RedactUserinfo(k.url) != k.url {
					// A credential in the URL may hold a "&" that split it
					// into this parameter's name.
					p.warnf(n, key, "key %s: an unknown URL parameter, ignored (its name is not shown: the URL holds a credential)", key)
					continue
				}
				p.warnf(n, key, "key %s: unknown URL parameter %s; ignored", key, param)
			}
		}
		r.Bucket = fromURL.bucket
	} else {
		r.Bucket = firstOf(k.bucket, g.bucket)
	}
	r.Path = cleanPrefix(firstOf(k.path, fromURL.path))
	r.Region = firstOf(k.region, g.region, fromURL.region)
	// An endpoint key without a scheme is HTTPS; one in the URL is HTTP
	// when local or private (Litestream's two rules).
	r.Endpoint = withHTTPS(firstOf(k.endpoint, g.endpoint))
	if r.Endpoint == "" {
		r.Endpoint = ensureScheme(fromURL.endpoint)
	}
	r.ForcePathStyle = firstBool(k.forcePathStyle, g.forcePathStyle, fromURL.pathStyle)
	if sv := firstBool(k.skipVerify, g.skipVerify, fromURL.skipVerify); sv != nil {
		r.SkipVerify = *sv
	}
	r.AccessKeyID = firstOf(k.accessKeyID, g.accessKeyID)
	r.SecretAccessKey = firstOf(k.secretAccessKey, g.secretAccessKey)

	ok := true
	if r.Bucket == "" {
		p.errorf(f.key, f.path, "%s: an s3 replica needs a bucket: bucket: NAME or url: s3://NAME/path", f.path)
		ok = false
	}
	if r.Endpoint != "" {
		if u, err := url.Parse(r.Endpoint); err != nil || u.Host == "" || u.User != nil {
			n, key := at("endpoint")
			p.errorf(n, key, "key %s: invalid endpoint %q: expected a URL such as https://s3.example.com or a host[:port]", key, s3.RedactUserinfo(r.Endpoint))
			ok = false
		}
	}
	if (r.AccessKeyID == "") != (r.SecretAccessKey == "") {
		missing, given := "secret-access-key", "access-key-id"
		if r.AccessKeyID == "" {
			missing, given = given, missing
		}
		p.errorf(f.key, f.path, "%s: %s is set but %s is not; give both (here or at the top level) or neither", f.path, given, missing)
		ok = false
	}
	return ok
}

// cleanPrefix returns an S3 key prefix without leading or trailing slash.
func cleanPrefix(p string) string {
	if p == "" {
		return ""
	}
	c := strings.Trim(path.Clean("/"+p), "/")
	if c == "." {
		return ""
	}
	return c
}

// S3 URL hosts that name a provider as well as the bucket, as Litestream
// reads them.
var (
	awsHostRE          = regexp.MustCompile(`^(.+)\.s3(?:\.([^.]+))?\.amazonaws\.com$`)
	digitalOceanHostRE = regexp.MustCompile(`^(?:(.+)\.)?([^.]+)\.digitaloceanspaces\.com$`)
	backblazeHostRE    = regexp.MustCompile(`^(?:(.+)\.)?s3\.([^.]+)\.backblazeb2\.com$`)
	filebaseHostRE     = regexp.MustCompile(`^(?:(.+)\.)?s3\.filebase\.com$`)
	scalewayHostRE     = regexp.MustCompile(`^(?:(.+)\.)?s3\.([^.]+)\.scw\.cloud$`)
)

// parseS3Host reads the host of an s3:// URL: usually just the bucket, but
// also bucket.host:port (a MinIO-style endpoint over HTTP) and the
// virtual-hosted names of AWS, DigitalOcean, Backblaze, Filebase and
// Scaleway.
func parseS3Host(host string) (bucket, region, endpoint string, pathStyle *bool) {
	yes := true
	if strings.Contains(host, ":") && !strings.Contains(host, ".com") {
		b, rest, ok := strings.Cut(host, ".")
		if !ok {
			return "", "", "http://" + host, &yes
		}
		return b, "us-east-1", "http://" + rest, &yes
	}
	if m := awsHostRE.FindStringSubmatch(host); m != nil {
		return m[1], m[2], "", nil
	}
	if m := digitalOceanHostRE.FindStringSubmatch(host); m != nil {
		return m[1], m[2], "https://" + m[2] + ".digitaloceanspaces.com", nil
	}
	if m := backblazeHostRE.FindStringSubmatch(host); m != nil {
		return m[1], m[2], "https://s3." + m[2] + ".backblazeb2.com", &yes
	}
	if m := filebaseHostRE.FindStringSubmatch(host); m != nil {
		return m[1], "", "https://s3.filebase.com", nil
	}
	if m := scalewayHostRE.FindStringSubmatch(host); m != nil {
		return m[1], m[2], "https://s3." + m[2] + ".scw.cloud", nil
	}
	return host, "", "", nil
}

// withHTTPS gives an endpoint without a scheme https://.
func withHTTPS(endpoint string) string {
	if endpoint == "" || strings.Contains(endpoint, "://") {
		return endpoint
	}
	return "https://" + endpoint
}

// ensureScheme gives an endpoint without a scheme http:// if its host is
// local or private and https:// otherwise, as Litestream does.
func ensureScheme(endpoint string) string {
	if endpoint == "" || strings.Contains(endpoint, "://") {
		return endpoint
	}
	host := endpoint
	if i := strings.IndexAny(host, "/?#"); i >= 0 {
		host = host[:i]
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	local := host == "localhost" || strings.HasSuffix(host, ".local") || strings.HasSuffix(host, ".localhost")
	if ip := net.ParseIP(host); ip != nil {
		local = ip.IsLoopback() || ip.IsPrivate()
	}
	if local {
		return "http://" + endpoint
	}
	return "https://" + endpoint
}
