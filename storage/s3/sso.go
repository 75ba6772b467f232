package s3

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Our own client of AWS IAM Identity Center (SSO), as the AWS CLI uses it
// after `aws sso login`: the access token it cached in
// ~/.aws/sso/cache/<sha1>.json buys the role's credentials from the SSO
// portal (GetRoleCredentials). An sso-session's token is renewed with its
// refresh token (SSO OIDC CreateToken) and written back, as the CLI does;
// a legacy profile (sso_start_url in the profile) cannot be, and a user
// whose session is over must run `aws sso login` again.

// ssoRefreshAhead is how long before its expiry a cached SSO access token
// is renewed (the AWS SDK's window).
const ssoRefreshAhead = 5 * time.Minute

// ssoSource gets a role's credentials with the cached SSO token.
type ssoSource struct {
	profile   string
	session   string // sso-session name; "" for a legacy profile
	startURL  string
	region    string // of the SSO portal
	accountID string
	roleName  string
	http      *http.Client
}

// ssoToken is the AWS CLI's token cache file; unknown fields are kept
// when it is written back.
type ssoToken struct {
	AccessToken           string    `json:"accessToken"`
	ExpiresAt             time.Time `json:"expiresAt"`
	RefreshToken          string    `json:"refreshToken,omitempty"`
	ClientID              string    `json:"clientId,omitempty"`
	ClientSecret          string    `json:"clientSecret,omitempty"`
	RegistrationExpiresAt time.Time `json:"registrationExpiresAt,omitzero"`
}

// cacheFile is where `aws sso login` left the token: named by the SHA-1
// of the session name, or of the start URL for a legacy profile.
func (s *ssoSource) cacheFile() string {
	key := s.startURL
	if s.session != "" {
		key = s.session
	}
	sum := sha1.Sum([]byte(key))
	return homeFile(".aws", "sso", "cache", hex.EncodeToString(sum[:])+".json")
}

func (s *ssoSource) loginHint() string {
	if s.session != "" {
		return "run aws sso login --sso-session " + s.session
	}
	return "run aws sso login --profile " + s.profile
}

func (s *ssoSource) retrieve(ctx context.Context) (Credentials, error) {
	tok, err := s.token(ctx)
	if err != nil {
		return Credentials{}, err
	}
	q := url.Values{"account_id": {s.accountID}, "role_name": {s.roleName}}
	ep := serviceEndpoint("SSO", "portal.sso", s.region)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep+"/federation/credentials?"+q.Encode(), nil)
	if err != nil {
		return Credentials{}, fmt.Errorf("SSO endpoint %q: %w", RedactUserinfo(ep), err)
	}
	req.Header.Set("X-Amz-Sso_bearer_token", tok)
	resp, err := s.http.Do(req)
	if err != nil {
		return Credentials{}, scrubErr(fmt.Errorf("SSO GetRoleCredentials: %w", err), tok)
	}
	defer resp.Body.Close()
	b, err := readAnswer(resp.Body, "SSO")
	if err != nil {
		return Credentials{}, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return Credentials{}, fmt.Errorf("the SSO portal refused the cached token (session over or signed out): %s", s.loginHint())
	}
	if resp.StatusCode != http.StatusOK {
		detail := ""
		if resp.StatusCode == http.StatusForbidden {
			detail = fmt.Sprintf(": no access to role %s in account %s", s.roleName, s.accountID)
		}
		return Credentials{}, statusError("SSO GetRoleCredentials", resp.StatusCode, detail)
	}
	var a struct {
		RoleCredentials struct {
			AccessKeyID     string `json:"accessKeyId"`
			SecretAccessKey string `json:"secretAccessKey"`
			SessionToken    string `json:"sessionToken"`
			Expiration      int64  `json:"expiration"` // milliseconds since 1970
		} `json:"roleCredentials"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return Credentials{}, errors.New("SSO GetRoleCredentials answered something other than its JSON")
	}
	rc := a.RoleCredentials
	c := Credentials{AccessKeyID: rc.AccessKeyID, SecretAccessKey: rc.SecretAccessKey, SessionToken: rc.SessionToken}
	if rc.Expiration > 0 {
		c.Expires = time.UnixMilli(rc.Expiration)
	}
	return c, nil
}

// token returns a valid cached access token, renewing an sso-session's
// when it is about to expire.
func (s *ssoSource) token(ctx context.Context) (string, error) {
	path := s.cacheFile()
	raw, err := readBoundedFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("no cached SSO token (%s): %s", path, s.loginHint())
		}
		return "", fmt.Errorf("read the cached SSO token: %w", err)
	}
	var t ssoToken
	if err := json.Unmarshal(raw, &t); err != nil || t.AccessToken == "" {
		return "", fmt.Errorf("the cached SSO token %s is not the AWS CLI's JSON: %s", path, s.loginHint())
	}
	now := time.Now()
	if now.Before(t.ExpiresAt.Add(-ssoRefreshAhead)) {
		return t.AccessToken, nil
	}
	renewable := s.session != "" && t.RefreshToken != "" && t.ClientID != "" && t.ClientSecret != "" &&
		(t.RegistrationExpiresAt.IsZero() || now.Before(t.RegistrationExpiresAt))
	if renewable {
		nt, err := s.refresh(ctx, t)
		if err == nil {
			// Written back for the AWS CLI and the next start; if that
			// fails the new token still works for this process.
			_ = writeSSOToken(path, raw, nt)
			return nt.AccessToken, nil
		}
		if now.Before(t.ExpiresAt) {
			return t.AccessToken, nil // renewal failed, the old one still works
		}
		return "", fmt.Errorf("the SSO session expired and could not be renewed (%v): %s", err, s.loginHint())
	}
	if now.Before(t.ExpiresAt) {
		return t.AccessToken, nil
	}
	return "", fmt.Errorf("the SSO session expired at %s: %s", t.ExpiresAt.UTC().Format(time.RFC3339), s.loginHint())
}

// refresh renews t with SSO OIDC CreateToken (grant refresh_token).
func (s *ssoSource) refresh(ctx context.Context, t ssoToken) (ssoToken, error) {
	body, _ := json.Marshal(map[string]string{"grantType": "refresh_token", "clientId": t.ClientID, "clientSecret": t.ClientSecret, "refreshToken": t.RefreshToken})
	ep := serviceEndpoint("SSO_OIDC", "oidc", s.region)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep+"/token", bytes.NewReader(body))
	if err != nil {
		return t, fmt.Errorf("SSO OIDC endpoint %q: %w", RedactUserinfo(ep), err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return t, scrubErr(fmt.Errorf("SSO OIDC CreateToken: %w", err), t.RefreshToken, t.ClientSecret)
	}
	defer resp.Body.Close()
	b, err := readAnswer(resp.Body, "SSO OIDC")
	if err != nil {
		return t, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		detail := ""
		// Only an OAuth error code is quoted: a server echoing the request
		// would put the client secret and refresh token in its answer.
		if json.Unmarshal(b, &e) == nil && oauthCode.MatchString(e.Error) {
			detail = ": " + e.Error
		}
		return t, statusError("SSO OIDC CreateToken", resp.StatusCode, detail)
	}
	var a struct {
		AccessToken  string `json:"accessToken"`
		ExpiresIn    int64  `json:"expiresIn"`
		RefreshToken string `json:"refreshToken"`
	}
	if json.Unmarshal(b, &a) != nil || a.AccessToken == "" || a.ExpiresIn <= 0 {
		return t, errors.New("SSO OIDC CreateToken answered something other than a token")
	}
	t.AccessToken, t.ExpiresAt = a.AccessToken, time.Now().Add(time.Duration(a.ExpiresIn)*time.Second).UTC()
	if a.RefreshToken != "" {
		t.RefreshToken = a.RefreshToken
	}
	return t, nil
}

// writeSSOToken writes t into the cache file the AWS CLI reads, keeping
// the fields we do not know, through a temporary file and a rename.
func writeSSOToken(path string, old []byte, t ssoToken) error {
	m := map[string]any{}
	json.Unmarshal(old, &m)
	m["accessToken"] = t.AccessToken
	m["expiresAt"] = t.ExpiresAt.Format(time.RFC3339)
	m["refreshToken"] = t.RefreshToken
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".walsync-sso-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// readBoundedFile reads a small file of the credential chain (a token),
// at most maxCredentialAnswer bytes.
func readBoundedFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAnswer(f, path)
}

// oauthCode is the form of an OAuth error code (invalid_grant, …).
var oauthCode = regexp.MustCompile(`^[A-Za-z_]{1,64}$`)
