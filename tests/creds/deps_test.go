package creds

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/walsync/walsync/internal/testenv"
)

// TestNoAWSSDKLinked guards issue 17's memory goal: Go runs the init of
// every linked package at start, and the AWS SDK's service clients
// (sts, sso, ssooidc, signin and their endpoint tables) allocated ~600 KB
// there and cost +3 MiB RSS at 10 databases with static keys. The
// credential chain is our own code (storage/s3/credentials_*.go, sts.go,
// sso.go); the SDK stays a test-only dependency.
func TestNoAWSSDKLinked(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./cmd/walsync")
	cmd.Dir = testenv.RepoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var sdk []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/aws/") {
			sdk = append(sdk, p)
		}
	}
	if len(sdk) > 0 {
		t.Fatalf("walsync links %d AWS SDK packages, e.g. %s: each runs its init in every walsync process", len(sdk), sdk[0])
	}
	if !strings.Contains(string(out), "github.com/walsync/walsync/storage/s3") {
		t.Fatalf("go list -deps does not list storage/s3: %s", out)
	}
}
