package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// The leader dies in the middle of delivering the spool. Every attempt was
// recorded before dialing, so the new leader retries what was in flight
// once the lease runs out: no recipient is lost, and the duplicates that
// the retry may cause are counted.
func TestLeaderKilledMidDelivery(t *testing.T) {
	procs := startCluster(t, 3, "--delivery-lease", "3s")
	dest := kit.FreePort(t)
	procs[0].MustCLI("admin", "domain", "add", "customer.test", "--destination", dest)
	kit.Wait(t, 10*time.Second, 50*time.Millisecond, "the domain on every node", func() (bool, error) {
		for _, p := range procs {
			if out, err := p.CLI("admin", "domain", "list"); err != nil || !strings.Contains(out, "customer.test") {
				return false, nil
			}
		}
		return true, nil
	})
	const total = 12
	for i := 0; i < total; i++ {
		p := procs[i%3]
		sent, err := kit.Send(p.SMTP, "sender@example.net", []string{"u@customer.test"}, fmt.Sprintf("Subject: msg %d\r\n\r\nbody %d\r\n", i, i))
		reply := sent.String()
		if err != nil || !strings.HasPrefix(reply, "250") {
			t.Fatalf("message %d via %s: %q %v", i, p.ID, reply, err)
		}
	}
	kit.Wait(t, 20*time.Second, 50*time.Millisecond, "the domain to spool", func() (bool, error) {
		out, _ := procs[0].CLI("admin", "domain", "list")
		return strings.Contains(out, "spooling"), nil
	})

	// A slow customer server: a second before each DATA is answered.
	sink := kit.StartSink(t, dest, "-w", "1")
	leader := kit.Leader(procs)
	leader.MustCLI("admin", "queue", "flush")
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "the first deliveries", func() (bool, error) { return len(sink.Messages()) >= 2, nil })
	leader.Kill()
	killedAt := time.Now()

	var survivor *kit.Proc
	for _, p := range procs {
		if p != leader {
			survivor = p
		}
	}
	kit.Wait(t, 90*time.Second, 50*time.Millisecond, "every message delivered", func() (bool, error) {
		seen := map[string]bool{}
		for _, m := range sink.Messages() {
			seen[subjectOf(m)] = true
		}
		return len(seen) == total, nil
	})
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "the queue to empty", func() (bool, error) {
		out, err := survivor.CLI("admin", "queue", "list")
		return err == nil && strings.Contains(out, "\n0 messages"), nil
	})
	count := map[string]int{}
	for _, m := range sink.Messages() {
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
	t.Logf("leader %s killed mid-delivery; all %d delivered %v later; %d duplicates", leader.ID, total, time.Since(killedAt).Round(time.Millisecond), dups)
}
