package faults_test

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func randomSecret(prefix string) string {
	b := make([]byte, 20)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return prefix + hex.EncodeToString(b)
}

// noSecret fails the test if out holds a registered secret.
func noSecret(t *testing.T, what, out string) {
	t.Helper()
	for _, l := range findSecrets(what, out) {
		t.Errorf("credential leak: %s", l)
	}
}

// TestCredentialsNeverPrinted runs walsync with credentials it must never
// print, in every situation that prints errors: a wrong secret against the
// real server (watch, with debug logging and its status endpoint, then a
// SIGQUIT goroutine dump), every other command with it, credentials
// written into the replica URL and the endpoint URL, a config file that
// holds the secret next to a bad value, and a broken shared credentials
// file. Everything printed is searched for the secrets (and, at the end of
// the suite, everything printed by every test).
func TestCredentialsNeverPrinted(t *testing.T) {
	r := scenario(t, "security: credentials never in logs, errors, status or crash output")
	srv := s3Target(t)
	secret := randomSecret("wsSECRET")
	token := randomSecret("wsTOKEN")
	addSecret(secret, "a secret access key")
	addSecret(token, "a session token")
	keyID := "AKIAWS" + strings.ToUpper(randomSecret("")[:14])
	wrong := srv.withEnv(s3Env(keyID, secret))
	withToken := srv.withEnv(append(s3Env(srv.srv.AccessKey, srv.srv.SecretKey), "AWS_SESSION_TOKEN="+token))
	realWrong := srv.withEnv(s3Env(srv.srv.AccessKey, secret))

	db := filepath.Join(t.TempDir(), "d", "app.db")
	os.MkdirAll(filepath.Dir(db), 0o755)
	sqlite3(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(1000));")
	r.wrote(1)

	// watch: unknown key ID, and the real key ID with a wrong secret
	// (SignatureDoesNotMatch), debug logs, status served, then SIGQUIT.
	for _, tg := range []*target{wrong, withToken, realWrong} {
		r.run()
		port := freePort(t)
		p := startWatch(t, tg, []string{"GOTRACEBACK=all"}, db, "--log-level", "debug", "--addr", ":"+port, "--sync-interval", "200ms")
		p.waitLog(t, `access to bucket`, time.Minute)
		status := getStatus(t, port)
		noSecret(t, "the status endpoint", status)
		if !strings.Contains(status, `"failing": 1`) && !strings.Contains(status, "refused") {
			t.Errorf("the status endpoint does not report the failing database:\n%s", status)
		}
		newCapture(t.Name() + ": status").Write([]byte(status))
		syscall.Kill(p.pid(), syscall.SIGQUIT)
		<-p.done
		if !strings.Contains(p.log.String(), "goroutine ") {
			t.Errorf("SIGQUIT produced no goroutine dump (exit %v)", p.err)
		}
		noSecret(t, "walsync watch and its crash dump", p.log.String())
	}
	// Every other command with the wrong credentials.
	for i, args := range [][]string{
		{"restore", "d/app", "-o", filepath.Join(t.TempDir(), "o.db")},
		{"restore", "d/app", "--dry-run"},
		{"list"},
		{"verify", "d/app", "--restore"},
		{"verify", "--all", "--json"},
		{"snapshot", db},
		{"compact", "d/app", "--force"},
	} {
		r.run()
		tg := []*target{wrong, withToken, realWrong}[i%3]
		out, stderr, code := cli(t, tg, []string{"GOTRACEBACK=all"}, args...)
		if code == 0 {
			t.Errorf("walsync %v with a wrong secret succeeded", args)
		}
		noSecret(t, "walsync "+args[0], out+stderr)
	}
	// Credentials written into URLs.
	for _, c := range []struct {
		name string
		args []string
	}{
		{"replica URL", []string{"list", "-b", "s3://" + keyID + ":" + secret + "@" + srv.bucket + "/x", "--endpoint", srv.srv.Endpoint}},
		{"endpoint URL", []string{"list", "-b", srv.url, "--endpoint", "http://" + keyID + ":" + secret + "@" + strings.TrimPrefix(srv.srv.Endpoint, "http://")}},
		{"endpoint URL, unreachable", []string{"list", "-b", srv.url, "--endpoint", "http://" + keyID + ":" + secret + "@127.0.0.1:1"}},
	} {
		r.run()
		out, stderr, _ := cli(t, nil, s3Env(keyID, "x"+secret[1:]), c.args...)
		addSecret("x"+secret[1:], "a secret access key")
		noSecret(t, "a secret in the "+c.name, out+stderr)
	}
	// A config file that holds the secret, with a bad value elsewhere, and
	// one with the secret in a replica URL.
	dir := t.TempDir()
	for i, cfg := range []string{
		"access-key-id: " + keyID + "\nsecret-access-key: " + secret + "\ndbs:\n  - path: " + db + "\n    replica:\n      url: " + srv.url + "\n      endpoint: " + srv.srv.Endpoint + "\nwalsync:\n  sync-interval: -5s\n",
		"dbs:\n  - path: " + db + "\n    replica:\n      url: s3://" + keyID + ":" + secret + "@" + srv.bucket + "/x\n",
		"dbs:\n  - path: " + db + "\n    replica:\n      type: s3\n      bucket: " + srv.bucket + "\n      access-key-id: " + keyID + "\n      secret-access-key: " + secret + "\n      endpoint: " + srv.srv.Endpoint + "\n      sync-interval: nonsense\n",
	} {
		r.run()
		path := filepath.Join(dir, fmt.Sprintf("walsync-%d.yml", i))
		os.WriteFile(path, []byte(cfg), 0o600)
		out, stderr, code := cli(t, nil, nil, "watch", "--config", path)
		if code == 0 {
			t.Errorf("watch --config with a bad value succeeded:\n%s", cfg)
		}
		noSecret(t, "watch --config", out+stderr)
	}
	// A shared credentials file with the secret and a broken line.
	creds := filepath.Join(dir, "credentials")
	os.WriteFile(creds, []byte("[default]\naws_access_key_id = "+keyID+"\naws_secret_access_key = "+secret+"\n[broken\naws_secret_access_key "+secret+"\n"), 0o600)
	for _, profile := range []string{"default", "broken", "missing"} {
		r.run()
		env := []string{"AWS_SHARED_CREDENTIALS_FILE=" + creds, "AWS_PROFILE=" + profile, "AWS_REGION=us-east-1"}
		t2 := *srv
		t2.env = nil
		out, stderr, _ := cli(t, &t2, env, "list")
		noSecret(t, "a credentials file (profile "+profile+")", out+stderr)
	}
	r.restored()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// getStatus fetches http://127.0.0.1:PORT/status, waiting for it to serve.
func getStatus(t *testing.T, port string) string {
	t.Helper()
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get("http://127.0.0.1:" + port + "/status")
		if err != nil {
			last = err
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			return string(b)
		}
		last = fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	t.Fatalf("status on port %s: %v", port, last)
	return ""
}

// listeners returns the local addresses of the TCP sockets pid listens on.
func listeners(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, file := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] { // 0A: LISTEN
				continue
			}
			out = append(out, procAddr(fields[1]))
		}
		f.Close()
	}
	return out
}

// procAddr decodes /proc/net/tcp's "0100007F:1F90" (little-endian words).
func procAddr(s string) string {
	hexIP, hexPort, _ := strings.Cut(s, ":")
	b, _ := hex.DecodeString(hexIP)
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	port, _ := strconv.ParseUint(hexPort, 16, 16)
	return net.JoinHostPort(net.IP(b).String(), strconv.Itoa(int(port)))
}

func isLoopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TestHTTPBindsLocalhost: walsync serves nothing over HTTP unless asked;
// asked with a bare port (--addr :PORT, or addr: ":PORT" in the config
// file), it listens on the loopback interface only.
func TestHTTPBindsLocalhost(t *testing.T) {
	r := scenario(t, "security: HTTP served on localhost only by default")
	db := filepath.Join(t.TempDir(), "d", "app.db")
	os.MkdirAll(filepath.Dir(db), 0o755)
	sqlite3(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
	r.wrote(1)
	tg := fileTarget(t)

	r.run()
	p := startWatch(t, tg, nil, db, "--sync-interval", "200ms")
	p.waitLog(t, `writing the first full image \(L0\)`, time.Minute)
	if l := listeners(t, p.pid()); len(l) > 0 {
		t.Errorf("walsync watch without --addr listens on %v", l)
	}
	p.stopClean(t)

	port := freePort(t)
	cfg := filepath.Join(t.TempDir(), "walsync.yml")
	os.WriteFile(cfg, []byte("addr: \":"+port+"\"\ndbs:\n  - path: "+db+"\n    replica:\n      url: file://"+tg.url+"\n"), 0o600)
	for _, c := range []struct {
		name string
		tg   *target
		args []string
	}{
		{"--addr :PORT", tg, []string{db, "--addr", ":" + port}},
		{"addr in the config file", &target{}, []string{"--config", cfg}},
	} {
		r.run()
		var p *proc
		if c.tg.url == "" {
			p = startWatchRaw(t, nil, append([]string{"watch"}, c.args...)...)
		} else {
			p = startWatch(t, c.tg, nil, c.args...)
		}
		status := getStatus(t, port)
		if !strings.Contains(status, db) {
			t.Errorf("%s: status does not list the database:\n%s", c.name, status)
		}
		l := listeners(t, p.pid())
		if len(l) == 0 {
			t.Errorf("%s: no listening socket found", c.name)
		}
		for _, a := range l {
			if !isLoopback(a) {
				t.Errorf("%s: walsync listens on %s, beyond this machine", c.name, a)
			}
		}
		// Not reachable on another local address of this machine.
		if ip := nonLoopbackIP(); ip != "" {
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), time.Second); err == nil {
				c.Close()
				t.Errorf("status is reachable on %s:%s", ip, port)
			}
		}
		t.Logf("%s: listening on %v", c.name, l)
		p.stopClean(t)
	}
	r.restored()
}

func nonLoopbackIP() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}
