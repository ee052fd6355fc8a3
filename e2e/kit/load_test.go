package kit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMX is a minimal SMTP server that checks what the load generator
// sends and refuses every tenth recipient, so error counting is exercised.
type fakeMX struct {
	ln     net.Listener
	mu     sync.Mutex
	bodies int
	bad    []string
	wg     sync.WaitGroup
}

func startFakeMX(t *testing.T, size int) *fakeMX {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMX{ln: ln}
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() { f.serve(c, size) })
		}
	})
	return f
}

func (f *fakeMX) fail(format string, a ...any) {
	f.mu.Lock()
	f.bad = append(f.bad, fmt.Sprintf(format, a...))
	f.mu.Unlock()
}

func (f *fakeMX) serve(c net.Conn, size int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	fmt.Fprint(c, "220 fake ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimSuffix(line, "\r\n")
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			fmt.Fprint(c, "250-fake\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
		case strings.HasPrefix(cmd, "MAIL"), cmd == "RSET":
			fmt.Fprint(c, "250 ok\r\n")
		case strings.HasPrefix(cmd, "RCPT"):
			if strings.HasSuffix(cmd, "0@bench.test>") {
				fmt.Fprint(c, "451 4.3.0 try later\r\n")
			} else {
				fmt.Fprint(c, "250 ok\r\n")
			}
		case cmd == "DATA":
			fmt.Fprint(c, "354 go on\r\n")
			var msg bytes.Buffer
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				if !strings.HasSuffix(l, "\r\n") || strings.ContainsAny(strings.TrimSuffix(l, "\r\n"), "\r\n") {
					f.fail("line not ending in CRLF: %q", l)
				}
				if len(l) > 1000 {
					f.fail("line longer than 1000 octets")
				}
				msg.WriteString(l)
			}
			if msg.Len() != size {
				f.fail("message of %d bytes, want %d", msg.Len(), size)
			}
			if !bytes.Contains(msg.Bytes(), []byte("\r\n\r\n")) || !bytes.HasPrefix(msg.Bytes(), []byte("From: ")) {
				f.fail("no header/body split")
			}
			f.mu.Lock()
			f.bodies++
			f.mu.Unlock()
			fmt.Fprint(c, "250 2.0.0 queued\r\n")
		case cmd == "QUIT":
			fmt.Fprint(c, "221 bye\r\n")
			return
		default:
			fmt.Fprint(c, "500 what\r\n")
		}
	}
}

func TestLoadCountsAndErrors(t *testing.T) {
	for _, size := range []int{512, 4096, 4097, 4175} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			f := startFakeMX(t, size)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := Load(ctx, LoadConfig{
				Addrs: []string{f.ln.Addr().String()}, Sessions: 4, Messages: 300, Warmup: 20, Size: size, RcptDomain: "bench.test",
			})
			if err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, b := range f.bad {
				t.Error(b)
			}
			// Message numbers 20..319 are measured; those ending in 0 are refused.
			if res.Attempted != 300 || res.Errors != 30 || res.Accepted != 270 {
				t.Errorf("attempted %d, accepted %d, errors %d; want 300, 270, 30", res.Attempted, res.Accepted, res.Errors)
			}
			if res.WarmupErrors != 2 {
				t.Errorf("warm-up errors %d, want 2", res.WarmupErrors)
			}
			if f.bodies != 18+270 {
				t.Errorf("server saw %d messages, want %d", f.bodies, 18+270)
			}
			if len(res.ErrorKinds) != 1 || !strings.Contains(res.ErrorKinds[0].Text, "RCPT: 451") {
				t.Errorf("error kinds %+v", res.ErrorKinds)
			}
			if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 || res.Rate <= 0 {
				t.Errorf("figures %+v", res)
			}
		})
	}
}

func TestLoadStopsOnCancel(t *testing.T) {
	// A server that greets and then never answers EHLO's successor.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprint(c, "220 slow\r\n")
				r := bufio.NewReader(c)
				r.ReadString('\n')
				fmt.Fprint(c, "250 ok\r\n")
				r.ReadString('\n') // MAIL: never answered
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				r.ReadString('\n')
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Load(ctx, LoadConfig{Addrs: []string{ln.Addr().String()}, Sessions: 3, Messages: 10, Size: 1024, RcptDomain: "bench.test"})
	if err == nil {
		t.Fatal("want an error from a cancelled run")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancelled run took %v", d)
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	if p := Percentile(s, 0.5); p != 50 {
		t.Errorf("p50 %d", p)
	}
	if p := Percentile(s, 0.99); p != 99 {
		t.Errorf("p99 %d", p)
	}
	if p := Percentile(s[:1], 0.99); p != 1 {
		t.Errorf("p99 of one %d", p)
	}
	if p := Percentile(nil, 0.5); p != 0 {
		t.Errorf("empty %d", p)
	}
}

func TestLoadRoundRobin(t *testing.T) {
	a, b := startFakeMX(t, 1024), startFakeMX(t, 1024)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Load(ctx, LoadConfig{
		Addrs: []string{a.ln.Addr().String(), b.ln.Addr().String()}, Sessions: 4, Messages: 100, Size: 1024, RcptDomain: "bench.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	b.mu.Lock()
	defer a.mu.Unlock()
	defer b.mu.Unlock()
	if a.bodies == 0 || b.bodies == 0 || a.bodies+b.bodies != res.Accepted || res.Accepted != 90 {
		t.Errorf("server a saw %d, b %d, accepted %d; want both > 0 and 90 in all", a.bodies, b.bodies, res.Accepted)
	}
}
