package faults_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tcpSwitch forwards TCP connections from a fixed 127.0.0.1 port to a
// target, and can take the "server" down: down closes the listener (new
// connections are refused, as by a stopped server) and resets every open
// connection; up listens on the same port again.
type tcpSwitch struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func newSwitch(t *testing.T, target string) *tcpSwitch {
	t.Helper()
	s := &tcpSwitch{target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.down)
	return s
}

// URL is the switch's endpoint.
func (s *tcpSwitch) URL() string { return "http://" + s.addr }

func (s *tcpSwitch) serve(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.forward(c)
		}
	}()
}

func (s *tcpSwitch) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *tcpSwitch) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *tcpSwitch) forward(c net.Conn) {
	u, err := net.DialTimeout("tcp", s.target, 10*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !s.track(c) || !s.track(u) {
		reset(c)
		reset(u)
		return
	}
	defer s.untrack(c)
	defer s.untrack(u)
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go pipe(u, c)
	go pipe(c, u)
	wg.Wait()
	c.Close()
	u.Close()
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// down stops listening and resets every connection.
func (s *tcpSwitch) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		reset(c)
		delete(s.conns, c)
	}
}

// up listens on the same port again.
func (s *tcpSwitch) up(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			s.serve(ln)
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			t.Fatalf("listen on %s again: %v", s.addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
