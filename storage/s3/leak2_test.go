package s3_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walsync/walsync/storage/s3"
)

// TestNoSecretFromHostileAnswers: what a server or a credential source
// says never carries a credential into an error (hostile pass): an S3
// error message quoting the session token, a credential_process printing
// its secret on standard error, and a container token file that never
// ends (/dev/zero) fail cleanly and bounded.
func TestNoSecretFromHostileAnswers(t *testing.T) {
	const token, secret = "SESSIONTOKEN-MARKER-0123456789", "SECRETKEY-MARKER-0123456789"
	t.Run("S3 error quoting the token", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "<Error><Code>AccessDenied</Code><Message>denied for token %s and secret %s</Message></Error>",
				r.Header.Get("X-Amz-Security-Token"), secret)
		}))
		defer srv.Close()
		c, err := s3.New(s3.Config{Bucket: "b", Prefix: "p", Endpoint: srv.URL, Region: "us-east-1", TempDir: t.TempDir(), MaxRetries: -1,
			Credentials: &s3.Credentials{AccessKeyID: "AK", SecretAccessKey: secret, SessionToken: token, Source: "test"}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.OpenLTXFile(context.Background(), 0, 1, 1)
		if err == nil || strings.Contains(err.Error(), token) || strings.Contains(err.Error(), secret) {
			t.Fatalf("error %v holds a credential", err)
		}
	})
	t.Run("credential_process stderr", func(t *testing.T) {
		home := isolateCreds(t)
		script := filepath.Join(home, "creds.sh")
		if err := os.WriteFile(script, []byte("#!/bin/sh\necho "+secret+" >&2\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(home, ".aws"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, ".aws", "config"), []byte("[default]\ncredential_process = "+script+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := os.Stderr
		os.Stderr = w
		c, err := s3.New(s3.Config{Bucket: "b", Prefix: "p", Endpoint: "http://127.0.0.1:1", Region: "us-east-1", TempDir: t.TempDir()})
		if err == nil {
			_, err = c.ObtainCredentials(context.Background())
		}
		os.Stderr = stderr
		w.Close()
		printed, _ := io.ReadAll(r)
		if err == nil || strings.Contains(err.Error(), secret) || strings.Contains(string(printed), secret) {
			t.Fatalf("credential_process: error %v, printed %q: want a failure with no secret anywhere", err, printed)
		}
	})
	t.Run("container token file without end", func(t *testing.T) {
		isolateCreds(t)
		t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds")
		t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/dev/zero")
		c, err := s3.New(s3.Config{Bucket: "b", Prefix: "p", Endpoint: "http://127.0.0.1:1", Region: "us-east-1", TempDir: t.TempDir()})
		if err == nil {
			_, err = c.ObtainCredentials(context.Background())
		}
		if err == nil || !strings.Contains(err.Error(), "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
			t.Fatalf("a token file of endless bytes: %v; want its bound named", err)
		}
	})
}
