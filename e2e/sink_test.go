package e2e

import (
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// The customer's server is down: the message is spooled. When a real SMTP
// server comes up on that port, `lifeline admin queue flush` delivers it
// byte for byte and the queue is empty.
func TestSpoolThenFlushToSmtpSink(t *testing.T) {
	dest := kit.FreePort(t)
	p := newProc(t)
	p.Start()
	p.MustCLI("admin", "domain", "add", "customer.test", "--destination", dest)

	body := "From: Sender <sender@example.net>\r\nTo: alice@customer.test\r\nSubject: during the outage\r\n\r\n" +
		strings.Repeat("Please call me back about the contract.\r\n", 50)
	c := kit.NewClient(t, p.SMTP)
	c.Cmd("EHLO client.example.net", "250")
	id := queueID(t, c.Send("sender@example.net", []string{"alice@customer.test"}, body))

	kit.Wait(t, 15*time.Second, 50*time.Millisecond, "a failed first attempt", func() (bool, error) {
		out, _ := p.CLI("admin", "queue", "show", id)
		return strings.Contains(out, "attempts 1") && strings.Contains(out, "refused"), nil
	})
	if out := p.MustCLI("admin", "domain", "list"); !strings.Contains(out, "spooling") {
		t.Fatalf("domain list does not show the domain spooling:\n%s", out)
	}

	sink := kit.StartSink(t, dest)
	p.MustCLI("admin", "queue", "flush")
	kit.Wait(t, 15*time.Second, 50*time.Millisecond, "the queue to drain", func() (bool, error) {
		return strings.Contains(p.MustCLI("admin", "queue", "list"), "0 messages"), nil
	})
	got := sink.Messages()
	if len(got) != 1 {
		t.Fatalf("smtp-sink got %d messages, want 1", len(got))
	}
	// smtp-sink stores lines with LF endings; compare in that form.
	want := strings.ReplaceAll(body, "\r\n", "\n")
	if !strings.HasPrefix(string(got[0]), "Received: ") || !strings.HasSuffix(string(got[0]), want) {
		t.Fatalf("delivered message differs from the one sent:\n%s", got[0])
	}
	if out := p.MustCLI("admin", "domain", "list"); strings.Contains(out, "spooling") {
		t.Fatalf("domain still spooling after the drain:\n%s", out)
	}
}
