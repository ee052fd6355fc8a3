package e2e

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Ten thousand messages spool while the customer's server is down; when it
// comes back they all drain, and the test reports the rate.
func TestDrainTenThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("spools 10,000 messages")
	}
	const total = 10000
	dest := freePort(t)
	p := newProc(t)
	p.start()
	p.mustCLI("admin", "domain", "add", "customer.test", "--destination", dest)

	body := "Subject: spooled\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 64)
	var sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for s := 0; s < 20; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialSMTP(t, p.smtp)
			c.cmd("EHLO load.example", "250")
			for sent.Add(1) <= total {
				reply := c.send("load@example.net", []string{"u@customer.test"}, body)
				if !strings.HasPrefix(reply, "250") {
					t.Errorf("reply %q", reply)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("spooled %d messages of %d bytes in %v", total, len(body), time.Since(start).Round(time.Millisecond))
	if t.Failed() {
		return
	}
	waitFor(t, "the domain to spool", 30*time.Second, func() bool {
		out, _ := p.cli("admin", "domain", "list")
		return strings.Contains(out, "spooling")
	})

	startSmtpSinkFast(t, dest)
	begin := time.Now()
	p.mustCLI("admin", "queue", "flush")
	waitFor(t, "the spool to drain", 5*time.Minute, func() bool {
		out, err := p.cli("status")
		return err == nil && strings.Contains(out, "queue: 0 messages")
	})
	d := time.Since(begin)
	t.Logf("drained %d messages in %v: %.0f messages per second", total, d.Round(time.Millisecond), float64(total)/d.Seconds())
}
