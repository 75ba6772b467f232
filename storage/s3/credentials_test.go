package s3_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/storage/s3"
	"github.com/walsync/walsync/storage/storagetest"
)

// Each stand-in below is a local imitation of one AWS credential endpoint,
// reached the way the SDK is told to reach the real one on AWS. They hand
// out the key pair the test versitygw accepts, with no session token:
// versitygw (single root account) answers InvalidToken to any
// X-Amz-Security-Token with a permanent key, so a token would be refused
// by the server rather than tested (TestCredentialRotation tests tokens
// through a proxy that checks them).

// isolateCreds clears every AWS_ and LITESTREAM_ variable and points HOME
// at an empty directory; it returns HOME.
func isolateCreds(t *testing.T) string {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "LITESTREAM_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	// Nothing below may reach a real metadata service.
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1")
	return home
}

// issued is what a stand-in hands out.
type issued struct {
	KeyID, Secret, Token string
	Lifetime             time.Duration
}

func (i issued) expiration() time.Time { return time.Now().Add(i.Lifetime).UTC() }

// imdsStandIn serves IMDSv2: a token from PUT /latest/api/token, then the
// role and its credentials, only with that token (no IMDSv1).
func imdsStandIn(t *testing.T, cred func() issued) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	const tok = "imdsTOKENvalue-0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
			if r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == "" {
				http.Error(w, "no TTL", http.StatusBadRequest)
				return
			}
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			io.WriteString(w, tok)
			return
		}
		if r.Header.Get("X-Aws-Ec2-Metadata-Token") != tok {
			http.Error(w, "IMDSv1 is disabled", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/latest/meta-data/iam/security-credentials/":
			io.WriteString(w, "walsync-role\n")
		case "/latest/meta-data/iam/security-credentials/walsync-role":
			hits.Add(1)
			c := cred()
			json.NewEncoder(w).Encode(map[string]any{"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": c.KeyID,
				"SecretAccessKey": c.Secret, "Token": c.Token, "Expiration": c.expiration().Format(time.RFC3339), "LastUpdated": time.Now().UTC().Format(time.RFC3339)})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// containerStandIn serves ECS/EKS container credentials, only to a
// request carrying the authorization token.
func containerStandIn(t *testing.T, authToken string, cred func() issued) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != authToken {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"code":"AccessDenied","message":"bad authorization token"}`)
			return
		}
		hits.Add(1)
		c := cred()
		json.NewEncoder(w).Encode(map[string]any{"AccessKeyId": c.KeyID, "SecretAccessKey": c.Secret, "Token": c.Token,
			"Expiration": c.expiration().Format(time.RFC3339)})
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// stsStandIn answers AssumeRoleWithWebIdentity (when the web identity
// token matches) and AssumeRole (when signed with sourceKeyID).
func stsStandIn(t *testing.T, webToken, sourceKeyID string, cred func() issued) (*httptest.Server, *sync.Map) {
	return stsStandInSigned(t, webToken, sourceKeyID, "", cred)
}

// stsStandInSigned is stsStandIn that also checks AssumeRole's signature
// with sourceSecret, as STS does.
func stsStandInSigned(t *testing.T, webToken, sourceKeyID, sourceSecret string, cred func() issued) (*httptest.Server, *sync.Map) {
	t.Helper()
	var calls sync.Map // action -> *atomic.Int64
	count := func(a string) {
		v, _ := calls.LoadOrStore(a, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		action := r.Form.Get("Action")
		fail := func(code, msg string) {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>1</RequestId></ErrorResponse>`, code, msg)
		}
		switch action {
		case "AssumeRoleWithWebIdentity":
			if r.Form.Get("WebIdentityToken") != webToken || r.Form.Get("RoleArn") == "" {
				fail("InvalidIdentityToken", "the web identity token was not accepted")
				return
			}
		case "AssumeRole":
			if !strings.Contains(r.Header.Get("Authorization"), "Credential="+sourceKeyID+"/") {
				fail("AccessDenied", "not signed with the source profile's key")
				return
			}
			if sourceSecret != "" && !validSTSSignature(r, body, sourceKeyID, sourceSecret) {
				fail("SignatureDoesNotMatch", "the signature does not match")
				return
			}
		default:
			fail("InvalidAction", "unknown action")
			return
		}
		count(action)
		c := cred()
		fmt.Fprintf(w, `<%[1]sResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><%[1]sResult>
<Credentials><AccessKeyId>%[2]s</AccessKeyId><SecretAccessKey>%[3]s</SecretAccessKey><SessionToken>%[4]s</SessionToken><Expiration>%[5]s</Expiration></Credentials>
<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/walsync/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
</%[1]sResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></%[1]sResponse>`,
			action, c.KeyID, c.Secret, c.Token, c.expiration().Format(time.RFC3339))
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// validSTSSignature checks r's SigV4 signature for service sts with the
// AWS SDK's signer (an implementation independent of ours), over the
// headers r says it signed and the SHA-256 of body.
func validSTSSignature(r *http.Request, body []byte, keyID, secret string) bool {
	auth := r.Header.Get("Authorization")
	m := regexp.MustCompile(`Credential=[^/]+/\d{8}/([^/]+)/sts/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]+)`).FindStringSubmatch(auth)
	if m == nil {
		return false
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return false
	}
	req, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	for _, h := range strings.Split(m[2], ";") {
		if h != "host" {
			req.Header.Set(h, r.Header.Get(h))
		}
	}
	req.Header.Del("X-Amz-Date")
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret}, req,
		hex.EncodeToString(sum[:]), "sts", m[1], when)
	return err == nil && strings.HasSuffix(req.Header.Get("Authorization"), "Signature="+m[3])
}

func stsCalls(m *sync.Map, action string) int64 {
	v, ok := m.Load(action)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

// chainClient is a client for bucket at the test server with no
// credentials given: the chain finds them.
func chainClient(t *testing.T, s *testenv.S3Server, bucket string, logs io.Writer) *s3.Client {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	c, err := s3.New(s3.Config{Bucket: bucket, Prefix: "db", Endpoint: s.Endpoint, Region: s.Region, TempDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeAndList writes one LTX file with c and lists it back.
func writeAndList(t *testing.T, c *s3.Client, txid int) {
	t.Helper()
	ctx := context.Background()
	data := storagetest.LTX(t, ltx.TXID(txid), ltx.TXID(txid), 1, 4096, testTime, false)
	if _, err := c.WriteLTXFile(ctx, 0, ltx.TXID(txid), ltx.TXID(txid), bytes.NewReader(data)); err != nil {
		t.Fatalf("write with credentials from %s: %v", c.CredentialSource(), err)
	}
	it, err := c.LTXFiles(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.Next() {
		n++
	}
	if it.Err() != nil || n == 0 {
		t.Fatalf("list with credentials from %s: %d files, %v", c.CredentialSource(), n, it.Err())
	}
}

func TestCredentialSources(t *testing.T) {
	s := testenv.S3(t)
	root := func() issued { return issued{KeyID: s.AccessKey, Secret: s.SecretKey, Lifetime: time.Hour} }

	t.Run("EC2 instance metadata, IMDSv2", func(t *testing.T) {
		isolateCreds(t)
		imds, hits := imdsStandIn(t, root)
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
		c := chainClient(t, s, s.NewBucket(t), nil)
		writeAndList(t, c, 1)
		if !strings.Contains(c.CredentialSource(), "EC2 instance metadata") || hits.Load() != 1 {
			t.Fatalf("source %q, %d credential requests; want the instance metadata, once (cached)", c.CredentialSource(), hits.Load())
		}
	})

	t.Run("IMDSv1 only: refused unless asked for", func(t *testing.T) {
		isolateCreds(t)
		// A metadata service without tokens: PUT is not allowed, GETs
		// answer without a token.
		v1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.Method == http.MethodPut:
				w.WriteHeader(http.StatusForbidden)
			case strings.HasSuffix(r.URL.Path, "/security-credentials/"):
				io.WriteString(w, "walsync-role")
			default:
				c := root()
				json.NewEncoder(w).Encode(map[string]any{"Code": "Success", "AccessKeyId": c.KeyID, "SecretAccessKey": c.Secret, "Expiration": c.expiration()})
			}
		}))
		defer v1.Close()
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", v1.URL)
		c := chainClient(t, s, s.NewBucket(t), nil)
		_, err := c.ObtainCredentials(context.Background())
		if err == nil {
			t.Fatal("credentials were taken from IMDSv1 without AWS_EC2_METADATA_V1_DISABLED=false")
		}
		t.Setenv("AWS_EC2_METADATA_V1_DISABLED", "false")
		writeAndList(t, chainClient(t, s, s.NewBucket(t), nil), 1)
	})

	t.Run("container credentials, full URI and token file", func(t *testing.T) {
		home := isolateCreds(t)
		const authToken = "containerAUTHtoken-0123456789"
		srv, hits := containerStandIn(t, authToken, root)
		t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", srv.URL+"/v2/credentials")
		t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", writeTextFile(t, filepath.Join(home, "token"), authToken))
		c := chainClient(t, s, s.NewBucket(t), nil)
		writeAndList(t, c, 1)
		if !strings.Contains(c.CredentialSource(), "AWS_CONTAINER_CREDENTIALS_FULL_URI") || hits.Load() != 1 {
			t.Fatalf("source %q, %d credential requests", c.CredentialSource(), hits.Load())
		}
	})

	t.Run("web identity (EKS IRSA) via STS", func(t *testing.T) {
		home := isolateCreds(t)
		const webToken = "eyWEBidentityTOKEN.0123456789"
		sts, calls := stsStandIn(t, webToken, "", root)
		t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
		t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", writeTextFile(t, filepath.Join(home, "web-token"), webToken))
		t.Setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/walsync")
		c := chainClient(t, s, s.NewBucket(t), nil)
		writeAndList(t, c, 1)
		if !strings.Contains(c.CredentialSource(), "web identity") || stsCalls(calls, "AssumeRoleWithWebIdentity") != 1 {
			t.Fatalf("source %q, %d STS calls", c.CredentialSource(), stsCalls(calls, "AssumeRoleWithWebIdentity"))
		}
	})

	t.Run("assume role from a source profile via STS", func(t *testing.T) {
		home := isolateCreds(t)
		sts, calls := stsStandInSigned(t, "", "AKIDSOURCEPROFILE", "secretSOURCEprofile", root)
		t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
		writeTextFile(t, filepath.Join(home, ".aws", "credentials"), "[base]\naws_access_key_id = AKIDSOURCEPROFILE\naws_secret_access_key = secretSOURCEprofile\n")
		writeTextFile(t, filepath.Join(home, ".aws", "config"), "[profile app]\nrole_arn = arn:aws:iam::123456789012:role/walsync\nsource_profile = base\n")
		t.Setenv("AWS_PROFILE", "app")
		c := chainClient(t, s, s.NewBucket(t), nil)
		writeAndList(t, c, 1)
		if !strings.Contains(c.CredentialSource(), "assume role") || stsCalls(calls, "AssumeRole") != 1 {
			t.Fatalf("source %q, %d AssumeRole calls", c.CredentialSource(), stsCalls(calls, "AssumeRole"))
		}
	})

	t.Run("credential_process", func(t *testing.T) {
		home := isolateCreds(t)
		script := writeTextFile(t, filepath.Join(home, "creds.sh"), fmt.Sprintf("#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"%s\", \"SecretAccessKey\": \"%s\"}'\n", s.AccessKey, s.SecretKey))
		os.Chmod(script, 0o755)
		writeTextFile(t, filepath.Join(home, ".aws", "config"), "[default]\ncredential_process = "+script+"\n")
		c := chainClient(t, s, s.NewBucket(t), nil)
		writeAndList(t, c, 1)
		if !strings.Contains(c.CredentialSource(), "credential_process") {
			t.Fatalf("source %q", c.CredentialSource())
		}
	})
}

// The chain's order, one source taken away at a time: every source is
// set up at once, each stand-in handing out its own key ID.
func TestCredentialChainOrder(t *testing.T) {
	home := isolateCreds(t)
	const webToken = "eyORDERwebTOKEN"
	give := func(id string) func() issued {
		return func() issued { return issued{KeyID: id, Secret: "secret" + id, Lifetime: time.Hour} }
	}
	imds, _ := imdsStandIn(t, give("AKIDIMDS"))
	ctr, _ := containerStandIn(t, "tok", give("AKIDCONTAINER"))
	var stsKey atomic.Value
	stsKey.Store("AKIDWEBIDENTITY")
	sts, _ := stsStandIn(t, webToken, "AKIDSOURCE", func() issued { return give(stsKey.Load().(string))() })
	proc := writeTextFile(t, filepath.Join(home, "p.sh"), "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKIDPROCESS\", \"SecretAccessKey\": \"secretPROCESS\"}'\n")
	os.Chmod(proc, 0o755)
	creds := filepath.Join(home, ".aws", "credentials")
	config := filepath.Join(home, ".aws", "config")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ctr.URL)
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok")
	t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)

	keyID := func(t *testing.T) (string, string) {
		t.Helper()
		c, err := s3.New(s3.Config{Bucket: "b", Endpoint: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.ObtainCredentials(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", st.Source, err)
		}
		return s3.CredentialKeyIDForTest(c), st.Source
	}
	for _, step := range []struct {
		setup  func()
		wantID string
		source string
	}{
		{func() {
			t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "secretENV")
			t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", writeTextFile(t, filepath.Join(home, "wt"), webToken))
			t.Setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/w")
			writeTextFile(t, creds, "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = secretFILE\n")
			writeTextFile(t, config, "[default]\ncredential_process = "+proc+"\n")
		}, "AKIDENV", "environment"},
		{func() { os.Unsetenv("AWS_ACCESS_KEY_ID"); os.Unsetenv("AWS_SECRET_ACCESS_KEY") }, "AKIDWEBIDENTITY", "web identity"},
		{func() { os.Unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE"); os.Unsetenv("AWS_ROLE_ARN") }, "AKIDFILE", "shared credentials file"},
		{func() { os.Remove(creds) }, "AKIDPROCESS", "credential_process"},
		// Keys in the config file come after credential_process, as in
		// the AWS CLI (aws-sdk-go-v2 takes them first).
		{func() {
			writeTextFile(t, config, "[default]\naws_access_key_id = AKIDCONFIG\naws_secret_access_key = secretCONFIG\ncredential_process = "+proc+"\n")
		}, "AKIDPROCESS", "credential_process"},
		{func() {
			writeTextFile(t, config, "[default]\ncredential_process = "+proc+"\n")
		}, "AKIDPROCESS", "credential_process"},
		{func() { os.Remove(config) }, "AKIDCONTAINER", "container credentials"},
		{func() { os.Unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") }, "AKIDIMDS", "EC2 instance metadata"},
	} {
		step.setup()
		if id, src := keyID(t); id != step.wantID || !strings.Contains(src, step.source) {
			t.Fatalf("got key %s from %q; want %s from %s", id, src, step.wantID, step.source)
		}
	}

	// A profile that assumes a role comes before the environment's web
	// identity, as in the AWS CLI.
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", writeTextFile(t, filepath.Join(home, "wt"), webToken))
	t.Setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/w")
	writeTextFile(t, creds, "[base]\naws_access_key_id = AKIDSOURCE\naws_secret_access_key = secretSOURCE\n")
	writeTextFile(t, config, "[default]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = base\n")
	stsKey.Store("AKIDASSUMED")
	if id, src := keyID(t); id != "AKIDASSUMED" || !strings.Contains(src, "assume role") {
		t.Fatalf("with a role_arn profile and web identity: key %s from %q, want the assumed role", id, src)
	}
}

// No credential value from any source reaches an error, a log line or the
// status, whatever the source answers.
func TestCredentialLeaks(t *testing.T) {
	s := testenv.S3(t)
	const secret = "leakSECRETvalue0123456789abcdef"
	const token = "leakTOKENvalue0123456789abcdef"
	check := func(t *testing.T, c *s3.Client, logs *bytes.Buffer, extra ...string) {
		t.Helper()
		_, err := c.ObtainCredentials(context.Background())
		if err == nil {
			t.Fatal("a broken source gave credentials")
		}
		st := c.CredentialStatus()
		res := c.Check(context.Background(), s3.CheckOptions{})
		all := err.Error() + "\n" + logs.String() + "\n" + fmt.Sprint(st) + "\n" + strings.Join(res.Lines(), "\n")
		for _, v := range append([]string{secret, token}, extra...) {
			if strings.Contains(all, v) {
				t.Fatalf("a credential value is shown:\n%s", all)
			}
		}
		if !strings.Contains(err.Error(), st.Source) || st.Failures == 0 || st.LastError == "" {
			t.Fatalf("error %q or status %+v does not name the source and the failure", err, st)
		}
	}

	t.Run("credential_process printing keys that are not JSON", func(t *testing.T) {
		home := isolateCreds(t)
		script := writeTextFile(t, filepath.Join(home, "creds.sh"), "#!/bin/sh\necho 'AccessKeyId=AKIDLEAK SecretAccessKey="+secret+" SessionToken="+token+"'\n")
		os.Chmod(script, 0o755)
		writeTextFile(t, filepath.Join(home, ".aws", "config"), "[default]\ncredential_process = "+script+"\n")
		var logs bytes.Buffer
		check(t, chainClient(t, s, s.NewBucket(t), &logs), &logs)
	})

	t.Run("container endpoint refusing its token", func(t *testing.T) {
		home := isolateCreds(t)
		srv, _ := containerStandIn(t, "the-right-token", func() issued { return issued{KeyID: "AKIDLEAK", Secret: secret, Token: token} })
		t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", srv.URL)
		t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", writeTextFile(t, filepath.Join(home, "token"), "wrongAUTHtoken0123456789"))
		var logs bytes.Buffer
		check(t, chainClient(t, s, s.NewBucket(t), &logs), &logs, "wrongAUTHtoken0123456789")
	})

	t.Run("SSO portal refusing the cached token", func(t *testing.T) {
		home := isolateCreds(t)
		var accepted sync.Map
		srv, _ := ssoStandIn(t, "r", "n", &accepted, func() issued { return issued{KeyID: "AKIDLEAK", Secret: secret, Token: token} })
		t.Setenv("AWS_ENDPOINT_URL_SSO", srv.URL)
		t.Setenv("AWS_ENDPOINT_URL_SSO_OIDC", srv.URL)
		writeTextFile(t, filepath.Join(home, ".aws", "config"), "[default]\nsso_session = s\nsso_account_id = 123456789012\nsso_role_name = walsync\n[sso-session s]\nsso_start_url = https://x.example/start\nsso_region = eu-west-1\n")
		ssoCacheFile(t, home, "s", map[string]any{"accessToken": "ssoLEAKaccess0123456789", "expiresAt": time.Now().Add(time.Minute).UTC().Format(time.RFC3339),
			"refreshToken": "ssoLEAKrefresh0123456789", "clientId": "cid", "clientSecret": "ssoLEAKclient0123456789"})
		var logs bytes.Buffer
		check(t, chainClient(t, s, s.NewBucket(t), &logs), &logs, "ssoLEAKaccess0123456789", "ssoLEAKrefresh0123456789", "ssoLEAKclient0123456789")
	})

	t.Run("STS refusing AssumeRole with a source profile's keys", func(t *testing.T) {
		home := isolateCreds(t)
		sts, _ := stsStandIn(t, "", "AKIDOTHER", func() issued { return issued{KeyID: "AKIDLEAK", Secret: secret, Token: token} })
		t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
		writeTextFile(t, filepath.Join(home, ".aws", "credentials"), "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = srcLEAKsecret0123456789\n")
		writeTextFile(t, filepath.Join(home, ".aws", "config"), "[default]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = base\n")
		var logs bytes.Buffer
		check(t, chainClient(t, s, s.NewBucket(t), &logs), &logs, "srcLEAKsecret0123456789")
	})

	t.Run("STS refusing the web identity token", func(t *testing.T) {
		home := isolateCreds(t)
		sts, _ := stsStandIn(t, "the-right-token", "", func() issued { return issued{KeyID: "AKIDLEAK", Secret: secret, Token: token} })
		t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
		t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", writeTextFile(t, filepath.Join(home, "web-token"), "eyWRONGwebTOKEN0123456789"))
		t.Setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/walsync")
		var logs bytes.Buffer
		c := chainClient(t, s, s.NewBucket(t), &logs)
		check(t, c, &logs, "eyWRONGwebTOKEN0123456789")
		// A refusal is permanent: a storage call fails at once, without
		// retries.
		start := time.Now()
		_, err := c.HasFiles(context.Background())
		var ce *s3.CredentialsError
		if !errors.As(err, &ce) || !ce.Permanent || time.Since(start) > 2*time.Second {
			t.Fatalf("storage call with a refused web identity: %v after %v; want a permanent CredentialsError at once", err, time.Since(start))
		}
	})
}

func writeTextFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ssoStandIn serves the SSO portal's GetRoleCredentials to a request
// carrying an accepted bearer token, and SSO OIDC's CreateToken with a
// refresh token, which makes newToken accepted.
func ssoStandIn(t *testing.T, refreshToken, newToken string, accepted *sync.Map, cred func() issued) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var refreshes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/federation/credentials":
			if _, ok := accepted.Load(r.Header.Get("X-Amz-Sso_bearer_token")); !ok {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"message":"Session token not found or invalid"}`)
				return
			}
			if r.URL.Query().Get("account_id") != "123456789012" || r.URL.Query().Get("role_name") != "walsync" {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			c := cred()
			json.NewEncoder(w).Encode(map[string]any{"roleCredentials": map[string]any{"accessKeyId": c.KeyID, "secretAccessKey": c.Secret,
				"sessionToken": c.Token, "expiration": c.expiration().UnixMilli()}})
		case r.Method == http.MethodPost && r.URL.Path == "/token":
			var in map[string]string
			json.NewDecoder(r.Body).Decode(&in)
			if in["grantType"] != "refresh_token" || in["refreshToken"] != refreshToken || in["clientId"] == "" || in["clientSecret"] == "" {
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, `{"error":"invalid_grant"}`)
				return
			}
			refreshes.Add(1)
			accepted.Store(newToken, true)
			json.NewEncoder(w).Encode(map[string]any{"accessToken": newToken, "expiresIn": 3600, "refreshToken": refreshToken + "2", "tokenType": "Bearer"})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &refreshes
}

// ssoCacheFile writes the token cache `aws sso login` leaves for key
// (the sso-session name, or the start URL of a legacy profile).
func ssoCacheFile(t *testing.T, home, key string, tok map[string]any) string {
	t.Helper()
	sum := sha1.Sum([]byte(key))
	b, _ := json.Marshal(tok)
	return writeTextFile(t, filepath.Join(home, ".aws", "sso", "cache", hex.EncodeToString(sum[:])+".json"), string(b))
}

func TestCredentialsSSO(t *testing.T) {
	s := testenv.S3(t)
	root := func() issued { return issued{KeyID: s.AccessKey, Secret: s.SecretKey, Lifetime: time.Hour} }
	const sessionConfig = "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = walsync\nregion = " +
		"us-east-1\n[sso-session corp]\nsso_start_url = https://corp.example/start\nsso_region = eu-west-1\n"

	t.Run("sso-session with a valid token", func(t *testing.T) {
		home := isolateCreds(t)
		var accepted sync.Map
		accepted.Store("ssoACCESStoken-valid", true)
		srv, refreshes := ssoStandIn(t, "r", "n", &accepted, root)
		t.Setenv("AWS_ENDPOINT_URL_SSO", srv.URL)
		writeTextFile(t, filepath.Join(home, ".aws", "config"), sessionConfig)
		ssoCacheFile(t, home, "corp", map[string]any{"accessToken": "ssoACCESStoken-valid", "expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
		t.Setenv("AWS_PROFILE", "dev")
		c := chainClient(t, s, s.NewBucket(t), nil)
		writeAndList(t, c, 1)
		if !strings.Contains(c.CredentialSource(), "AWS SSO (profile dev)") || refreshes.Load() != 0 {
			t.Fatalf("source %q, %d token refreshes", c.CredentialSource(), refreshes.Load())
		}
	})

	t.Run("sso-session with an expired token: renewed and written back", func(t *testing.T) {
		home := isolateCreds(t)
		var accepted sync.Map
		srv, refreshes := ssoStandIn(t, "ssoREFRESHtoken-0123", "ssoACCESStoken-renewed", &accepted, root)
		t.Setenv("AWS_ENDPOINT_URL_SSO", srv.URL)
		t.Setenv("AWS_ENDPOINT_URL_SSO_OIDC", srv.URL)
		writeTextFile(t, filepath.Join(home, ".aws", "config"), sessionConfig)
		cache := ssoCacheFile(t, home, "corp", map[string]any{"accessToken": "ssoACCESStoken-old", "expiresAt": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339),
			"refreshToken": "ssoREFRESHtoken-0123", "clientId": "cid", "clientSecret": "ssoCLIENTsecret", "region": "eu-west-1", "startUrl": "https://corp.example/start",
			"registrationExpiresAt": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)})
		t.Setenv("AWS_PROFILE", "dev")
		writeAndList(t, chainClient(t, s, s.NewBucket(t), nil), 1)
		var after map[string]any
		b, _ := os.ReadFile(cache)
		json.Unmarshal(b, &after)
		if refreshes.Load() != 1 || after["accessToken"] != "ssoACCESStoken-renewed" || after["refreshToken"] != "ssoREFRESHtoken-01232" || after["startUrl"] != "https://corp.example/start" {
			t.Fatalf("%d refreshes; cache file now %s", refreshes.Load(), b)
		}
	})

	t.Run("legacy profile with an expired token: run aws sso login", func(t *testing.T) {
		home := isolateCreds(t)
		var accepted sync.Map
		srv, _ := ssoStandIn(t, "r", "n", &accepted, root)
		t.Setenv("AWS_ENDPOINT_URL_SSO", srv.URL)
		writeTextFile(t, filepath.Join(home, ".aws", "config"), "[default]\nsso_start_url = https://corp.example/start\nsso_region = eu-west-1\nsso_account_id = 123456789012\nsso_role_name = walsync\n")
		ssoCacheFile(t, home, "https://corp.example/start", map[string]any{"accessToken": "ssoACCESStoken-expired", "expiresAt": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)})
		c := chainClient(t, s, s.NewBucket(t), nil)
		_, err := c.ObtainCredentials(context.Background())
		var ce *s3.CredentialsError
		if !errors.As(err, &ce) || !ce.Permanent || !strings.Contains(err.Error(), "aws sso login --profile default") || strings.Contains(err.Error(), "ssoACCESStoken") {
			t.Fatalf("expired legacy SSO token: %v; want a permanent error saying to run aws sso login, without the token", err)
		}
	})
}
