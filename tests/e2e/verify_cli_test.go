package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/superfly/ltx"

	"github.com/walsync/walsync/internal/testenv"
	"github.com/walsync/walsync/storage/file"
)

// verifyJSON is the part of "walsync verify --json" the tests read.
type verifyJSON struct {
	OK        bool `json:"ok"`
	Databases []struct {
		Name       string      `json:"name"`
		OK         bool        `json:"ok"`
		Files      int         `json:"files"`
		Levels     map[int]int `json:"levels"`
		LatestTXID ltx.TXID    `json:"latest_txid"`
		Restore    *struct {
			TXID ltx.TXID `json:"txid"`
		} `json:"restore"`
		Problems []struct {
			Object  string `json:"object"`
			Kind    string `json:"kind"`
			Message string `json:"message"`
		} `json:"problems"`
	} `json:"databases"`
	Summary struct {
		Databases int            `json:"databases"`
		Failed    int            `json:"failed"`
		Files     int            `json:"files"`
		Problems  int            `json:"problems"`
		ByKind    map[string]int `json:"by_kind"`
	} `json:"summary"`
}

func parseVerifyJSON(t *testing.T, out string) verifyJSON {
	t.Helper()
	var v verifyJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("verify --json printed invalid JSON: %v\n%s", err, out)
	}
	return v
}

// TestCLIVerify: replicas written by "walsync snapshot" (L0 files and L9
// snapshots) verify; a byte flipped in one L0 object fails verification
// with that object named, in text and in --json; --all covers every
// database and fails when one does.
func TestCLIVerify(t *testing.T) {
	for bname, mk := range map[string]func() (backendArgs, func(t *testing.T, name string) string){
		"file": func() (backendArgs, func(*testing.T, string) string) {
			b := backendArgs{url: filepath.Join(t.TempDir(), "replica")}
			return b, func(t *testing.T, name string) string { return corruptFileL0(t, file.New(filepath.Join(b.url, name))) }
		},
		"s3": func() (backendArgs, func(*testing.T, string) string) {
			srv := testenv.S3(t)
			bucket := srv.NewBucket(t)
			b := backendArgs{
				url:  "s3://" + bucket + "/backups",
				args: []string{"--endpoint", srv.Endpoint},
				env:  []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_REGION=us-east-1"},
			}
			return b, func(t *testing.T, name string) string { return corruptS3L0(t, srv, bucket, "backups/"+name) }
		},
	} {
		t.Run(bname, func(t *testing.T) {
			b, corrupt := mk()
			dir := t.TempDir()
			for _, tenant := range []string{"t1", "t2"} {
				p := filepath.Join(dir, tenant, "app.db")
				os.MkdirAll(filepath.Dir(p), 0o755)
				sqlite3(t, p, "PRAGMA journal_mode=WAL; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, data BLOB);")
				for i := 0; i < 4; i++ {
					sqlite3(t, p, fmt.Sprintf("INSERT INTO notes (body, data) VALUES ('note %d', randomblob(%d));", i, 2000+i*3000))
					_, stderr, code := walsyncCmd(t, b.env, append([]string{"snapshot", p, "-b", b.url}, b.args...)...)
					if code != 0 {
						t.Fatalf("snapshot %s: exit %d: %s", p, code, stderr)
					}
				}
			}
			verifyArgs := func(args ...string) []string {
				return append(append([]string{"verify"}, args...), append([]string{"-b", b.url}, b.args...)...)
			}

			// Healthy.
			out, stderr, code := walsyncCmd(t, b.env, verifyArgs("t1/app", "--restore")...)
			if code != 0 || !strings.Contains(out, "t1/app: ") || !strings.Contains(out, ": OK") || !strings.Contains(out, "integrity_check") {
				t.Fatalf("verify --restore of a healthy replica: exit %d\n%s%s", code, out, stderr)
			}
			out, stderr, code = walsyncCmd(t, b.env, verifyArgs("t2/app", "--json")...)
			v := parseVerifyJSON(t, out)
			if code != 0 || !v.OK || len(v.Databases) != 1 || !v.Databases[0].OK || v.Databases[0].Problems == nil ||
				len(v.Databases[0].Problems) != 0 || v.Databases[0].Levels[0] != 4 || v.Databases[0].Levels[9] != 4 || v.Databases[0].LatestTXID != 4 {
				t.Fatalf("verify --json of a healthy replica: exit %d\n%s%s", code, out, stderr)
			}
			out, stderr, code = walsyncCmd(t, b.env, verifyArgs("--all", "--strict-snapshots")...)
			if code != 0 || strings.Count(out, ": OK") != 2 || !strings.Contains(out, "restorable from TXID 1") {
				t.Fatalf("verify --all of healthy replicas: exit %d\n%s%s", code, out, stderr)
			}

			// One byte flipped in one object of t2.
			obj := corrupt(t, "t2/app")
			out, stderr, code = walsyncCmd(t, b.env, verifyArgs("t2/app", "--restore")...)
			if code != 1 || !strings.Contains(out, obj+": corrupt: ") || !strings.Contains(stderr, "verification failed") {
				t.Fatalf("verify of a corrupt replica: exit %d, want 1 naming %s\n%s%s", code, obj, out, stderr)
			}
			out, stderr, code = walsyncCmd(t, b.env, verifyArgs("t2/app", "--json")...)
			v = parseVerifyJSON(t, out)
			if code != 1 || v.OK || len(v.Databases) != 1 || v.Databases[0].OK || len(v.Databases[0].Problems) != 1 ||
				v.Databases[0].Problems[0].Object != obj || v.Databases[0].Problems[0].Kind != "corrupt" || v.Databases[0].Problems[0].Message == "" ||
				v.Summary.Problems != 1 || v.Summary.ByKind["corrupt"] != 1 || v.Summary.Failed != 1 {
				t.Fatalf("verify --json of a corrupt replica: exit %d\n%s%s", code, out, stderr)
			}
			out, stderr, code = walsyncCmd(t, b.env, verifyArgs("--all", "--json")...)
			v = parseVerifyJSON(t, out)
			if code != 1 || v.OK || v.Summary.Databases != 2 || v.Summary.Failed != 1 {
				t.Fatalf("verify --all --json with one corrupt replica: exit %d\n%s%s", code, out, stderr)
			}
			for _, d := range v.Databases {
				if d.OK != (d.Name == "t1/app") {
					t.Fatalf("verify --all: %s ok=%v\n%s", d.Name, d.OK, out)
				}
			}
			out, stderr, code = walsyncCmd(t, b.env, verifyArgs("--all")...)
			if code != 1 || !strings.Contains(out, "t1/app: ") || !strings.Contains(out, obj+": corrupt: ") || !strings.Contains(stderr, "1 of 2 databases failed") {
				t.Fatalf("verify --all with one corrupt replica: exit %d\n%s%s", code, out, stderr)
			}
		})
	}
}

// corruptFileL0 flips a byte in the middle of the second L0 file of a file
// replica, in place (its SHA-256 attribute stays), and returns its name.
func corruptFileL0(t *testing.T, c *file.Client) string {
	t.Helper()
	entries, err := os.ReadDir(c.LevelDir(0))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".ltx") {
			names = append(names, e.Name())
		}
	}
	if len(names) < 2 {
		t.Fatalf("L0 of %s holds %v", c, names)
	}
	p := filepath.Join(c.LevelDir(0), names[1])
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x08
	if _, err := f.WriteAt(b, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	return "L0/" + names[1]
}

// corruptS3L0 replaces the second L0 object under prefix with a copy that
// has one byte flipped and the original's metadata (so its recorded SHA-256
// no longer matches), with the aws CLI, and returns its name.
func corruptS3L0(t *testing.T, srv *testenv.S3Server, bucket, prefix string) string {
	t.Helper()
	out := srv.AWS(t, "s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix+"/0000/", "--output", "json")
	var l struct{ Contents []struct{ Key string } }
	if err := json.Unmarshal(out, &l); err != nil || len(l.Contents) < 2 {
		t.Fatalf("listing L0 of %s: %v\n%s", prefix, err, out)
	}
	key := l.Contents[1].Key
	var head struct{ Metadata map[string]string }
	if err := json.Unmarshal(srv.AWS(t, "s3api", "head-object", "--bucket", bucket, "--key", key, "--output", "json"), &head); err != nil {
		t.Fatal(err)
	}
	body := filepath.Join(t.TempDir(), "object")
	srv.AWS(t, "s3api", "get-object", "--bucket", bucket, "--key", key, body)
	b, err := os.ReadFile(body)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x08
	if err := os.WriteFile(body, b, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"s3api", "put-object", "--bucket", bucket, "--key", key, "--body", body}
	if len(head.Metadata) > 0 {
		var md []string
		for k, v := range head.Metadata {
			md = append(md, k+"="+v)
		}
		args = append(args, "--metadata", strings.Join(md, ","))
	}
	srv.AWS(t, args...)
	return "L0/" + path.Base(key)
}

// TestCLIVerifyUsage: verify's argument errors exit 2, --help exits 0.
func TestCLIVerifyUsage(t *testing.T) {
	out, stderr, code := walsyncCmd(t, nil, "verify", "--help")
	if code != 0 || !strings.Contains(out+stderr, "Usage: walsync verify") {
		t.Fatalf("verify --help: exit %d\n%s%s", code, out, stderr)
	}
	replica := filepath.Join(t.TempDir(), "replica")
	for _, args := range [][]string{
		{"verify", "-b", replica},
		{"verify", "x/app", "--all", "-b", replica},
		{"verify", "x/app"},
	} {
		out, stderr, code := walsyncCmd(t, nil, args...)
		if code != 2 {
			t.Fatalf("%v: exit %d, want 2\n%s%s", args, code, out, stderr)
		}
	}
	out, stderr, code = walsyncCmd(t, nil, "verify", "x/app", "-b", replica)
	if code != 1 || !strings.Contains(out+stderr, "no databases under") {
		t.Fatalf("verify of a missing database: exit %d\n%s%s", code, out, stderr)
	}
	if out, _, _ := walsyncCmd(t, nil, "--help"); !strings.Contains(out, "walsync verify") {
		t.Fatalf("the usage text does not list verify:\n%s", out)
	}
}
