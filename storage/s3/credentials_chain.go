package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// chainSource is every credential source but static keys: web identity,
// assume role, SSO, credential_process, container credentials and the EC2
// instance metadata service, resolved from the environment and the
// profile the way the AWS SDK for Go v2's config.LoadDefaultConfig does
// (resolveCredentialChain, resolveCredsFromProfile), with our own small
// clients (credentials_local.go, sts.go, sso.go) and our own signer: the
// SDK's service clients would cost every walsync process memory at start.
type chainSource struct {
	source  string // for logs and errors
	profile string
	p       provider // nil when the configuration is wrong: err says why
	err     error
	mu      sync.Mutex
	last    Credentials // the previous answer, scrubbed from errors
}

// provider is one link of a resolved chain; its errors hold no credential
// value and are *transientError when asking again may help.
type provider interface {
	retrieve(ctx context.Context) (Credentials, error)
}

type staticProvider struct{ c Credentials }

func (s staticProvider) retrieve(context.Context) (Credentials, error) { return s.c, nil }

func (c *chainSource) name() string { return c.source }

func (c *chainSource) retrieve(ctx context.Context) (Credentials, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		return Credentials{}, &CredentialsError{Source: c.source, Err: c.err, Permanent: true}
	}
	got, err := c.p.retrieve(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return Credentials{}, ctx.Err()
		}
		return Credentials{}, c.chainError(err)
	}
	got.Source = c.source
	c.last = got
	return got, nil
}

// chainError turns a provider's error into one that names the source,
// says what to do, holds no credential value, and says whether asking
// again can help.
func (c *chainSource) chainError(err error) *CredentialsError {
	var te *transientError
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
	ce := &CredentialsError{Source: c.source, Err: errors.New(c.errorText(err)),
		Permanent: !timeout && !errors.As(err, &te) && !errors.As(err, &ne)}
	var oe *net.OpError
	if strings.HasPrefix(c.source, "EC2 instance metadata") && (timeout || errors.As(err, &oe) && oe.Op == "dial") {
		// Nothing else was configured and no metadata service answered:
		// the usual case off EC2.
		hint := "no credentials found: none in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), in profile " + c.profile +
			" (~/.aws/credentials, ~/.aws/config), no container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI), and the EC2 instance metadata service did not answer"
		if timeout {
			hint += " in time (in a container on EC2, the instance's metadata hop limit must be at least 2: aws ec2 modify-instance-metadata-options --http-put-response-hop-limit 2)"
		}
		ce.Err = fmt.Errorf("%s: %s", hint, c.errorText(err))
		ce.Permanent = !timeout
	}
	return ce
}

// errorText is err's message fit for a log: without the previous
// credentials or a password in a URL.
func (c *chainSource) errorText(err error) string {
	msg := scrubSecrets(err.Error(), c.last)
	if strings.Contains(msg, "://") {
		msg = RedactUserinfo(msg)
	}
	return msg
}

// awsFiles are the AWS CLI's two files, parsed: section name -> settings.
type awsFiles struct {
	creds, config map[string]map[string]string
}

func loadAWSFiles() awsFiles {
	return awsFiles{creds: readINI(credentialsFilePath()), config: readINI(configFilePath())}
}

// profile returns name's settings from both files, the credentials file
// winning, as in the AWS CLI; ok is false if neither has it.
func (f awsFiles) profile(name string) (settings map[string]string, ok bool) {
	cfg, inConfig := f.configSection(name)
	creds, inCreds := f.creds[name]
	out := map[string]string{}
	for k, v := range cfg {
		out[k] = v
	}
	for k, v := range creds {
		if v != "" {
			out[k] = v
		}
	}
	return out, inConfig || inCreds
}

// configSection is profile name's section of the config file: [profile
// name], or [default] for the default profile.
func (f awsFiles) configSection(name string) (map[string]string, bool) {
	if name == "default" {
		if d, ok := f.config["default"]; ok {
			return d, true
		}
	}
	sec, ok := f.config["profile "+name]
	return sec, ok
}

// profileConfig is a profile as the chain reads it.
type profileConfig struct {
	name   string
	s      map[string]string
	source *profileConfig // source_profile's, resolved
	// keysInCredentials: its keys are in ~/.aws/credentials, which the
	// AWS CLI reads after SSO and before credential_process; keys in
	// ~/.aws/config come after credential_process.
	keysInCredentials bool
}

func (p *profileConfig) get(k string) string { return p.s[k] }

func (p *profileConfig) hasKeys() bool {
	return p.get("aws_access_key_id") != "" && p.get("aws_secret_access_key") != ""
}

// hasSSO: an sso-session, or a legacy profile's sso_* settings.
func (p *profileConfig) hasSSO() bool {
	for _, k := range []string{"sso_session", "sso_start_url", "sso_region", "sso_account_id", "sso_role_name"} {
		if p.get(k) != "" {
			return true
		}
	}
	return false
}

// hasCredentials: the profile can give credentials as a source_profile.
func (p *profileConfig) hasCredentials() bool {
	return p.get("source_profile") != "" || p.get("credential_source") != "" || p.get("credential_process") != "" ||
		p.get("web_identity_token_file") != "" || p.hasSSO() || p.hasKeys()
}

// chainBuilder resolves the chain for one client.
type chainBuilder struct {
	files  awsFiles
	region string            // of STS calls
	remote *http.Client      // for STS, SSO and an https container endpoint
	imds   map[string]string // the profile's ec2_metadata_* settings
}

// loadProfile reads profile name and, following source_profile, the
// profiles it takes credentials from; seen holds the profiles already on
// the path (the SDK's rules: a source profile with keys gives only its
// keys; a profile met again keeps only its credential settings).
func (b *chainBuilder) loadProfile(name string, seen map[string]bool) (*profileConfig, error) {
	s, ok := b.files.profile(name)
	if !ok && len(seen) > 0 {
		return nil, fmt.Errorf("source_profile %s is in neither ~/.aws/credentials nor ~/.aws/config", name)
	}
	c := b.files.creds[name]
	p := &profileConfig{name: name, s: s, keysInCredentials: c["aws_access_key_id"] != "" && c["aws_secret_access_key"] != ""}
	if len(seen) > 0 && p.hasKeys() {
		return &profileConfig{name: name, s: map[string]string{
			"aws_access_key_id": s["aws_access_key_id"], "aws_secret_access_key": s["aws_secret_access_key"], "aws_session_token": s["aws_session_token"]}}, nil
	}
	if seen[name] {
		for _, k := range []string{"role_arn", "external_id", "mfa_serial", "role_session_name", "source_profile"} {
			delete(p.s, k)
		}
	} else {
		for _, k := range []string{"source_profile", "credential_source", "web_identity_token_file"} {
			if p.get(k) != "" && p.get("role_arn") == "" {
				return nil, fmt.Errorf("profile %s sets %s but no role_arn", name, k)
			}
		}
	}
	seen[name] = true
	n := 0
	for _, k := range []string{"source_profile", "credential_source", "credential_process", "web_identity_token_file"} {
		if p.get(k) != "" {
			n++
		}
	}
	if n > 1 {
		return nil, fmt.Errorf("profile %s sets more than one of source_profile, credential_source, credential_process and web_identity_token_file", name)
	}
	if src := p.get("source_profile"); src != "" {
		// The source profile gives the credentials: this profile's own
		// credential settings are ignored.
		for _, k := range []string{"credential_source", "credential_process", "web_identity_token_file", "aws_access_key_id",
			"aws_secret_access_key", "aws_session_token", "sso_account_id", "sso_region", "sso_role_name", "sso_start_url"} {
			delete(p.s, k)
		}
		sp, err := b.loadProfile(src, seen)
		if err != nil {
			return nil, err
		}
		if !sp.hasCredentials() {
			return nil, fmt.Errorf("source_profile %s of profile %s gives no credentials", src, name)
		}
		p.source = sp
	}
	return p, nil
}

// build returns the provider of profile p, in the AWS CLI's order within
// a profile: an assumed role (source_profile, credential_source), web
// identity, SSO, keys in ~/.aws/credentials, credential_process, keys in
// ~/.aws/config. The web identity of the environment was tried before.
func (b *chainBuilder) build(p *profileConfig) (provider, error) {
	var base provider
	var err error
	keys := func() provider {
		return staticProvider{Credentials{AccessKeyID: p.get("aws_access_key_id"), SecretAccessKey: p.get("aws_secret_access_key"), SessionToken: p.get("aws_session_token")}}
	}
	switch {
	case p.source != nil:
		base, err = b.build(p.source)
	case p.get("credential_source") != "":
		base, err = b.namedSource(p)
	case p.get("web_identity_token_file") != "":
		// The role is the web identity's: no second AssumeRole.
		return b.webIdentity(p.get("web_identity_token_file"), p.roleInput())
	case p.hasSSO():
		base, err = b.sso(p)
	case p.hasKeys() && p.keysInCredentials:
		base = keys()
	case p.get("credential_process") != "":
		base = &processSource{command: p.get("credential_process")}
	case p.hasKeys():
		base = keys()
	case p.get("login_session") != "":
		return nil, fmt.Errorf("profile %s uses an AWS login session (login_session), which walsync does not read; "+
			"use credential_process = aws configure export-credentials --profile %s --format process", p.name, p.name)
	default:
		base, err = b.machine()
	}
	if err != nil {
		return nil, err
	}
	if p.get("role_arn") == "" {
		return base, nil
	}
	if p.get("mfa_serial") != "" {
		return nil, fmt.Errorf("profile %s assumes its role with MFA (mfa_serial), which needs a code typed in at each renewal; use a role without MFA, or credential_process", p.name)
	}
	return &assumeRoleSource{src: base, in: p.roleInput(), sts: b.sts()}, nil
}

// machine is the container endpoint if one is set, else the instance
// metadata service.
func (b *chainBuilder) machine() (provider, error) {
	c, err := newContainerSource(b.remote)
	if err != nil || c != nil {
		return c, err
	}
	return newIMDSSource(b.imds)
}

// namedSource is a profile's credential_source.
func (b *chainBuilder) namedSource(p *profileConfig) (provider, error) {
	switch v := p.get("credential_source"); v {
	case "Environment":
		id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
		if id == "" || secret == "" {
			return nil, fmt.Errorf("profile %s: credential_source Environment, but AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set", p.name)
		}
		return staticProvider{Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: os.Getenv("AWS_SESSION_TOKEN")}}, nil
	case "Ec2InstanceMetadata":
		return newIMDSSource(b.imds)
	case "EcsContainer":
		c, err := newContainerSource(b.remote)
		if err == nil && c == nil {
			err = fmt.Errorf("profile %s: credential_source EcsContainer, but neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor _FULL_URI is set", p.name)
		}
		return c, err
	default:
		return nil, fmt.Errorf("profile %s: unknown credential_source %q (Environment, Ec2InstanceMetadata or EcsContainer)", p.name, v)
	}
}

func (b *chainBuilder) sts() *stsClient { return &stsClient{region: b.region, http: b.remote} }

func (p *profileConfig) roleInput() assumeRoleInput {
	in := assumeRoleInput{RoleARN: p.get("role_arn"), SessionName: p.get("role_session_name"), ExternalID: p.get("external_id")}
	if d, err := strconv.Atoi(p.get("duration_seconds")); err == nil && d > 0 {
		in.Duration = time.Duration(d) * time.Second
	}
	return in
}

func (b *chainBuilder) webIdentity(tokenFile string, in assumeRoleInput) (provider, error) {
	if in.RoleARN == "" {
		return nil, errors.New("web identity needs a role: set AWS_ROLE_ARN (or role_arn in the profile)")
	}
	return &webIdentitySource{tokenFile: tokenFile, in: in, sts: b.sts()}, nil
}

func (b *chainBuilder) sso(p *profileConfig) (provider, error) {
	s := &ssoSource{profile: p.name, accountID: p.get("sso_account_id"), roleName: p.get("sso_role_name"),
		startURL: p.get("sso_start_url"), region: p.get("sso_region"), http: b.remote}
	if name := p.get("sso_session"); name != "" {
		sec, ok := b.files.config["sso-session "+name]
		if !ok {
			return nil, fmt.Errorf("profile %s: sso_session %s has no [sso-session %s] section in ~/.aws/config", p.name, name, name)
		}
		s.session, s.startURL, s.region = name, sec["sso_start_url"], sec["sso_region"]
	}
	if s.accountID == "" || s.roleName == "" || s.startURL == "" || s.region == "" {
		return nil, fmt.Errorf("profile %s: SSO needs sso_account_id, sso_role_name, sso_start_url and sso_region (or an sso_session with the last two)", p.name)
	}
	return s, nil
}

// webIdentitySource exchanges the token in tokenFile, read at each
// renewal (kubelet replaces it), for the role's credentials.
type webIdentitySource struct {
	tokenFile string
	in        assumeRoleInput
	sts       *stsClient
}

func (w *webIdentitySource) retrieve(ctx context.Context) (Credentials, error) {
	b, err := readBoundedFile(w.tokenFile)
	if err != nil {
		return Credentials{}, fmt.Errorf("read the web identity token file: %w", err)
	}
	return w.sts.assumeRoleWithWebIdentity(ctx, w.in, strings.TrimSpace(string(b)))
}

// assumeRoleSource assumes a role with the credentials of src.
type assumeRoleSource struct {
	src provider
	in  assumeRoleInput
	sts *stsClient
}

func (a *assumeRoleSource) retrieve(ctx context.Context) (Credentials, error) {
	src, err := a.src.retrieve(ctx)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials to assume %s with: %w", a.in.RoleARN, err)
	}
	c, err := a.sts.assumeRole(ctx, a.in, src)
	if err != nil {
		return Credentials{}, scrubErr(err, src.SecretAccessKey, src.SessionToken)
	}
	return c, nil
}
