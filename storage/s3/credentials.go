package s3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Credentials are AWS credentials.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Source          string    // where they came from, for logs (never the values)
	Expires         time.Time // zero: they do not expire
}

// Refresh timing of credentials that expire (session credentials from STS,
// the instance metadata service, a container endpoint, SSO or a process).
const (
	// credentialRefreshAhead is how long before expiry credentials are
	// renewed; credentials that live less than 4 times as long are renewed
	// when a quarter of their life is left.
	credentialRefreshAhead = 5 * time.Minute
	// credentialRetrieveTimeout bounds one attempt at the credential chain.
	credentialRetrieveTimeout = time.Minute
	// credentialRetryMin and credentialRetryMax bound the wait between
	// attempts after a refresh failed (doubling from the first).
	credentialRetryMin = time.Second
	credentialRetryMax = time.Minute
)

// credentialSource gives the keys requests are signed with. Static keys
// (the config, the environment, a profile's keys) are a staticSource;
// everything else is a chainSource (credentials_chain.go).
type credentialSource interface {
	retrieve(ctx context.Context) (Credentials, error)
	name() string // where the credentials come from, for logs and errors
}

type staticSource struct{ c Credentials }

func (s staticSource) retrieve(context.Context) (Credentials, error) { return s.c, nil }
func (s staticSource) name() string                                  { return s.c.Source }

// CredentialsError is a failure to get credentials from their source. It
// names the source, never a value.
type CredentialsError struct {
	Source string
	Err    error
	// Permanent: asking again will not help (no source configured, a role
	// that refuses us, a process whose output is not credentials); the
	// user must act. Other failures (an endpoint not answering) are
	// retried.
	Permanent bool
}

func (e *CredentialsError) Error() string {
	return fmt.Sprintf("s3: no credentials from %s: %v", e.Source, e.Err)
}

func (e *CredentialsError) Unwrap() error { return e.Err }

// CredentialStatus is the state of a client's credentials, for status
// pages and the check command. It holds no credential value.
type CredentialStatus struct {
	Source      string    `json:"source"`
	Expires     time.Time `json:"expires,omitzero"`      // of the credentials in use; zero: static
	LastRefresh time.Time `json:"last_refresh,omitzero"` // when they were obtained
	Failures    int       `json:"refresh_failures"`      // consecutive failed refreshes
	LastError   string    `json:"refresh_error,omitempty"`
}

// credentialCache holds the credentials in use and renews expiring ones
// ahead of expiry. A failed renewal is retried after a back-off while the
// current credentials stay in use until they expire; only then do requests
// fail, with the source's error.
type credentialCache struct {
	src  credentialSource
	log  *slog.Logger
	now  func() time.Time
	cur  atomic.Pointer[cachedCredentials]
	sem  chan struct{} // one refresh at a time
	mu   sync.Mutex    // guards the fields below
	fail int
	next time.Time // no refresh attempt before this after a failure
	err  error
}

type cachedCredentials struct {
	Credentials
	obtained  time.Time
	refreshAt time.Time // zero: never
}

func newCredentialCache(src credentialSource, log *slog.Logger) *credentialCache {
	c := &credentialCache{src: src, log: log, now: time.Now, sem: make(chan struct{}, 1)}
	if s, ok := src.(staticSource); ok {
		c.cur.Store(&cachedCredentials{Credentials: s.c})
	}
	return c
}

// get returns the credentials to sign a request with. The common case is
// one atomic load.
func (c *credentialCache) get(ctx context.Context) (Credentials, error) {
	cur := c.cur.Load()
	now := c.now()
	if cur != nil && (cur.refreshAt.IsZero() || now.Before(cur.refreshAt)) {
		return cur.Credentials, nil
	}
	usable := cur != nil && now.Before(cur.Expires)
	if usable {
		// Renewal is due but these still work: one caller renews, the
		// others go on with them.
		select {
		case c.sem <- struct{}{}:
		default:
			return cur.Credentials, nil
		}
	} else {
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return Credentials{}, ctx.Err()
		}
	}
	defer func() { <-c.sem }()
	if cur = c.cur.Load(); cur != nil && (cur.refreshAt.IsZero() || c.now().Before(cur.refreshAt)) {
		return cur.Credentials, nil // renewed meanwhile
	}
	c.mu.Lock()
	wait, lastErr := c.next.Sub(c.now()), c.err
	c.mu.Unlock()
	if wait > 0 {
		if usable {
			return cur.Credentials, nil
		}
		return Credentials{}, lastErr // asking again this soon would hammer the source
	}

	rctx, cancel := context.WithTimeout(ctx, credentialRetrieveTimeout)
	creds, err := c.src.retrieve(rctx)
	cancel()
	now = c.now()
	if err == nil && (creds.AccessKeyID == "" || creds.SecretAccessKey == "") {
		err = &CredentialsError{Source: c.src.name(), Err: errors.New("an access key ID and a secret access key are both needed"), Permanent: true}
	}
	if err != nil {
		if ctx.Err() != nil {
			return Credentials{}, ctx.Err()
		}
		var ce *CredentialsError
		if !errors.As(err, &ce) {
			err = &CredentialsError{Source: c.src.name(), Err: err}
		}
		c.mu.Lock()
		c.fail++
		c.next = now.Add(min(credentialRetryMin<<min(c.fail-1, 10), credentialRetryMax))
		c.err = err
		fail, next := c.fail, c.next
		c.mu.Unlock()
		if usable {
			c.log.Warn("could not renew the S3 credentials; the current ones are used until they expire",
				"source", c.src.name(), "expires", cur.Expires, "failures", fail, "retry_at", next, "error", err)
			return cur.Credentials, nil
		}
		c.log.Warn("could not get S3 credentials; requests fail until they are obtained",
			"source", c.src.name(), "failures", fail, "retry_at", next, "error", err)
		return Credentials{}, err
	}
	nc := &cachedCredentials{Credentials: creds, obtained: now}
	nc.Source = c.src.name()
	if !creds.Expires.IsZero() {
		ahead := min(credentialRefreshAhead, creds.Expires.Sub(now)/4)
		nc.refreshAt = creds.Expires.Add(-ahead)
	}
	c.cur.Store(nc)
	c.mu.Lock()
	recovered := c.fail
	c.fail, c.err, c.next = 0, nil, time.Time{}
	c.mu.Unlock()
	if recovered > 0 {
		c.log.Info("S3 credentials obtained again", "source", nc.Source, "after_failures", recovered, "expires", nc.Expires)
	} else {
		c.log.Debug("S3 credentials obtained", "source", nc.Source, "expires", nc.Expires)
	}
	return nc.Credentials, nil
}

// expire drops used, credentials a server refused as expired, so that the
// next request gets new ones. It reports whether there is anything to
// renew: static credentials are never renewed.
func (c *credentialCache) expire(used Credentials) bool {
	cur := c.cur.Load()
	if cur == nil || cur.refreshAt.IsZero() {
		return false
	}
	if cur.AccessKeyID == used.AccessKeyID && cur.SessionToken == used.SessionToken {
		c.cur.CompareAndSwap(cur, nil)
	}
	return true
}

func (c *credentialCache) status() CredentialStatus {
	st := CredentialStatus{Source: c.src.name()}
	if cur := c.cur.Load(); cur != nil {
		st.Expires, st.LastRefresh = cur.Expires, cur.obtained
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st.Failures = c.fail
	if c.err != nil {
		st.LastError = c.err.Error()
	}
	return st
}

// The order below is the AWS SDK for Go v2's default chain (the SDK's
// config.resolveCredentialChain), with walsync's additions first:
//
//  1. keys given in the config (Config.Credentials);
//  2. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), then
//     LITESTREAM_ACCESS_KEY_ID / LITESTREAM_SECRET_ACCESS_KEY;
//  3. web identity from the environment (AWS_WEB_IDENTITY_TOKEN_FILE +
//     AWS_ROLE_ARN: EKS IRSA), unless the profile assumes a role or was
//     named in the config;
//  4. the profile (AWS_PROFILE, else default) in ~/.aws/credentials and
//     ~/.aws/config: source_profile + role_arn (assume role), its own
//     keys, credential_source, web_identity_token_file, SSO,
//     credential_process;
//  5. container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or
//     _FULL_URI, with AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]: ECS, EKS
//     Pod Identity);
//  6. the EC2 instance metadata service, IMDSv2 only.
//
// Steps 1, 2 and a profile that holds only keys are read here, as a
// staticSource; the rest is a chainSource (credentials_chain.go). Within a
// profile the order is the AWS CLI's (botocore's): SSO, then keys in the
// credentials file, then credential_process, then keys in the config file
// (aws-sdk-go-v2 takes the keys first); the profile's role_arn beats the
// environment's web identity, as step 3 says.

// credentialOptions is what resolveCredentials reads besides the
// environment.
type credentialOptions struct {
	profile  string
	explicit bool // profile came from the config or AWS_PROFILE
	byName   bool // profile came from the config: the environment's web identity is skipped, as in the SDK
	region   string
	tls      *tls.Config // AWS_CA_BUNDLE's roots, for STS and SSO
	files    awsFiles
}

// resolveCredentials returns the credential source for o.profile.
func resolveCredentials(o credentialOptions) (credentialSource, error) {
	for _, pair := range [][3]string{
		{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"},
		{"LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY", ""},
	} {
		id, secret := os.Getenv(pair[0]), os.Getenv(pair[1])
		if id == "" && secret == "" {
			continue
		}
		if id == "" || secret == "" {
			return nil, fmt.Errorf("s3: %s and %s must be set together", pair[0], pair[1])
		}
		c := Credentials{AccessKeyID: id, SecretAccessKey: secret, Source: "environment (" + pair[0] + ")"}
		if pair[2] != "" {
			c.SessionToken = os.Getenv(pair[2])
		}
		return staticSource{c}, nil
	}

	profile := o.profile
	creds := o.files.creds[profile]
	config, _ := o.files.profile(profile)
	cfgSection, inConfig := o.files.configSection(profile)
	assumesRole := config["role_arn"] != ""
	webIdentity := os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "" && !assumesRole && !o.byName
	// Keys alone are read here; beside another source of the profile the
	// chain decides, in the AWS CLI's order (SSO before the credentials
	// file's keys, credential_process before the config file's).
	pc := &profileConfig{s: config}
	otherSource := pc.hasSSO() || config["credential_process"] != "" || config["credential_source"] != "" || config["web_identity_token_file"] != ""
	if os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") == "" && !assumesRole && !otherSource {
		for _, f := range []struct {
			sec  map[string]string
			name string
		}{{creds, "shared credentials file"}, {cfgSection, "AWS config file"}} {
			if f.sec["aws_access_key_id"] == "" && f.sec["aws_secret_access_key"] == "" {
				continue
			}
			if f.sec["aws_access_key_id"] == "" || f.sec["aws_secret_access_key"] == "" {
				return nil, fmt.Errorf("s3: incomplete credentials in the %s, profile %s: both an access key ID (aws_access_key_id) and a secret access key (aws_secret_access_key) are needed", f.name, profile)
			}
			return staticSource{Credentials{
				AccessKeyID: f.sec["aws_access_key_id"], SecretAccessKey: f.sec["aws_secret_access_key"],
				SessionToken: f.sec["aws_session_token"], Source: f.name + ", profile " + profile,
			}}, nil
		}
	}
	if o.explicit && creds == nil && !inConfig {
		return nil, fmt.Errorf("s3: no credentials found: profile %q is in neither ~/.aws/credentials nor ~/.aws/config "+
			"(AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE); set AWS_PROFILE to a profile that exists, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", profile)
	}

	b := &chainBuilder{files: o.files, region: o.region, remote: remoteHTTP(o.tls), imds: config}
	ch := &chainSource{profile: profile}
	var p provider
	var err error
	if webIdentity {
		ch.source = "web identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)"
		p, err = b.webIdentity(os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE"),
			assumeRoleInput{RoleARN: os.Getenv("AWS_ROLE_ARN"), SessionName: os.Getenv("AWS_ROLE_SESSION_NAME")})
	} else {
		var prof *profileConfig
		prof, err = b.loadProfile(profile, map[string]bool{})
		if err == nil {
			ch.source = chainSourceName(prof)
			p, err = b.build(prof)
		} else {
			ch.source = "profile " + profile
		}
	}
	if err != nil {
		ch.err = err // the chain's first use says so, as the SDK did
	} else {
		ch.p = p
	}
	return ch, nil
}

// chainSourceName names the source the chain takes for profile p, for
// logs and errors before (or without) an answer: build's order.
func chainSourceName(p *profileConfig) string {
	name := "profile " + p.name
	switch {
	case p.source != nil:
		return "assume role (" + name + ", source_profile " + p.source.name + ")"
	case p.get("credential_source") != "":
		return "assume role (" + name + ", credential_source " + p.get("credential_source") + ")"
	case p.get("web_identity_token_file") != "":
		return "web identity (" + name + ", web_identity_token_file)"
	case p.get("role_arn") != "":
		return "assume role (" + name + ")"
	case p.hasSSO():
		return "AWS SSO (" + name + ")"
	case p.hasKeys() && p.keysInCredentials:
		return "shared credentials file, " + name
	case p.get("credential_process") != "":
		return "credential_process (" + name + ")"
	case p.hasKeys():
		return "AWS config file, " + name
	case p.get("login_session") != "":
		return "AWS login session (" + name + ")"
	case os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "":
		return "container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"
	case os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "":
		return "container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI)"
	}
	return "EC2 instance metadata (IMDSv2)"
}

// refusedCredentials reports an S3 answer saying the credentials are
// expired or no longer valid: worth one retry with renewed credentials
// when they come from a source that renews them.
func refusedCredentials(err error) bool {
	var se *Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "InvalidAccessKeyId":
		return true
	}
	return false
}

// scrubSecrets removes the values of creds from msg: an error may quote
// what a source answered.
func scrubSecrets(msg string, creds ...Credentials) string {
	for _, c := range creds {
		for _, v := range []string{c.SecretAccessKey, c.SessionToken} {
			if len(v) >= 4 {
				msg = strings.ReplaceAll(msg, v, redacted)
			}
		}
	}
	return msg
}
