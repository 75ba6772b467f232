package s3

import (
	"strings"
	"testing"
)

// TestRedactUserinfo: whatever stands between "://" and the last "@" is
// hidden, and so are credential-looking query values, whether or not the
// text parses as a URL. The secret here is always "Zq7SeKrit".
func TestRedactUserinfo(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"s3://bucket/prefix", "s3://bucket/prefix"},
		{"https://s3.example.com:9000", "https://s3.example.com:9000"},
		{"/var/backups/app", "/var/backups/app"},
		{"", ""},
		{"ftp://KEYID:Zq7SeKrit@127.0.0.1:9000", "ftp://REDACTED@127.0.0.1:9000"},
		{"http://KEYID:Zq7SeKrit@", "http://REDACTED@"},
		{"http://K:Zq7SeKrit@[::1", "http://REDACTED@[::1"},
		{"gopher://u:Zq7SeKrit@h", "gopher://REDACTED@h"},
		// A secret holding "/", "?", "#" or "@", unescaped: AWS secret
		// keys often hold a "/".
		{"s3://AKID:wJalr/Zq7SeKrit@bucket/x", "s3://REDACTED@bucket/x"},
		{"http://u:a?Zq7SeKrit#b@host", "http://REDACTED@host"},
		{"http://u:a@Zq7SeKrit@host/p", "http://REDACTED@host/p"},
		// No "@" (mistyped, or eaten by ${VAR} expansion): a "port" that
		// is not a number is hidden; real ports and IPv6 literals are not.
		{"gopher://0:Zq7SeKrit0", "gopher://REDACTED"},
		{"http://KEYID:Zq7SeKrit/host", "http://REDACTED"},
		{"http://0:A?Zq7SeKrit", "http://REDACTED"}, // "A?Zq7SeKrit#@host" cut at its "#"
		{"http://[::1]:9000/x", "http://[::1]:9000/x"},
		{"http://[::1]/x", "http://[::1]/x"},
		{"http://host:/x", "http://host:/x"},
		// No scheme: an endpoint written as host[:port].
		{"KEYID:Zq7SeKrit@127.0.0.1:9000", "REDACTED@127.0.0.1:9000"},
		// A URL inside a query, escaped or not.
		{"s3://b/p?endpoint=http%3A%2F%2Fu%3AZq7SeKrit%40h", "s3://b/p?endpoint=REDACTED"},
		{"s3://b/p?endpoint=http://u:Zq7SeKrit@h:9000", "s3://REDACTED"},
		// An escaped URL with a bad escape elsewhere in the value.
		{"s3://b/p?endpoint=http%3A%2F%2Fu%3AZq7SeKrit%40h%0", "s3://b/p?endpoint=REDACTED"},
		// Credential-looking query parameters.
		{"s3://b/p?region=eu&secret-access-key=Zq7SeKrit", "s3://b/p?region=eu&secret-access-key=REDACTED"},
		{"https://h/o?X-Amz-Signature=Zq7SeKrit&X-Amz-Date=1", "https://h/o?X-Amz-Signature=REDACTED&X-Amz-Date=1"},
		{"https://h/?password=Zq7SeKrit", "https://h/?password=REDACTED"},
		{"https://h/?a=1;token=Zq7SeKrit", "https://h/?a=1;token=REDACTED"},
	} {
		got := RedactUserinfo(c.in)
		if got != c.want {
			t.Errorf("RedactUserinfo(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.Contains(got, "Zq7SeKrit") {
			t.Errorf("RedactUserinfo(%q) = %q keeps the secret", c.in, got)
		}
	}
}

// TestEndpointErrorsHideSecrets: an endpoint that is refused (wrong
// scheme, no host, unparseable, from the environment or not) is named in
// the error without its credentials.
func TestEndpointErrorsHideSecrets(t *testing.T) {
	isolateEnv(t)
	creds := &Credentials{AccessKeyID: "AKID", SecretAccessKey: "x"}
	for _, c := range []struct{ endpoint, env string }{
		{endpoint: "ftp://KEYID:Zq7SeKrit@127.0.0.1:9000"},
		{endpoint: "http://KEYID:Zq7SeKrit@"},
		{endpoint: "http://K:Zq7SeKrit@[::1"},
		{endpoint: "KEYID:Zq7SeKrit@[::1"},
		{endpoint: "http://KEYID:Zq7SeKrit@127.0.0.1:9000"}, // parses, but credentials do not belong there
		{env: "gopher://u:Zq7SeKrit@h"},
	} {
		t.Setenv("AWS_ENDPOINT_URL_S3", c.env)
		_, err := New(Config{Bucket: "b", Endpoint: c.endpoint, Credentials: creds})
		if err == nil {
			t.Errorf("endpoint %q (env %q) accepted", c.endpoint, c.env)
			continue
		}
		if strings.Contains(err.Error(), "Zq7SeKrit") {
			t.Errorf("endpoint %q (env %q): the error repeats the secret: %v", c.endpoint, c.env, err)
		}
		if !strings.Contains(err.Error(), "endpoint") {
			t.Errorf("endpoint %q (env %q): the error does not name the endpoint: %v", c.endpoint, c.env, err)
		}
	}
}

// TestParseURLErrorsHideSecrets: url.Parse's reason can quote a piece of
// the authority (`invalid port ":Zq7SeKrit"`); it is left out then.
func TestParseURLErrorsHideSecrets(t *testing.T) {
	for _, raw := range []string{
		"s3://AKID:Zq7SeKrit/x@bucket/p",
		"s3://AKID:Zq7SeKrit@[::1",
		"s3://bucket/p?secret-access-key=Zq7SeKrit",
		"s3://AKID:Zq7SeKrit@bucket/p",
	} {
		_, _, err := ParseURL(raw)
		if err == nil {
			if raw != "s3://bucket/p?secret-access-key=Zq7SeKrit" {
				t.Errorf("ParseURL(%q) succeeded", raw)
			}
			continue
		}
		if strings.Contains(err.Error(), "Zq7SeKrit") {
			t.Errorf("ParseURL(%q): the error repeats the secret: %v", raw, err)
		}
	}
}
