package s3

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// isolateEnv clears every variable the client reads and points HOME at an
// empty directory, so that neither the machine's environment nor its ~/.aws
// reaches the test. It returns the new HOME.
func isolateEnv(t *testing.T) string {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "LITESTREAM_") {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	return home
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func writeTestFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var staticCreds = &Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secretTEST", Source: "test"}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, bucket, prefix string
	}{
		{"s3://bucket/prefix", "bucket", "prefix"},
		{"s3://bucket/a/b/c/", "bucket", "a/b/c"},
		{"s3://bucket", "bucket", ""},
		{"s3://bucket/", "bucket", ""},
		{"s3://my.dotted-bucket/db", "my.dotted-bucket", "db"},
		{"s3://bucket/my dir/ü", "bucket", "my dir/ü"},
	} {
		bucket, prefix, err := ParseURL(tc.in)
		if err != nil || bucket != tc.bucket || prefix != tc.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q", tc.in, bucket, prefix, err, tc.bucket, tc.prefix)
		}
	}
	for _, in := range []string{
		"", "bucket/prefix", "http://bucket/prefix", "https://bucket/prefix", "file:///tmp/x",
		"gs://bucket/x", "s3:///prefix", "s3:bucket", "s3://",
	} {
		if b, p, err := ParseURL(in); err == nil {
			t.Errorf("ParseURL(%q) = %q, %q; want an error", in, b, p)
		} else if !strings.Contains(err.Error(), "s3://bucket") {
			t.Errorf("ParseURL(%q): error %q does not show the expected form", in, err)
		}
	}
	// Credentials in the URL are refused, and never repeated back, whatever
	// else is wrong with the URL.
	const secret = "hunter2SECRETvalue"
	for _, in := range []string{
		"s3://AKIDEXAMPLE:" + secret + "@bucket/db",
		"s3://" + secret + "@bucket/db",
		"s3://AKIDEXAMPLE:" + secret + "@/db",
		"http://AKIDEXAMPLE:" + secret + "@bucket/db",
		"s3://AKIDEXAMPLE:" + secret + "%zz@bucket/db",
		"s3://AKIDEXAMPLE:" + secret + "@bucket:port/db",
	} {
		_, _, err := ParseURL(in)
		if err == nil {
			t.Errorf("ParseURL(%q) accepted credentials", in)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("ParseURL(%q): error %q repeats the secret", in, err)
		}
	}
	_, _, err := ParseURL("s3://AKIDEXAMPLE:" + secret + "@bucket/db")
	if err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("credentials in the URL: %v, want a hint naming AWS_ACCESS_KEY_ID", err)
	}
}

func TestResolveEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       map[string]string
		cfg       Config
		endpoint  string
		region    string
		pathStyle bool
		url       string // of key "db/k"
	}{
		{
			name: "AWS default", cfg: Config{Bucket: "b"},
			endpoint: "https://s3.us-east-1.amazonaws.com", region: "us-east-1",
			url: "https://b.s3.us-east-1.amazonaws.com/db/k",
		},
		{
			name: "AWS region from env", env: map[string]string{"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "ap-south-1"},
			cfg:      Config{Bucket: "b"},
			endpoint: "https://s3.eu-west-3.amazonaws.com", region: "eu-west-3",
			url: "https://b.s3.eu-west-3.amazonaws.com/db/k",
		},
		{
			name: "AWS_DEFAULT_REGION", env: map[string]string{"AWS_DEFAULT_REGION": "ap-south-1"},
			cfg:      Config{Bucket: "b"},
			endpoint: "https://s3.ap-south-1.amazonaws.com", region: "ap-south-1",
			url: "https://b.s3.ap-south-1.amazonaws.com/db/k",
		},
		{
			name: "dotted bucket on AWS is path-style", cfg: Config{Bucket: "my.bucket", Region: "us-west-2"},
			endpoint: "https://s3.us-west-2.amazonaws.com", region: "us-west-2", pathStyle: true,
			url: "https://s3.us-west-2.amazonaws.com/my.bucket/db/k",
		},
		{
			name: "bare host gets https", cfg: Config{Bucket: "b", Endpoint: "s3.us-west-004.backblazeb2.com"},
			endpoint: "https://s3.us-west-004.backblazeb2.com", region: "us-east-1", pathStyle: true,
			url: "https://s3.us-west-004.backblazeb2.com/b/db/k",
		},
		{
			name: "custom endpoint", cfg: Config{Bucket: "b", Endpoint: "http://127.0.0.1:9000"},
			endpoint: "http://127.0.0.1:9000", region: "us-east-1", pathStyle: true,
			url: "http://127.0.0.1:9000/b/db/k",
		},
		{
			name: "custom endpoint, virtual-hosted forced", cfg: Config{Bucket: "b", Endpoint: "https://fly.storage.tigris.dev", ForcePathStyle: new(bool)},
			endpoint: "https://fly.storage.tigris.dev", region: "us-east-1",
			url: "https://b.fly.storage.tigris.dev/db/k",
		},
		{
			name: "AWS_ENDPOINT_URL_S3 beats AWS_ENDPOINT_URL",
			env:  map[string]string{"AWS_ENDPOINT_URL_S3": "http://s3-specific:1", "AWS_ENDPOINT_URL": "http://generic:2"},
			cfg:  Config{Bucket: "b"}, endpoint: "http://s3-specific:1", region: "us-east-1", pathStyle: true,
			url: "http://s3-specific:1/b/db/k",
		},
		{
			name: "AWS_ENDPOINT_URL alone", env: map[string]string{"AWS_ENDPOINT_URL": "http://generic:2"},
			cfg: Config{Bucket: "b"}, endpoint: "http://generic:2", region: "us-east-1", pathStyle: true,
			url: "http://generic:2/b/db/k",
		},
		{
			name: "Config.Endpoint beats the environment", env: map[string]string{"AWS_ENDPOINT_URL_S3": "http://s3-specific:1"},
			cfg: Config{Bucket: "b", Endpoint: "https://minio.example:9000"}, endpoint: "https://minio.example:9000", region: "us-east-1", pathStyle: true,
			url: "https://minio.example:9000/b/db/k",
		},
		{
			name: "R2 is region auto", cfg: Config{Bucket: "b", Endpoint: "https://0123abcd.r2.cloudflarestorage.com"},
			endpoint: "https://0123abcd.r2.cloudflarestorage.com", region: "auto", pathStyle: true,
			url: "https://0123abcd.r2.cloudflarestorage.com/b/db/k",
		},
		{
			name: "R2 with an explicit region", cfg: Config{Bucket: "b", Region: "wnam", Endpoint: "https://0123abcd.r2.cloudflarestorage.com"},
			endpoint: "https://0123abcd.r2.cloudflarestorage.com", region: "wnam", pathStyle: true,
			url: "https://0123abcd.r2.cloudflarestorage.com/b/db/k",
		},
		{
			name: "explicit AWS endpoint stays virtual-hosted", cfg: Config{Bucket: "b", Region: "eu-central-1", Endpoint: "https://s3.eu-central-1.amazonaws.com"},
			endpoint: "https://s3.eu-central-1.amazonaws.com", region: "eu-central-1",
			url: "https://b.s3.eu-central-1.amazonaws.com/db/k",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg := tc.cfg
			cfg.Credentials = staticCreds
			r, err := resolve(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.endpoint.String(); got != tc.endpoint {
				t.Errorf("endpoint %q, want %q", got, tc.endpoint)
			}
			if r.Region != tc.region {
				t.Errorf("region %q, want %q", r.Region, tc.region)
			}
			if r.pathStyle != tc.pathStyle {
				t.Errorf("path style %v, want %v", r.pathStyle, tc.pathStyle)
			}
			if got := newStore(r).url("db/k", nil).String(); got != tc.url {
				t.Errorf("object URL %q, want %q", got, tc.url)
			}
		})
	}

	t.Run("region from the profile's config", func(t *testing.T) {
		home := isolateEnv(t)
		writeTestFile(t, filepath.Join(home, ".aws", "config"), "[default]\nregion = us-west-1\n\n[profile prod]\nregion = eu-north-1\n")
		r, err := resolve(Config{Bucket: "b", Credentials: staticCreds})
		if err != nil || r.Region != "us-west-1" {
			t.Fatalf("default profile: region %q, %v; want us-west-1", r.Region, err)
		}
		t.Setenv("AWS_PROFILE", "prod")
		r, err = resolve(Config{Bucket: "b", Credentials: staticCreds})
		if err != nil || r.Region != "eu-north-1" || r.endpoint.Host != "s3.eu-north-1.amazonaws.com" {
			t.Fatalf("profile prod: region %q, endpoint %v, %v; want eu-north-1", r.Region, r.endpoint, err)
		}
		t.Setenv("AWS_REGION", "sa-east-1")
		if r, err = resolve(Config{Bucket: "b", Credentials: staticCreds}); err != nil || r.Region != "sa-east-1" {
			t.Fatalf("AWS_REGION does not beat the profile: %q, %v", r.Region, err)
		}
	})

	t.Run("invalid", func(t *testing.T) {
		isolateEnv(t)
		for _, ep := range []string{"ftp://host", "http://", "://x", "https://:443"} {
			if _, err := resolve(Config{Bucket: "b", Endpoint: ep, Credentials: staticCreds}); err == nil || !strings.Contains(err.Error(), "invalid endpoint") {
				t.Errorf("endpoint %q: %v, want an invalid endpoint error", ep, err)
			}
		}
		if _, err := resolve(Config{Credentials: staticCreds}); err == nil || !strings.Contains(err.Error(), "bucket") {
			t.Errorf("no bucket: %v", err)
		}
		if _, err := resolve(Config{Bucket: "b", Credentials: staticCreds, PartSize: 1 << 20}); err == nil || !strings.Contains(err.Error(), "5 MiB") {
			t.Errorf("1 MiB parts: %v", err)
		}
	})

	t.Run("defaults", func(t *testing.T) {
		isolateEnv(t)
		r, err := resolve(Config{Bucket: "b", Prefix: "/db/", Credentials: staticCreds, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		if r.Prefix != "db" || r.PartSize != DefaultPartSize || r.MultipartThreshold != DefaultMultipartThreshold ||
			r.MaxRetries != 0 || r.RetryBaseDelay != DefaultRetryBaseDelay || r.ResponseTimeout != DefaultResponseTimeout {
			t.Fatalf("defaults not applied: %+v", r.Config)
		}
	})
}

func TestCredentialChain(t *testing.T) {
	const fileKeys = `[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = secretDEFAULT

[prod]
aws_access_key_id=AKIDPROD
aws_secret_access_key=secretPROD
aws_session_token=tokenPROD
`
	resolveCreds := func(t *testing.T) (*Credentials, error) {
		t.Helper()
		r, err := resolve(Config{Bucket: "b"})
		if err != nil {
			return nil, err
		}
		return r.Credentials, nil
	}
	want := func(t *testing.T, c *Credentials, err error, id, secret, token, source string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if c.AccessKeyID != id || c.SecretAccessKey != secret || c.SessionToken != token {
			t.Fatalf("credentials %q/%q/%q, want %q/%q/%q", c.AccessKeyID, c.SecretAccessKey, c.SessionToken, id, secret, token)
		}
		if !strings.Contains(c.Source, source) {
			t.Fatalf("source %q does not mention %q", c.Source, source)
		}
		for _, v := range []string{id, secret} {
			if strings.Contains(c.Source, v) {
				t.Fatalf("source %q shows a credential", c.Source)
			}
		}
	}

	t.Run("environment", func(t *testing.T) {
		home := isolateEnv(t)
		writeTestFile(t, filepath.Join(home, ".aws", "credentials"), fileKeys)
		t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "secretENV")
		t.Setenv("AWS_SESSION_TOKEN", "tokenENV")
		c, err := resolveCreds(t)
		want(t, c, err, "AKIDENV", "secretENV", "tokenENV", "AWS_ACCESS_KEY_ID")
	})

	t.Run("Litestream's variables", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("LITESTREAM_ACCESS_KEY_ID", "AKIDLS")
		t.Setenv("LITESTREAM_SECRET_ACCESS_KEY", "secretLS")
		c, err := resolveCreds(t)
		want(t, c, err, "AKIDLS", "secretLS", "", "LITESTREAM_ACCESS_KEY_ID")
	})

	t.Run("explicit credentials beat the environment", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "secretENV")
		r, err := resolve(Config{Bucket: "b", Credentials: staticCreds})
		want(t, r.Credentials, err, "AKIDTEST", "secretTEST", "", "test")
	})

	t.Run("half set in the environment", func(t *testing.T) {
		for _, pair := range [][2]string{
			{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
			{"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"},
			{"LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY"},
		} {
			isolateEnv(t)
			t.Setenv(pair[0], "onlyHALFvalue")
			_, err := resolveCreds(t)
			if err == nil || !strings.Contains(err.Error(), pair[0]) || !strings.Contains(err.Error(), pair[1]) {
				t.Fatalf("only %s set: %v, want an error naming both variables", pair[0], err)
			}
			if strings.Contains(err.Error(), "onlyHALFvalue") {
				t.Fatalf("error %q shows the value", err)
			}
		}
	})

	t.Run("shared credentials file, default profile", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", writeTestFile(t, filepath.Join(t.TempDir(), "creds"), fileKeys))
		c, err := resolveCreds(t)
		want(t, c, err, "AKIDDEFAULT", "secretDEFAULT", "", "shared credentials file, profile default")
	})

	t.Run("shared credentials file, AWS_PROFILE", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", writeTestFile(t, filepath.Join(t.TempDir(), "creds"), fileKeys))
		t.Setenv("AWS_PROFILE", "prod")
		c, err := resolveCreds(t)
		want(t, c, err, "AKIDPROD", "secretPROD", "tokenPROD", "profile prod")
		// Config.Profile beats AWS_PROFILE.
		r, err := resolve(Config{Bucket: "b", Profile: "default"})
		want(t, r.Credentials, err, "AKIDDEFAULT", "secretDEFAULT", "", "profile default")
	})

	t.Run("~/.aws/credentials under HOME", func(t *testing.T) {
		home := isolateEnv(t)
		writeTestFile(t, filepath.Join(home, ".aws", "credentials"), fileKeys)
		t.Setenv("AWS_DEFAULT_PROFILE", "prod")
		c, err := resolveCreds(t)
		want(t, c, err, "AKIDPROD", "secretPROD", "tokenPROD", "profile prod")
	})

	t.Run("config file", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("AWS_CONFIG_FILE", writeTestFile(t, filepath.Join(t.TempDir(), "config"),
			"[profile prod]\nregion = eu-west-1\naws_access_key_id = AKIDCFG\naws_secret_access_key = secretCFG\n"))
		t.Setenv("AWS_PROFILE", "prod")
		c, err := resolveCreds(t)
		want(t, c, err, "AKIDCFG", "secretCFG", "", "config file, profile prod")
	})

	t.Run("missing", func(t *testing.T) {
		home := isolateEnv(t)
		// A credentials file without the selected profile.
		writeTestFile(t, filepath.Join(home, ".aws", "credentials"), fileKeys)
		t.Setenv("AWS_PROFILE", "staging")
		_, err := resolveCreds(t)
		if err == nil {
			t.Fatal("resolved credentials for a profile that does not exist")
		}
		msg := err.Error()
		for _, w := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", `"staging"`} {
			if !strings.Contains(msg, w) {
				t.Errorf("error %q does not mention %s", msg, w)
			}
		}
		for _, v := range []string{"AKIDDEFAULT", "secretDEFAULT", "AKIDPROD", "secretPROD"} {
			if strings.Contains(msg, v) {
				t.Errorf("error %q shows a credential from the file", msg)
			}
		}

		// And nothing at all: the chain ends at the EC2 instance metadata
		// service, here a port nothing listens on.
		isolateEnv(t)
		t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://"+closedAddr(t))
		r, err := resolve(Config{Bucket: "b"})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = newCredentialCache(r.creds, slog.New(slog.DiscardHandler)).get(context.Background())
		var ce *CredentialsError
		if !errors.As(err, &ce) || !ce.Permanent || !strings.Contains(err.Error(), "no credentials found") || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
			t.Fatalf("no credentials anywhere: %v, want a permanent CredentialsError saying no credentials were found", err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("finding no credentials took %v", took)
		}
	})

	t.Run("incomplete profile", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", writeTestFile(t, filepath.Join(t.TempDir(), "creds"), "[default]\naws_access_key_id = AKIDLONELY\n"))
		_, err := resolveCreds(t)
		if err == nil || !strings.Contains(err.Error(), "secret access key") || strings.Contains(err.Error(), "AKIDLONELY") {
			t.Fatalf("key ID without a secret: %v", err)
		}
	})
}

func TestCABundle(t *testing.T) {
	t.Run("system bundle", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
		r, err := resolve(Config{Bucket: "b", Credentials: staticCreds})
		if err != nil {
			t.Fatal(err)
		}
		if r.CABundle != "/etc/ssl/certs/ca-certificates.crt" || r.tls == nil || r.tls.RootCAs == nil {
			t.Fatalf("CA bundle not loaded: %q, %+v", r.CABundle, r.tls)
		}
		if tr := newStore(r).http.Transport.(*http.Transport); tr.TLSClientConfig != r.tls {
			t.Fatal("the transport does not use the CA bundle")
		}
	})
	t.Run("no bundle", func(t *testing.T) {
		isolateEnv(t)
		r, err := resolve(Config{Bucket: "b", Credentials: staticCreds})
		if err != nil || r.tls != nil {
			t.Fatalf("without AWS_CA_BUNDLE: tls %+v, %v; want the system roots", r.tls, err)
		}
	})
	t.Run("not PEM", func(t *testing.T) {
		isolateEnv(t)
		bogus := writeTestFile(t, filepath.Join(t.TempDir(), "bogus.pem"), "this is not a certificate\n")
		t.Setenv("AWS_CA_BUNDLE", bogus)
		_, err := resolve(Config{Bucket: "b", Credentials: staticCreds})
		if err == nil || !strings.Contains(err.Error(), bogus) || !strings.Contains(err.Error(), "no PEM certificate") {
			t.Fatalf("bogus bundle: %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		isolateEnv(t)
		_, err := resolve(Config{Bucket: "b", Credentials: staticCreds, CABundle: "/nonexistent/ca.pem"})
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/ca.pem") || !strings.Contains(err.Error(), "CA bundle") {
			t.Fatalf("missing bundle: %v", err)
		}
	})
}

// TestSignature checks the signer against AWS's published examples for S3
// ("Signature Calculations for the Authorization Header: Transferring
// Payload in a Single Chunk") and against requests signed by botocore (the
// aws CLI's signer) for the cases walsync sends: escaped keys, a PUT with
// metadata and a session token.
func TestSignature(t *testing.T) {
	example := Credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
	for _, tc := range []struct {
		name          string
		creds         Credentials
		method, url   string
		header        map[string]string
		region        string
		payload       string
		now           time.Time
		signedHeaders string
		signature     string
	}{
		{
			name: "AWS example: GET bucket lifecycle", creds: example,
			method: "GET", url: "https://examplebucket.s3.amazonaws.com/?lifecycle", region: "us-east-1",
			payload: emptySHA256, now: time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC),
			signedHeaders: "host;x-amz-content-sha256;x-amz-date",
			signature:     "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
		},
		{
			name: "AWS example: list objects", creds: example,
			method: "GET", url: "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J", region: "us-east-1",
			payload: emptySHA256, now: time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC),
			signedHeaders: "host;x-amz-content-sha256;x-amz-date",
			signature:     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
		},
		{
			name: "botocore: escaped path-style key and query", creds: example,
			method: "GET", url: "http://127.0.0.1:9000/bucket/my%20dir/%C3%BC%2Ba%3Db/0000/x.ltx?uploadId=a%2Fb%3D&partNumber=2", region: "us-east-1",
			payload: emptySHA256, now: time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC),
			signedHeaders: "host;x-amz-content-sha256;x-amz-date",
			signature:     "a3641bf3d7f1992a00e9ab3ab9ef9e6598f57cf468e5b9eaf19659b23533dabf",
		},
		{
			name:   "botocore: PUT with metadata and a session token",
			creds:  Credentials{AccessKeyID: example.AccessKeyID, SecretAccessKey: example.SecretAccessKey, SessionToken: "session/token+="},
			method: "PUT", url: "https://s3.eu-west-1.amazonaws.com/my.bucket/db/0009/0000000000000001-0000000000000001.ltx", region: "eu-west-1",
			header: map[string]string{
				"Content-Type":                    "application/octet-stream",
				"X-Amz-Meta-Sha256":               "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
				"X-Amz-Meta-Litestream-Timestamp": "2026-11-20T10:00:00.123Z",
			},
			payload: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", // "hello"
			now:     time.Date(2026, 11, 20, 10, 0, 1, 0, time.UTC),
			signedHeaders: "content-type;host;x-amz-content-sha256;x-amz-date;" +
				"x-amz-meta-litestream-timestamp;x-amz-meta-sha256;x-amz-security-token",
			signature: "a243cb738e42ffdf551e024fb73ea447ef540b0e1d4acee4eb8dd4084f0f4220",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			s := &signer{}
			s.sign(req, tc.creds, tc.region, tc.payload, tc.now)
			want := "AWS4-HMAC-SHA256 Credential=" + tc.creds.AccessKeyID + "/" + tc.now.Format("20060102") + "/" + tc.region +
				"/s3/aws4_request, SignedHeaders=" + tc.signedHeaders + ", Signature=" + tc.signature
			if got := req.Header.Get("Authorization"); got != want {
				t.Fatalf("Authorization\n got %s\nwant %s", got, want)
			}
			if tc.creds.SessionToken != "" && req.Header.Get("X-Amz-Security-Token") != tc.creds.SessionToken {
				t.Fatal("no session token header")
			}
			// The cached signing key gives the same answer.
			req.Header.Del("Authorization")
			s.sign(req, tc.creds, tc.region, tc.payload, tc.now)
			if got := req.Header.Get("Authorization"); got != want {
				t.Fatalf("second signature differs: %s", got)
			}
		})
	}
}

// TestRequestURLEscaping pins how keys become request URLs: each path
// segment is escaped exactly as the canonical request escapes it.
func TestRequestURLEscaping(t *testing.T) {
	isolateEnv(t)
	r, err := resolve(Config{Bucket: "bucket", Endpoint: "http://127.0.0.1:9000", Credentials: staticCreds})
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(r)
	u := s.url("my dir/ü+a=b/0000/x~y.ltx", map[string][]string{"uploadId": {"a/b="}, "partNumber": {"2"}})
	want := "http://127.0.0.1:9000/bucket/my%20dir/%C3%BC%2Ba%3Db/0000/x~y.ltx?partNumber=2&uploadId=a%2Fb%3D"
	if u.String() != want {
		t.Fatalf("URL\n got %s\nwant %s", u, want)
	}
	req, _ := http.NewRequest("GET", u.String(), nil)
	if got := canonicalPath(req.URL); got != "/bucket/my%20dir/%C3%BC%2Ba%3Db/0000/x~y.ltx" {
		t.Fatalf("canonical path %s", got)
	}
	if got := canonicalQuery(req.URL.Query()); got != "partNumber=2&uploadId=a%2Fb%3D" {
		t.Fatalf("canonical query %s", got)
	}
}

func TestErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		err      *Error
		want     []string
		notFound bool
	}{
		{&Error{Op: "get", Bucket: "b", Key: "db/k", Endpoint: "https://e", Status: 404, Code: "NoSuchKey"}, []string{"s3://b/db/k", "https://e", "NoSuchKey"}, true},
		{&Error{Op: "get", Bucket: "b", Key: "db/k", Endpoint: "https://e", Status: 404}, []string{"HTTP 404"}, true}, // HEAD: no body
		{&Error{Op: "list", Bucket: "b", Endpoint: "https://e", Status: 404, Code: "NoSuchBucket"}, []string{`bucket "b" does not exist at https://e`}, false},
		{&Error{Op: "get", Bucket: "b", Key: "db/k", Endpoint: "https://e", Status: 404, Code: "NoSuchBucket"}, []string{"does not exist"}, false},
		{&Error{Op: "get", Bucket: "b", Key: "db/k", Endpoint: "https://e", Status: 404, Code: "NoSuchUpload"}, []string{"NoSuchUpload"}, false},
		{&Error{Op: "list", Bucket: "b", Endpoint: "https://e", Status: 403, Code: "AccessDenied"}, []string{"AWS_ACCESS_KEY_ID", "refused"}, false},
		{&Error{Op: "list", Bucket: "b", Endpoint: "https://e", Status: 403, Code: "RequestTimeTooSkewed"}, []string{"clock"}, false},
		{&Error{Op: "list", Bucket: "b", Endpoint: "https://e", Status: 301, Code: "PermanentRedirect"}, []string{"AWS_REGION"}, false},
	} {
		msg := tc.err.Error()
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%q does not mention %q", msg, w)
			}
		}
		if got := tc.err.Unwrap() != nil; got != tc.notFound {
			t.Errorf("%q: not-found %v, want %v", msg, got, tc.notFound)
		}
	}
	if (&Error{Status: 403, Code: "RequestTimeTooSkewed"}).retryable() || (&Error{Status: 403, Code: "AccessDenied"}).retryable() ||
		!(&Error{Status: 503, Code: "SlowDown"}).retryable() || !(&Error{Status: 500}).retryable() || !(&Error{Status: 429}).retryable() {
		t.Error("retryable() misclassifies")
	}
}
