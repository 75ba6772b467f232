// Package creds tests walsync with credentials that expire: a watch
// keeps replicating across renewals with nothing lost.
package creds

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	_ "github.com/mattn/go-sqlite3"

	"github.com/walsync/walsync/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// session is one set of expiring credentials the metadata stand-in issued.
type session struct {
	secret, token string
	expires       time.Time
}

// sessionGate stands in front of versitygw (which has one root account
// and refuses session tokens) the way S3 treats session credentials: a
// request whose key is unknown, whose token does not match or whose
// credentials expired is refused (InvalidAccessKeyId, InvalidToken,
// ExpiredToken); an accepted one is signed again with the root key and
// forwarded. It checks the key ID, token and expiry, not the signature
// (the signer is tested against versitygw directly).
type sessionGate struct {
	mu       sync.Mutex
	sessions map[string]session
	used     map[string]int // accepted requests per key ID
	refused  map[string]int // by code
}

var credentialRE = regexp.MustCompile(`Credential=([^/]+)/`)

func (g *sessionGate) issue(lifetime time.Duration) (id string, s session) {
	b := make([]byte, 24)
	rand.Read(b)
	id = "ASIA" + strings.ToUpper(hex.EncodeToString(b[:8]))
	s = session{secret: "rotSECRET" + hex.EncodeToString(b[8:16]), token: "rotTOKEN" + hex.EncodeToString(b[16:]), expires: time.Now().Add(lifetime)}
	g.mu.Lock()
	g.sessions[id] = s
	g.mu.Unlock()
	return id, s
}

func (g *sessionGate) handler(srv *testenv.S3Server) http.Handler {
	target, _ := url.Parse(srv.Endpoint)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		for _, h := range []string{"Authorization", "X-Amz-Security-Token", "X-Amz-Date"} {
			pr.Out.Header.Del(h)
		}
		_ = v4.NewSigner().SignHTTP(pr.Out.Context(), aws.Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey},
			pr.Out, pr.Out.Header.Get("X-Amz-Content-Sha256"), "s3", srv.Region, time.Now())
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization"))
		code := ""
		g.mu.Lock()
		s, ok := g.sessions[func() string {
			if m == nil {
				return ""
			}
			return m[1]
		}()]
		switch {
		case !ok:
			code = "InvalidAccessKeyId"
		case r.Header.Get("X-Amz-Security-Token") != s.token:
			code = "InvalidToken"
		case time.Now().After(s.expires):
			code = "ExpiredToken"
		default:
			g.used[m[1]]++
		}
		if code != "" {
			g.refused[code]++
		}
		g.mu.Unlock()
		if code != "" {
			w.WriteHeader(http.StatusBadRequest)
			if code == "InvalidAccessKeyId" {
				w.WriteHeader(http.StatusForbidden)
			}
			fmt.Fprintf(w, "<Error><Code>%s</Code><Message>refused by the session gate</Message></Error>", code)
			return
		}
		rp.ServeHTTP(w, r)
	})
}

func TestWatchAcrossCredentialRenewals(t *testing.T) {
	s := testenv.S3(t)
	bucket := s.NewBucket(t)
	const lifetime = 6 * time.Second
	gate := &sessionGate{sessions: map[string]session{}, used: map[string]int{}, refused: map[string]int{}}
	gw := httptest.NewServer(gate.handler(s))
	defer gw.Close()

	// IMDSv2 stand-in issuing new session credentials on every request.
	var secrets []string
	var smu sync.Mutex
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			io.WriteString(w, "imds-token")
			return
		}
		if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "imds-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/security-credentials/") {
			io.WriteString(w, "role")
			return
		}
		id, ss := gate.issue(lifetime)
		smu.Lock()
		secrets = append(secrets, ss.secret, ss.token)
		smu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"Code": "Success", "AccessKeyId": id, "SecretAccessKey": ss.secret,
			"Token": ss.token, "Expiration": ss.expires.UTC().Format(time.RFC3339)})
	}))
	defer imds.Close()

	dir := t.TempDir()
	dbPath := filepath.Join(dir, "t1", "app.db")
	os.MkdirAll(filepath.Dir(dbPath), 0o755)
	db, err := sql.Open("sqlite3", dbPath+"?_journal_mode=WAL&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}

	env := []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "AWS_EC2_METADATA_SERVICE_ENDPOINT=" + imds.URL}
	bin := testenv.WalsyncBinary(t)
	var stderr bytes.Buffer
	watch := exec.Command(bin, "watch", dbPath, "-b", "s3://"+bucket+"/app", "--endpoint", gw.URL, "--region", s.Region,
		"--sync-interval", "200ms", "--log-level", "debug")
	watch.Env, watch.Stderr = env, &stderr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- watch.Wait() }()
	defer func() {
		if watch.ProcessState == nil {
			watch.Process.Kill()
			<-done
		}
	}()

	// Write for more than three lifetimes: the credentials are renewed at
	// least three times while commits keep coming.
	rows := 0
	for end := time.Now().Add(3*lifetime + 2*time.Second); time.Now().Before(end); rows++ {
		if _, err := db.Exec("INSERT INTO t (v) VALUES (?)", fmt.Sprint("row ", rows)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	watch.Process.Signal(syscall.SIGTERM)
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("watch did not stop; its log:\n%s", stderr.String())
	}
	logs := stderr.String()
	if err != nil {
		t.Fatalf("watch: %v\n%s", err, logs)
	}

	gate.mu.Lock()
	keys, refused := len(gate.used), fmt.Sprint(gate.refused)
	gate.mu.Unlock()
	t.Logf("%d rows; requests accepted under %d session keys; refused: %s", rows, keys, refused)
	if keys < 3 {
		t.Fatalf("requests used %d session keys over %v of %v credentials: not renewed\n%s", keys, 3*lifetime, lifetime, logs)
	}
	smu.Lock()
	for _, v := range secrets {
		if strings.Contains(logs, v) {
			t.Fatalf("the watch log shows a credential value")
		}
	}
	smu.Unlock()

	// Everything committed is in the replica: restored straight from
	// versitygw with its root key.
	out := filepath.Join(dir, "restored.db")
	restore := exec.Command(bin, "restore", "t1/app", "-o", out, "-b", "s3://"+bucket+"/app", "--endpoint", s.Endpoint, "--region", s.Region)
	restore.Env = append(env, "AWS_ACCESS_KEY_ID="+s.AccessKey, "AWS_SECRET_ACCESS_KEY="+s.SecretKey)
	if b, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s\nwatch log:\n%s", err, b, logs)
	}
	rdb, err := sql.Open("sqlite3", out)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	var n int
	if err := rdb.QueryRowContext(context.Background(), "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != rows {
		t.Fatalf("restored %d rows of %d committed\nwatch log:\n%s", n, rows, logs)
	}
}
