package main

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLimitListener: connections beyond the limit are closed at once and
// the refusal is logged once; a closed connection frees its slot.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ln := newLimitListener(inner, 2, slog.New(slog.NewTextHandler(&logs, nil)))
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// refused reports whether the server closed c.
	refused := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF || (err != nil && !strings.Contains(err.Error(), "timeout"))
	}
	dial()
	dial()
	held := []net.Conn{<-accepted, <-accepted}
	for i := 0; i < 5; i++ {
		if c := dial(); !refused(c) {
			t.Fatalf("connection %d beyond the limit of 2 was not closed", i+1)
		}
	}
	if n := strings.Count(logs.String(), "status server refuses connections"); n != 1 {
		t.Errorf("5 refusals logged %d times, want once:\n%s", n, logs.String())
	}
	held[0].Close()
	held[0].Close() // twice: the slot is freed once
	c := dial()
	select {
	case a := <-accepted:
		a.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a freed slot was not given to the next connection")
	}
	_ = c
	if got := len(ln.slots); got != 1 {
		t.Errorf("%d slots taken, want 1 (the connection still held)", got)
	}
}
