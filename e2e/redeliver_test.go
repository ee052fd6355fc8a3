package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The leader dies in the middle of delivering the spool. Every attempt was
// recorded before dialing, so the new leader retries what was in flight
// once the lease runs out: no recipient is lost, and the duplicates that
// the retry may cause are counted.
func TestLeaderKilledMidDelivery(t *testing.T) {
	procs := startCluster(t, 3, "--delivery-lease", "3s")
	dest := freePort(t)
	procs[0].mustCLI("admin", "domain", "add", "customer.test", "--destination", dest)
	waitFor(t, "the domain on every node", 10*time.Second, func() bool {
		for _, p := range procs {
			if out, err := p.cli("admin", "domain", "list"); err != nil || !strings.Contains(out, "customer.test") {
				return false
			}
		}
		return true
	})
	const total = 12
	for i := 0; i < total; i++ {
		p := procs[i%3]
		reply, err := sendOnce(p.smtp, "sender@example.net", "u@customer.test", fmt.Sprintf("Subject: msg %d\r\n\r\nbody %d\r\n", i, i))
		if err != nil || !strings.HasPrefix(reply, "250") {
			t.Fatalf("message %d via %s: %q %v", i, p.id, reply, err)
		}
	}
	waitFor(t, "the domain to spool", 20*time.Second, func() bool {
		out, _ := procs[0].cli("admin", "domain", "list")
		return strings.Contains(out, "spooling")
	})

	// A slow customer server: a second before each DATA is answered.
	sink := startSmtpSink(t, dest, "-w", "1")
	leader := leaderProc(t, procs)
	leader.mustCLI("admin", "queue", "flush")
	waitFor(t, "the first deliveries", 30*time.Second, func() bool { return len(sink.messages()) >= 2 })
	leader.kill9()
	killedAt := time.Now()

	var survivor *proc
	for _, p := range procs {
		if p != leader {
			survivor = p
		}
	}
	waitFor(t, "every message delivered", 90*time.Second, func() bool {
		seen := map[string]bool{}
		for _, m := range sink.messages() {
			seen[subjectOf(m)] = true
		}
		return len(seen) == total
	})
	waitFor(t, "the queue to empty", 30*time.Second, func() bool {
		out, err := survivor.cli("admin", "queue", "list")
		return err == nil && strings.Contains(out, "\n0 messages")
	})
	count := map[string]int{}
	for _, m := range sink.messages() {
		count[subjectOf(m)]++
	}
	dups := 0
	for i := 0; i < total; i++ {
		n := count[fmt.Sprintf("msg %d", i)]
		if n == 0 {
			t.Errorf("msg %d never arrived", i)
		}
		dups += max(n-1, 0)
	}
	t.Logf("leader %s killed mid-delivery; all %d delivered %v later; %d duplicates", leader.id, total, time.Since(killedAt).Round(time.Millisecond), dups)
}
