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
	for _, raw := range []string{"s3:/bucket/app", "s3:bucket", "AKIAXAMPLE:SECRETMARKER@minio.local/bucket", "file:/tmp/x"} {
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
