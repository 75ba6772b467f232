// Command walsync PUTs LTX files to a local versitygw with walsync's own S3
// client (storage/s3) and reports its memory; see ../run.sh.
package main

import (
	"bytes"
	"context"
	"fmt"

	"github.com/walsync/walsync/bench/s3client/harness"
	"github.com/walsync/walsync/storage/s3"
)

type client struct{ c *s3.Client }

func (c client) Put(ctx context.Context, o *harness.Object) error {
	fi, err := c.c.WriteLTXFile(ctx, 0, o.TXID, o.TXID, bytes.NewReader(o.Data))
	if err != nil {
		return err
	}
	if fi.SHA256 != o.SHA256 || c.c.Key(0, o.TXID, o.TXID) != o.Key {
		return fmt.Errorf("stored %s with sha256 %s, want %s with %s", c.c.Key(0, o.TXID, o.TXID), fi.SHA256, o.Key, o.SHA256)
	}
	return nil
}

func main() {
	harness.Main("walsync", func(s *harness.Server) (harness.Client, error) {
		c, err := s3.New(s3.Config{
			Bucket:      harness.Bucket,
			Prefix:      harness.Prefix,
			Endpoint:    s.Endpoint,
			Region:      harness.Region,
			Credentials: &s3.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey, Source: "bench"},
		})
		if err != nil {
			return nil, err
		}
		return client{c}, nil
	})
}
