// Command sdk PUTs the same LTX files as ../walsync, with the same keys and
// metadata, through aws-sdk-go-v2's service/s3 client built with s3.New
// (not config.LoadDefaultConfig), and reports its memory; see ../run.sh.
package main

import (
	"bytes"
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walsync/walsync/bench/s3client/harness"
)

type client struct{ c *s3.Client }

func (c client) Put(ctx context.Context, o *harness.Object) error {
	_, err := c.c.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(harness.Bucket),
		Key:           aws.String(o.Key),
		Body:          bytes.NewReader(o.Data),
		ContentLength: aws.Int64(int64(len(o.Data))),
		ContentType:   aws.String("application/octet-stream"),
		Metadata: map[string]string{
			"sha256":               o.SHA256,
			"litestream-timestamp": o.Timestamp,
		},
	})
	return err
}

func main() {
	harness.Main("aws-sdk-go-v2", func(s *harness.Server) (harness.Client, error) {
		return client{s3.New(s3.Options{
			Region:       harness.Region,
			BaseEndpoint: aws.String(s.Endpoint),
			UsePathStyle: true,
			Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		})}, nil
	})
}
