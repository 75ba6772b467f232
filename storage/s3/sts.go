package s3

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Our own client of the two STS actions the credential chain needs,
// AssumeRole (signed with the source credentials, our signer) and
// AssumeRoleWithWebIdentity (unsigned): each a form POST answered in XML.
// The SDK's STS client would link its whole service machinery into every
// walsync process.

// stsVersion is the STS API version the query protocol names.
const stsVersion = "2011-06-15"

// defaultAssumeRoleDuration is the AWS SDK's session length for
// AssumeRole when the profile sets no duration_seconds.
const defaultAssumeRoleDuration = 15 * time.Minute

// remoteHTTP returns a client for STS, SSO and an https container
// endpoint: the environment's proxy, the CA bundle's roots if any.
func remoteHTTP(tlsCfg *tls.Config) *http.Client {
	return &http.Client{
		Timeout: remoteTimeout,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSClientConfig:     tlsCfg,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConns:        2,
			IdleConnTimeout:     30 * time.Second,
			ForceAttemptHTTP2:   false,
		},
	}
}

// serviceEndpoint returns the endpoint of an AWS service the chain calls:
// AWS_ENDPOINT_URL_<ID>, else AWS_ENDPOINT_URL (both unless
// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true), else AWS's endpoint in region,
// https://<prefix>.<region>.amazonaws.com (.com.cn in China).
func serviceEndpoint(id, prefix, region string) string {
	if !strings.EqualFold(os.Getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		if ep := firstEnv("AWS_ENDPOINT_URL_"+id, "AWS_ENDPOINT_URL"); ep != "" {
			return strings.TrimRight(ep, "/")
		}
	}
	suffix := "amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		suffix = "amazonaws.com.cn"
	}
	return "https://" + prefix + "." + region + "." + suffix
}

// stsClient calls STS in region.
type stsClient struct {
	region string
	http   *http.Client
}

func (s *stsClient) endpoint() string {
	region := s.region
	if region == "" || region == "aws-global" {
		region = DefaultRegion
	}
	return serviceEndpoint("STS", "sts", region)
}

// assumeRoleInput is a role to assume and its profile's options.
type assumeRoleInput struct {
	RoleARN     string
	SessionName string // empty: walsync-<nanoseconds>
	ExternalID  string
	Duration    time.Duration // zero: STS's default (web identity) or 15 minutes (AssumeRole)
}

func (in assumeRoleInput) form(action string) url.Values {
	f := url.Values{"Action": {action}, "Version": {stsVersion}, "RoleArn": {in.RoleARN}}
	name := in.SessionName
	if name == "" {
		name = "walsync-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	}
	f.Set("RoleSessionName", name)
	if in.Duration > 0 {
		f.Set("DurationSeconds", strconv.Itoa(int(in.Duration/time.Second)))
	}
	if in.ExternalID != "" {
		f.Set("ExternalId", in.ExternalID)
	}
	return f
}

// assumeRoleWithWebIdentity exchanges an OIDC token (EKS IRSA) for the
// role's credentials.
func (s *stsClient) assumeRoleWithWebIdentity(ctx context.Context, in assumeRoleInput, token string) (Credentials, error) {
	f := in.form("AssumeRoleWithWebIdentity")
	f.Set("WebIdentityToken", token)
	return s.call(ctx, f, nil, token)
}

// assumeRole gets the role's credentials, signing with src.
func (s *stsClient) assumeRole(ctx context.Context, in assumeRoleInput, src Credentials) (Credentials, error) {
	if in.Duration == 0 {
		in.Duration = defaultAssumeRoleDuration
	}
	return s.call(ctx, in.form("AssumeRole"), &src, "")
}

// stsAnswer is the part of both actions' answers we read.
type stsAnswer struct {
	AssumeRole                stsCredentials `xml:"AssumeRoleResult>Credentials"`
	AssumeRoleWithWebIdentity stsCredentials `xml:"AssumeRoleWithWebIdentityResult>Credentials"`
}

type stsCredentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
}

// stsRetryable reports the STS error codes that asking again may cure; a
// web identity token file is replaced before its token expires (kubelet,
// ECS), so the next read may hold a fresh one.
func stsRetryable(code string) bool {
	switch code {
	case "Throttling", "IDPCommunicationError", "ExpiredTokenException", "ServiceUnavailable", "InternalFailure":
		return true
	}
	return false
}

// call posts form, signed with creds unless nil. secret is a value sent
// that no error may repeat (the web identity token).
func (s *stsClient) call(ctx context.Context, form url.Values, creds *Credentials, secret string) (Credentials, error) {
	action := form.Get("Action")
	ep := s.endpoint()
	body := form.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep+"/", strings.NewReader(body))
	if err != nil {
		return Credentials{}, fmt.Errorf("STS endpoint %q: %w", RedactUserinfo(ep), err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if creds != nil {
		sum := sha256.Sum256([]byte(body))
		region := s.region
		if region == "" || region == "aws-global" {
			region = DefaultRegion
		}
		(&signer{service: "sts"}).sign(req, *creds, region, hex.EncodeToString(sum[:]), time.Now())
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return Credentials{}, scrubErr(fmt.Errorf("STS %s: %w", action, err), secret)
	}
	defer resp.Body.Close()
	b, err := readAnswer(resp.Body, "STS")
	if err != nil {
		return Credentials{}, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Code    string `xml:"Error>Code"`
			Message string `xml:"Error>Message"`
		}
		detail := ""
		if xml.Unmarshal(b, &e) == nil && e.Code != "" {
			detail = ": " + shortText(scrubSecrets(e.Code+": "+e.Message, Credentials{SessionToken: secret}))
		}
		err := statusError("STS "+action, resp.StatusCode, detail)
		if stsRetryable(e.Code) {
			err = &transientError{err}
		}
		return Credentials{}, err
	}
	var a stsAnswer
	if err := xml.Unmarshal(b, &a); err != nil {
		return Credentials{}, fmt.Errorf("STS %s answered something other than its XML", action)
	}
	c := a.AssumeRole
	if action == "AssumeRoleWithWebIdentity" {
		c = a.AssumeRoleWithWebIdentity
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return Credentials{}, errors.New("STS " + action + " answered without credentials")
	}
	return Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken, Expires: c.Expiration}, nil
}
