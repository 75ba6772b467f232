package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// The credential sources on the machine itself: the EC2 instance metadata
// service (IMDSv2), a container credentials endpoint (ECS, EKS Pod
// Identity) and a credential_process. They follow the AWS SDK for Go v2's
// providers (credentials/ec2rolecreds, endpointcreds, processcreds) but are
// our own few lines: linking the SDK costs every walsync process memory at
// start, static keys or not.

// maxCredentialAnswer bounds what is read from any credential source: a
// real answer is well under 4 KiB.
const maxCredentialAnswer = 64 << 10

// Timeouts of the credential sources.
const (
	// imdsTimeout bounds one request to the instance metadata service. A
	// container on EC2 whose hop limit is 1 never gets the token's answer:
	// this is how long it takes to say so.
	imdsTimeout = 5 * time.Second
	// processTimeout is the AWS SDK's limit on a credential_process.
	processTimeout = time.Minute
	// remoteTimeout bounds one call to STS, SSO or SSO OIDC.
	remoteTimeout = 30 * time.Second
)

// transientError is a credential failure that asking again may cure: an
// endpoint that is busy, throttles or answers 5xx.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// statusError is an error for an endpoint's HTTP answer: transient for
// 5xx and 429, else permanent. detail says what the endpoint said (never
// a credential: the callers pass a code and message at most).
func statusError(what string, status int, detail string) error {
	err := fmt.Errorf("%s answered HTTP %d%s", what, status, detail)
	if status >= 500 || status == http.StatusTooManyRequests {
		return &transientError{err}
	}
	return err
}

// readAnswer reads at most maxCredentialAnswer bytes of an answer.
func readAnswer(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxCredentialAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", what, err)
	}
	if len(b) > maxCredentialAnswer {
		return nil, fmt.Errorf("%s answered more than %d bytes", what, maxCredentialAnswer)
	}
	return b, nil
}

// shortText is s cut to a line of at most 200 bytes, for an error.
func shortText(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// localHTTP is the client of the endpoints on the machine or the
// instance: no proxy (169.254.169.254 behind HTTP_PROXY would go to the
// proxy) and no redirects.
// Made on first use: a process with static keys never needs it.
var localHTTP = sync.OnceValue(func() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			ResponseHeaderTimeout: imdsTimeout,
			MaxIdleConns:          2,
			IdleConnTimeout:       30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
})

// credentialJSON is the answer of the instance metadata service, a
// container endpoint and a credential_process (which writes "SessionToken"
// where the endpoints write "Token").
type credentialJSON struct {
	Version         int
	Code            string
	Message         string
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string
	Token           string
	SessionToken    string
	Expiration      *time.Time
}

func (c credentialJSON) credentials() Credentials {
	out := Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.Token}
	if c.SessionToken != "" {
		out.SessionToken = c.SessionToken
	}
	if c.Expiration != nil {
		out.Expires = *c.Expiration
	}
	return out
}

// imdsSource gets the instance role's credentials from the EC2 instance
// metadata service: a session token first (IMDSv2), then the role name,
// then its credentials. Without a token it goes on only if allowV1.
type imdsSource struct {
	endpoint string // http://169.254.169.254, no trailing slash
	allowV1  bool
}

// newIMDSSource reads the SDK's settings: AWS_EC2_METADATA_SERVICE_ENDPOINT
// (or _MODE=IPv6), AWS_EC2_METADATA_DISABLED, AWS_EC2_METADATA_V1_DISABLED,
// each also from the profile (ec2_metadata_service_endpoint, …).
func newIMDSSource(profile map[string]string) (*imdsSource, error) {
	get := func(env, key string) string {
		if v := os.Getenv(env); v != "" {
			return v
		}
		return profile[key]
	}
	if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		return nil, errors.New("the EC2 instance metadata service is turned off (AWS_EC2_METADATA_DISABLED=true)")
	}
	ep := get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "ec2_metadata_service_endpoint")
	if ep == "" {
		ep = "http://169.254.169.254"
		if strings.EqualFold(get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ec2_metadata_service_endpoint_mode"), "IPv6") {
			ep = "http://[fd00:ec2::254]"
		}
	}
	return &imdsSource{
		endpoint: strings.TrimRight(ep, "/"),
		// IMDSv1 (no token) only when asked for: it is open to SSRF.
		allowV1: strings.EqualFold(get("AWS_EC2_METADATA_V1_DISABLED", "ec2_metadata_v1_disabled"), "false"),
	}, nil
}

func (s *imdsSource) retrieve(ctx context.Context) (Credentials, error) {
	token, err := s.get(ctx, http.MethodPut, "/latest/api/token", "")
	if err != nil {
		if !s.allowV1 {
			return Credentials{}, fmt.Errorf("IMDSv2 session token: %w (IMDSv1 is not used unless AWS_EC2_METADATA_V1_DISABLED=false)", err)
		}
		token = ""
	}
	roles, err := s.get(ctx, http.MethodGet, "/latest/meta-data/iam/security-credentials/", token)
	if err != nil {
		return Credentials{}, fmt.Errorf("instance role: %w", err)
	}
	role, _, _ := strings.Cut(strings.TrimSpace(roles), "\n")
	role = strings.TrimSpace(role)
	if role == "" || strings.ContainsAny(role, "/?#") {
		return Credentials{}, errors.New("the instance has no IAM role (attach an instance profile)")
	}
	body, err := s.get(ctx, http.MethodGet, "/latest/meta-data/iam/security-credentials/"+role, token)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials of instance role %s: %w", role, err)
	}
	var c credentialJSON
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		return Credentials{}, errors.New("the instance metadata service answered something other than credentials JSON")
	}
	if c.Code != "" && c.Code != "Success" {
		return Credentials{}, fmt.Errorf("the instance metadata service answered %s: %s", shortText(c.Code), shortText(c.Message))
	}
	return c.credentials(), nil
}

// get does one request to the metadata service and returns the body.
func (s *imdsSource) get(ctx context.Context, method, path, token string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, imdsTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.endpoint+path, nil)
	if err != nil {
		return "", fmt.Errorf("instance metadata endpoint %s: %w", RedactUserinfo(s.endpoint), err)
	}
	if method == http.MethodPut {
		req.Header.Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
	} else if token != "" {
		req.Header.Set("X-Aws-Ec2-Metadata-Token", token)
	}
	resp, err := localHTTP().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := readAnswer(resp.Body, "the instance metadata service")
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", statusError("the instance metadata service", resp.StatusCode, "")
	}
	return string(b), nil
}

// containerSource gets credentials from the container credentials
// endpoint of ECS (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) or of EKS Pod
// Identity and others (AWS_CONTAINER_CREDENTIALS_FULL_URI), sending
// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE's content (read each time: it is
// rotated) or AWS_CONTAINER_AUTHORIZATION_TOKEN.
type containerSource struct {
	uri    string
	remote *http.Client // for an https endpoint
}

// ecsHost is where ECS serves AWS_CONTAINER_CREDENTIALS_RELATIVE_URI.
const ecsHost = "http://169.254.170.2"

// newContainerSource returns the source of the environment's container
// endpoint, or nil if none is set.
func newContainerSource(remote *http.Client) (*containerSource, error) {
	if rel := os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"); rel != "" {
		return &containerSource{uri: ecsHost + rel}, nil
	}
	full := os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
	if full == "" {
		return nil, nil
	}
	u, err := url.Parse(full)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI %q is not a URL", RedactUserinfo(full))
	}
	if u.Scheme != "https" && !containerHostAllowed(u.Hostname()) {
		// The AWS SDKs' rule: plain HTTP only to this machine or the
		// ECS/EKS agents, where nobody can listen in on the token.
		return nil, fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI %q: plain http is allowed only to a loopback address, 169.254.170.2, 169.254.170.23 or fd00:ec2::23; use https", RedactUserinfo(full))
	}
	return &containerSource{uri: full, remote: remote}, nil
}

func containerHostAllowed(host string) bool {
	switch host {
	case "169.254.170.2", "169.254.170.23", "fd00:ec2::23":
		return true
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

func (s *containerSource) retrieve(ctx context.Context) (Credentials, error) {
	auth := os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN")
	if f := os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); f != "" {
		b, err := readBoundedFile(f)
		if err != nil {
			return Credentials{}, fmt.Errorf("read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %w", err)
		}
		auth = string(b)
	}
	if strings.ContainsAny(auth, "\r\n") {
		return Credentials{}, errors.New("the container authorization token holds a line break")
	}
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.uri, nil)
	if err != nil {
		return Credentials{}, fmt.Errorf("container credentials endpoint %s: %w", RedactUserinfo(s.uri), err)
	}
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	client := localHTTP()
	if req.URL.Scheme == "https" {
		client = s.remote
	}
	resp, err := client.Do(req)
	if err != nil {
		return Credentials{}, scrubErr(err, auth)
	}
	defer resp.Body.Close()
	b, err := readAnswer(resp.Body, "the container credentials endpoint")
	if err != nil {
		return Credentials{}, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Code, Message string }
		detail := ""
		if json.Unmarshal(b, &e) == nil && e.Code != "" {
			detail = ": " + shortText(scrubSecrets(e.Code+": "+e.Message, Credentials{SessionToken: auth}))
		}
		return Credentials{}, statusError("the container credentials endpoint", resp.StatusCode, detail)
	}
	var c credentialJSON
	if err := json.Unmarshal(b, &c); err != nil {
		return Credentials{}, errors.New("the container credentials endpoint answered something other than credentials JSON")
	}
	return c.credentials(), nil
}

// processSource runs a profile's credential_process through the shell, as
// the AWS CLI does, and reads the credentials JSON it prints.
type processSource struct {
	command string
}

func (s *processSource) retrieve(ctx context.Context) (Credentials, error) {
	ctx, cancel := context.WithTimeout(ctx, processTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", s.command)
	var out bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &out, n: maxCredentialAnswer}
	// Its standard error is not passed on (the AWS CLI does): a process may
	// print a credential there, and nothing here shows one. A failure says
	// how to see it.
	cmd.Stderr = io.Discard
	// A child left holding stdout must not keep us waiting past the kill.
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return Credentials{}, &transientError{fmt.Errorf("credential_process did not finish in %v", processTimeout)}
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return Credentials{}, fmt.Errorf("credential_process failed: %s (its standard error is not shown, as it may hold credentials: run the command yourself to see it)", ee.ProcessState)
		}
		return Credentials{}, fmt.Errorf("credential_process: %w", err)
	}
	var c credentialJSON
	// Never the output in an error: it may hold keys.
	if out.Len() >= maxCredentialAnswer || json.Unmarshal(out.Bytes(), &c) != nil || c.Version != 1 {
		return Credentials{}, errors.New("credential_process printed something other than the AWS CLI's credentials JSON (Version 1, AccessKeyId, SecretAccessKey, SessionToken, Expiration)")
	}
	return c.credentials(), nil
}

// limitedWriter keeps the first n bytes written and drops the rest, so
// that a process printing without end cannot fill memory.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// scrubErr removes the values from err's message; a *url.Error may quote
// the request.
func scrubErr(err error, values ...string) error {
	msg := err.Error()
	for _, v := range values {
		if len(v) >= 4 {
			msg = strings.ReplaceAll(msg, v, redacted)
		}
	}
	if msg == err.Error() {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return &transientError{errors.New(msg)}
	}
	return errors.New(msg)
}
