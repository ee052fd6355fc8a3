package e2e

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// Ten thousand messages spool while the customer's server is down; when it
// comes back they all drain, and the test reports the rate.
func TestDrainTenThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("spools 10,000 messages")
	}
	const total = 10000
	dest := kit.FreePort(t)
	p := newProc(t)
	p.Start()
	p.MustCLI("admin", "domain", "add", "customer.test", "--destination", dest)

	body := "Subject: spooled\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 64)
	var sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for s := 0; s < 20; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := kit.NewClient(t, p.SMTP)
			c.Cmd("EHLO load.example", "250")
			for sent.Add(1) <= total {
				reply := c.Send("load@example.net", []string{"u@customer.test"}, body)
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
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "the domain to spool", func() (bool, error) {
		out, _ := p.CLI("admin", "domain", "list")
		return strings.Contains(out, "spooling"), nil
	})

	kit.StartCountingSink(t, dest)
	begin := time.Now()
	p.MustCLI("admin", "queue", "flush")
	kit.Wait(t, 5*time.Minute, 50*time.Millisecond, "the spool to drain", func() (bool, error) {
		out, err := p.CLI("status")
		return err == nil && strings.Contains(out, "queue: 0 messages"), nil
	})
	d := time.Since(begin)
	t.Logf("drained %d messages in %v: %.0f messages per second", total, d.Round(time.Millisecond), float64(total)/d.Seconds())
}
