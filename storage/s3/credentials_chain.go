package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go"
)

// sdkChain gets credentials from the AWS SDK for Go v2's default chain:
// web identity, assume role, SSO, credential_process, container
// credentials and the EC2 instance metadata service. The SDK is loaded on
// the first retrieve, so a process with static keys never runs it; our
// own signer signs the requests either way.
type sdkChain struct {
	profile  string
	byName   bool // pass the profile to the SDK: it then skips the environment's web identity
	region   string
	source   string
	mu       sync.Mutex
	provider aws.CredentialsProvider
	last     Credentials // the previous answer, scrubbed from errors
}

func newSDKChain(profile string, assumesRole bool, name string) *sdkChain {
	return &sdkChain{profile: profile, byName: assumesRole, source: name}
}

func (c *sdkChain) name() string { return c.source }

func (c *sdkChain) retrieve(ctx context.Context) (Credentials, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.provider == nil {
		opts := []func(*config.LoadOptions) error{
			// Our cache (credentialCache) decides when to renew, from the
			// real expiry.
			config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = 0 }),
			config.WithEC2RoleCredentialOptions(func(o *ec2rolecreds.Options) {
				// IMDSv2 only: a token first; IMDSv1 (no token) only when
				// AWS_EC2_METADATA_V1_DISABLED=false asks for it.
				fallback := aws.FalseTernary
				if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_V1_DISABLED"), "false") {
					fallback = aws.TrueTernary
				}
				o.Client = imds.New(imds.Options{EnableFallback: fallback})
			}),
		}
		if f := configFilePath(); f != "" {
			opts = append(opts, config.WithSharedConfigFiles([]string{f}))
		}
		if f := credentialsFilePath(); f != "" {
			opts = append(opts, config.WithSharedCredentialsFiles([]string{f}))
		}
		if c.region != "" {
			opts = append(opts, config.WithRegion(c.region))
		}
		if c.byName {
			opts = append(opts, config.WithSharedConfigProfile(c.profile))
		}
		cfg, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return Credentials{}, &CredentialsError{Source: c.source, Err: errors.New(c.errorText(err)), Permanent: true}
		}
		c.provider = cfg.Credentials
	}
	if cc, ok := c.provider.(*aws.CredentialsCache); ok {
		cc.Invalidate() // we are asked only when new credentials are needed
	}
	v, err := c.provider.Retrieve(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return Credentials{}, ctx.Err()
		}
		return Credentials{}, c.chainError(err)
	}
	got := Credentials{AccessKeyID: v.AccessKeyID, SecretAccessKey: v.SecretAccessKey, SessionToken: v.SessionToken, Source: c.source}
	if v.CanExpire {
		got.Expires = v.Expires
	}
	c.last = got
	return got, nil
}

// chainError turns the SDK's error into one that names the source, says
// what to do, holds no credential value, and says whether asking again
// can help.
func (c *sdkChain) chainError(err error) *CredentialsError {
	ce := &CredentialsError{Source: c.source, Err: errors.New(c.errorText(err)), Permanent: true}
	var ne net.Error
	var api smithy.APIError
	var re interface{ HTTPStatusCode() int }
	switch {
	case errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded):
		ce.Permanent = false
	case errors.As(err, &re) && (re.HTTPStatusCode() >= 500 || re.HTTPStatusCode() == http.StatusTooManyRequests):
		ce.Permanent = false
	case errors.As(err, &api) && (api.ErrorCode() == "Throttling" || api.ErrorCode() == "IDPCommunicationError" || api.ErrorCode() == "ExpiredTokenException"):
		// A web identity token file is replaced before it expires
		// (kubelet, ECS): the next read may hold a fresh one.
		ce.Permanent = false
	}
	if strings.HasPrefix(c.source, "EC2 instance metadata") {
		// The IMDS client hides the network error from errors.As: its text
		// tells. Nothing else was configured and no metadata service
		// answered: the usual case off EC2.
		msg := err.Error()
		timeout := strings.Contains(msg, "timeout") || strings.Contains(msg, "deadline exceeded")
		if timeout || strings.Contains(msg, "connection refused") || strings.Contains(msg, "no route to host") ||
			strings.Contains(msg, "network is unreachable") || strings.Contains(msg, "no such host") {
			hint := "no credentials found: none in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), in profile " + c.profile +
				" (~/.aws/credentials, ~/.aws/config), no container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI), and the EC2 instance metadata service did not answer"
			if timeout {
				hint += " in time (in a container on EC2, the instance's metadata hop limit must be at least 2: aws ec2 modify-instance-metadata-options --http-put-response-hop-limit 2)"
			}
			ce.Err = fmt.Errorf("%s: %s", hint, c.errorText(err))
			ce.Permanent = !timeout
		}
	}
	return ce
}

// errorText is err's message fit for a log: without the output of a
// credential_process (it may hold keys), the previous credentials or a
// password in a URL.
func (c *sdkChain) errorText(err error) string {
	var pe *processcreds.ProviderError
	if errors.As(err, &pe) && strings.Contains(pe.Error(), "process output") {
		return "credential_process printed something other than the AWS CLI's credentials JSON (Version 1, AccessKeyId, SecretAccessKey, SessionToken, Expiration)"
	}
	msg := scrubSecrets(err.Error(), c.last)
	if strings.Contains(msg, "://") {
		msg = RedactUserinfo(msg)
	}
	return msg
}
