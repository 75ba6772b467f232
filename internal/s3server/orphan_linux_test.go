//go:build linux

package s3server

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const envOrphanHelper = "WALSYNC_S3SERVER_ORPHAN_HELPER"

// TestOrphanHelper is run as a child process by TestServerDiesWithItsStarter:
// it starts a server and exits without stopping it.
func TestOrphanHelper(t *testing.T) {
	if os.Getenv(envOrphanHelper) != "1" {
		return // only meaningful as a helper process
	}
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("PID %d\nDIR %s\n", s.Pid(), s.Base())
	os.Exit(0)
}

// A program that exits without calling Stop (panic, timeout, os.Exit)
// takes the server down with it.
func TestServerDiesWithItsStarter(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestOrphanHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), envOrphanHelper+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper process: %v\n%s%s", err, out, stderr.String())
	}
	var pid int
	var dir string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PID "); ok {
			pid, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(sc.Text(), "DIR "); ok {
			dir = v
		}
	}
	if pid == 0 || dir == "" {
		t.Fatalf("helper output lacks PID/DIR:\n%s", out)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) }) // left behind by design
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("versitygw (pid %d) still running 10s after its starter exited", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesized command name.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
