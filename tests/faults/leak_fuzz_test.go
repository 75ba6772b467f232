package faults_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/walsync/walsync/config"
	"github.com/walsync/walsync/storage/replicaurl"
	"github.com/walsync/walsync/storage/s3"
)

// leakMarker stands for a secret in the fuzzed inputs: no message may
// contain it.
const leakMarker = "wsLEAKm4rker"

// FuzzNoSecretInErrors builds replica URLs, S3 endpoints (given as a flag
// would give them, through AWS_ENDPOINT_URL_S3, or bare host:port) and
// config files holding a secret, the marker wrapped in fuzzed bytes, in a
// credential position: the userinfo of a URL of any scheme, a
// credential-looking query parameter, an endpoint escaped into a URL's
// query, the secret-access-key key, or a ${VAR} that expands to it. The
// rest of each input (user, host, path, other keys' values) is fuzzed too,
// to reach every error. It parses each one with s3.ParseURL, s3.New,
// replicaurl.Open and config.Parse and fails if an error, a config warning
// or the printed or logged replica holds the marker.
//
//	go test -run '^$' -fuzz FuzzNoSecretInErrors -fuzztime 10m ./tests/faults/
func FuzzNoSecretInErrors(f *testing.F) {
	// The process's AWS settings and ~/.aws stay out of it.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "LITESTREAM_") {
			f.Setenv(k, "")
		}
	}
	f.Setenv("HOME", f.TempDir())
	f.Setenv("AWS_CONFIG_FILE", "/dev/null")
	f.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")

	for _, seed := range []struct {
		pre, post, user, host, tail string
		mode                        uint8
	}{
		{"", "", "KEYID", "127.0.0.1:9000", "", 0},
		{"", "", "KEYID", "", "", 0},
		{"", "", "K", "[::1", "", 3},
		{"wJalr/", "", "AKID", "bucket", "/x", 0},
		{"a?", "#b", "u", "h", "/p", 1},
		{"p@", "", "u", "h", "", 2},
		{"", "", "u", "h", "", 4},
		{"", "$x", "u", "h", "", 5},
		{"", "", "u", "h", "&region=eu", 6},
		{"", "", "KEYID", "127.0.0.1:9000", "", 7},
		{"", "", "KEYID", "%zz", ":port", 8},
		{"", "", "u", "h", "\nsync-interval: nonsense", 9},
		{"", "", "u", "b", "", 10},
		{"$", "", "u", "h", "", 11},
		{"'", "\"", "u", "h]", "/[", 12},
		{"", "", "", "", "", 13},
	} {
		f.Add(seed.pre, seed.post, seed.user, seed.host, seed.tail, seed.mode)
	}
	f.Fuzz(func(t *testing.T, pre, post, user, host, tail string, mode uint8) {
		secret := pre + leakMarker + post
		if strings.Contains(user+host+tail, leakMarker) {
			return // the marker stands for a secret only where one is written
		}
		schemes := []string{"s3", "file", "http", "https", "ftp", "gopher", "gs", "webdav", ""}
		scheme := schemes[int(mode)%len(schemes)]
		withScheme := func(authority string) string {
			if scheme == "" {
				return authority
			}
			return scheme + "://" + authority
		}
		userinfo := withScheme(user + ":" + secret + "@" + host + tail)
		// In a query, a value cannot hold the separators unescaped.
		qsecret := strings.NewReplacer("&", "%26", ";", "%3B").Replace(secret)
		creds := &s3.Credentials{AccessKeyID: "AKIDFUZZ", SecretAccessKey: "fuzz"}

		var urls, endpoints []string
		switch mode % 7 {
		case 0, 1: // a URL (replica or endpoint) with credentials
			urls = append(urls, userinfo, "s3://"+user+":"+secret+"@"+host+tail)
			endpoints = append(endpoints, userinfo, user+":"+secret+"@"+host+tail)
		case 2: // a credential in the query
			for _, k := range []string{"secret-access-key", "X-Amz-Signature", "password", "token", "access_key"} {
				urls = append(urls, withScheme(host+"/p?"+k+"="+qsecret+"&"+tail))
				endpoints = append(endpoints, withScheme(host+"?"+k+"="+qsecret))
			}
		case 3: // an endpoint with credentials inside a replica URL's query
			ep := "http://" + user + ":" + secret + "@" + host
			urls = append(urls, "s3://b/p?endpoint="+url.QueryEscape(ep)+tail, "s3://b/p?endpoint="+ep+tail)
		default:
			urls = append(urls, userinfo)
			endpoints = append(endpoints, userinfo)
		}

		check := func(what, msg string) {
			t.Helper()
			if strings.Contains(msg, leakMarker) {
				t.Fatalf("%s repeats the secret:\n%s", what, msg)
			}
		}
		for _, u := range urls {
			if _, _, err := s3.ParseURL(u); err != nil {
				check("s3.ParseURL("+u+")", err.Error())
			}
			if _, err := replicaurl.Open(u, replicaurl.Options{S3: s3.Config{Endpoint: "http://127.0.0.1:9", Credentials: creds}}); err != nil {
				check("replicaurl.Open("+u+")", err.Error())
			}
		}
		for _, ep := range endpoints {
			if _, err := s3.New(s3.Config{Bucket: "b", Endpoint: ep, Credentials: creds}); err != nil {
				check("s3.New with endpoint "+ep, err.Error())
			}
			if _, err := replicaurl.Open("s3://b/p", replicaurl.Options{S3: s3.Config{Endpoint: ep, Credentials: creds}}); err != nil {
				check("replicaurl.Open with endpoint "+ep, err.Error())
			}
			os.Setenv("AWS_ENDPOINT_URL_S3", ep)
			_, err := s3.New(s3.Config{Bucket: "b", Credentials: creds})
			os.Unsetenv("AWS_ENDPOINT_URL_S3")
			if err != nil {
				check("s3.New with AWS_ENDPOINT_URL_S3="+ep, err.Error())
			}
		}

		// Config files: each credential position, next to fuzzed values
		// elsewhere. Values are JSON strings (valid YAML) so that the
		// secret stays a value; tail is written raw, to break the rest.
		q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
		var docs []string
		for _, u := range urls {
			docs = append(docs, "dbs:\n  - path: /tmp/app.db\n    replica:\n      url: "+q(u)+"\n")
		}
		for _, ep := range endpoints {
			docs = append(docs,
				"dbs:\n  - path: /tmp/app.db\n    replica:\n      url: s3://b/p\n      endpoint: "+q(ep)+"\n",
				"endpoint: "+q(ep)+"\nbucket: b\ndbs:\n  - path: /tmp/app.db\n")
		}
		docs = append(docs,
			"access-key-id: "+q(user)+"\nsecret-access-key: "+q(secret)+"\nbucket: "+q(host)+"\ndbs:\n  - path: /tmp/app.db\n"+tail+"\n",
			"dbs:\n  - path: /tmp/app.db\n    replica:\n      type: s3\n      bucket: "+q(host)+"\n      access-key-id: "+q(user)+"\n      secret-access-key: "+q(secret)+"\n      sync-interval: "+q(tail)+"\n",
		)
		if !strings.ContainsAny(secret, "\r\n") { // a line break would make the rest of it YAML keys
			docs = append(docs,
				// The secret unquoted, as people write it.
				"dbs:\n  - path: /tmp/app.db\n    replica:\n      url: s3://"+user+":"+secret+"@"+host+"/p\n",
				"dbs:\n  - path: /tmp/app.db\n    replica:\n      url: s3://b/p\n      endpoint: http://"+user+":"+secret+"@"+host+"\n",
			)
		}
		docs = append(docs,
			// From the environment.
			"dbs:\n  - path: /tmp/app.db\n    replica:\n      url: s3://"+user+":${WS_SECRET}@"+host+tail+"\n",
			"dbs:\n  - path: /tmp/app.db\n    replica:\n      type: s3\n      bucket: b\n      access-key-id: x\n      secret-access-key: ${WS_SECRET}\n      endpoint: "+q(host+tail)+"\n",
		)
		env := func(k string) (string, bool) {
			if k == "WS_SECRET" {
				return secret, true
			}
			return "", false
		}
		for _, doc := range docs {
			for _, e := range []func(string) (string, bool){nil, env} {
				// Expansion changes a "$" written in the file, as in
				// Litestream (no escape exists; the config warns that such
				// a secret must come from the environment): after it, the
				// value is no longer the secret the file holds, and only
				// the warnings, which quote the file, are checked.
				mangled := e != nil && strings.Contains(secret, "$") && !strings.Contains(doc, "${WS_SECRET}")
				if e != nil && strings.Contains(doc, "${WS_SECRET}") && strings.ContainsAny(secret, "\r\n") {
					// Expanded before parsing, as in Litestream: a line
					// break in the variable makes the rest of it YAML keys.
					continue
				}
				cfg, warns, err := config.Parse([]byte(doc), "fuzz.yml", e)
				for _, w := range warns {
					check("a config warning for\n"+doc, w.String())
				}
				if mangled {
					continue
				}
				if err != nil {
					check("the config error for\n"+doc, err.Error())
					continue
				}
				var logged bytes.Buffer
				log := slog.New(slog.NewTextHandler(&logged, nil))
				for _, d := range cfg.DBs {
					r := d.Replica
					if r == nil {
						r = cfg.Walsync.Replica
					}
					if r == nil {
						continue
					}
					if strings.Contains(r.SecretAccessKey, leakMarker) {
						// Only the credential fields may hold it: then
						// every way of printing the replica must hide it.
						check("the printed replica", fmt.Sprintf("%v %+v %#v %s", *r, *r, *r, r.String()))
						log.Info("replica", "replica", *r)
						check("the logged replica", logged.String())
					}
					ru, err := r.ReplicaURL()
					if err != nil {
						check("Replica.ReplicaURL", err.Error())
						continue
					}
					if _, err := replicaurl.Open(ru, replicaurl.Options{S3: s3.Config{Endpoint: r.Endpoint, Credentials: creds}}); err != nil {
						check("replicaurl.Open of a config replica", err.Error())
					}
				}
			}
		}
	})
}

// TestMalformedEndpointNotEchoed: the CLI, given a secret in an endpoint
// it refuses (a scheme other than http or https, no host, unparseable,
// from AWS_ENDPOINT_URL_S3), in a replica URL, or in an address, names the
// value without the secret.
func TestMalformedEndpointNotEchoed(t *testing.T) {
	r := scenario(t, "security: secrets in malformed URLs and endpoints never echoed")
	secret := randomSecret("wsEPSECRET")
	addSecret(secret, "a secret in a URL")
	for _, c := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"list", "-b", "s3://bkt/x", "--endpoint", "ftp://KEYID:" + secret + "@127.0.0.1:9000"}},
		{nil, []string{"list", "-b", "s3://bkt/x", "--endpoint", "http://KEYID:" + secret + "@"}},
		{nil, []string{"list", "-b", "s3://bkt/x", "--endpoint", "http://K:" + secret + "@[::1"}},
		{nil, []string{"list", "-b", "s3://bkt/x", "--endpoint", "KEYID:" + secret + "@[::1"}},
		{nil, []string{"list", "-b", "s3://bkt/x", "--endpoint", "http://KEYID:" + secret + "@127.0.0.1:1"}},
		{[]string{"AWS_ENDPOINT_URL_S3=gopher://u:" + secret + "@h"}, []string{"list", "-b", "s3://bkt/x"}},
		{[]string{"AWS_ENDPOINT_URL=gopher://u:" + secret + "@h"}, []string{"list", "-b", "s3://bkt/x"}},
		{nil, []string{"list", "-b", "s3://AKID:wJ/" + secret + "@bkt/x"}},
		{nil, []string{"list", "-b", "gs://u:" + secret + "@[::1/x"}},
		{nil, []string{"status", "--addr", "u:" + secret + "@127.0.0.1:1"}},
		{nil, []string{"watch", "/nonexistent/app.db", "-b", "/tmp/x", "--addr", "u:" + secret + "@127.0.0.1:1"}},
	} {
		r.run()
		env := append(s3Env("AKIDEXAMPLE", "x"), c.env...)
		out, stderr, code := cli(t, nil, env, c.args...)
		if code == 0 {
			t.Errorf("walsync %v (env %v) succeeded", c.args, c.env)
		}
		if strings.TrimSpace(stderr) == "" {
			t.Errorf("walsync %v (env %v) printed no error", c.args, c.env)
		}
		noSecret(t, fmt.Sprintf("walsync %s (env %v)", c.args[0], c.env), out+stderr)
	}
}
