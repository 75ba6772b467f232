package s3server

import (
	"os"
	"strings"
)

// Environ returns our environment less every variable whose name drop
// reports, followed by extra ("KEY=value"; later entries win). The server
// and the clients started beside it take what they need from the caller's
// environment but none of its settings that would change what they do.
func Environ(drop func(key string) bool, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !drop(k) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// ClientSetting reports whether the environment variable key configures
// an S3 client (AWS_*) or the proxy of an HTTP client (HTTP_PROXY and the
// like, in any case): settings a client of the local server must not
// inherit.
func ClientSetting(key string) bool {
	switch {
	case strings.HasPrefix(key, "AWS_"),
		strings.EqualFold(key, "HTTP_PROXY"), strings.EqualFold(key, "HTTPS_PROXY"),
		strings.EqualFold(key, "ALL_PROXY"), strings.EqualFold(key, "NO_PROXY"):
		return true
	}
	return false
}
