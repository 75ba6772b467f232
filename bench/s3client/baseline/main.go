// Command baseline is the floor for ../walsync and ../sdk: the same harness
// (versitygw starter, LTX encoding, measurement) with no S3 client at all;
// it writes each object's bytes straight into the server's bucket directory.
package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/walsync/walsync/bench/s3client/harness"
)

type client struct{ dir string }

func (c client) Put(_ context.Context, o *harness.Object) error {
	path := filepath.Join(c.dir, filepath.FromSlash(o.Key))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, o.Data, 0o644)
}

func main() {
	harness.Main("no client", func(s *harness.Server) (harness.Client, error) {
		return client{filepath.Join(s.Dir, harness.Bucket)}, nil
	})
}
