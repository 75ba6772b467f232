package replicaurl_test

import (
	"strings"
	"testing"

	"github.com/walsync/walsync/storage/replicaurl"
)

// TestMistypedURLIsNotADirectory: a URL missing its "//" is refused, not
// replicated into a local directory of that name, and a secret in it stays
// out of the error.
func TestMistypedURLIsNotADirectory(t *testing.T) {
	for _, raw := range []string{"s3:/bucket/app", "s3:bucket", "s3//bucket/app", "AKIAXAMPLE:SECRETMARKER@minio.local/bucket", "s3:/AKIAXAMPLE:SECRETMARKER@bucket/x"} {
		c, err := replicaurl.Open(raw, replicaurl.Options{})
		if err == nil {
			t.Fatalf("%q opened as %s", raw, c)
		}
		if strings.Contains(err.Error(), "SECRETMARKER") {
			t.Fatalf("%q: the error shows the secret: %v", raw, err)
		}
		if !strings.Contains(err.Error(), "s3://") {
			t.Fatalf("%q: the error does not say what to write: %v", raw, err)
		}
	}
	for _, raw := range []string{"./a:b", "backups", "/var/backups/app"} {
		if _, err := replicaurl.Open(raw, replicaurl.Options{}); err != nil {
			t.Fatalf("directory %q refused: %v", raw, err)
		}
	}
}

// TestURLQueryRefused: a query or fragment in an S3 URL is refused (it was
// dropped silently), without repeating what it held.
func TestURLQueryRefused(t *testing.T) {
	for _, raw := range []string{"s3://bucket/x?endpoint=SECRETMARKER", "s3://bucket/x#SECRETMARKER", "s3://bucket/x?"} {
		_, err := replicaurl.Open(raw, replicaurl.Options{})
		if err == nil {
			t.Fatalf("%q accepted", raw)
		}
		if strings.Contains(err.Error(), "SECRETMARKER") {
			t.Fatalf("%q: the error repeats the query: %v", raw, err)
		}
	}
}
