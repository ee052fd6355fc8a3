package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// sinkDumps reads smtp-sink's dumps whole, with the X-Mail-Args and
// X-Rcpt-Args lines that show the envelope exactly as it was sent.
func sinkDumps(s *kit.Sink) [][]byte {
	entries, _ := os.ReadDir(s.Dir)
	var out [][]byte
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join(s.Dir, e.Name())); err == nil {
			out = append(out, b)
		}
	}
	return out
}

// waitDump waits until one of the sink's dumps holds every line of want;
// smtp-sink creates a dump before it has written it, so its presence
// alone proves nothing.
func waitDump(t *testing.T, s *kit.Sink, what string, want ...string) {
	t.Helper()
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, what+" with "+strings.Join(want, " "), func() (bool, error) {
		for _, d := range sinkDumps(s) {
			ok := true
			for _, w := range want {
				ok = ok && bytes.Contains(d, []byte(w))
			}
			if ok {
				return true, nil
			}
		}
		return false, nil
	})
}

// Addresses keep their exact form from RCPT to storage, delivery and the
// notice (RFC 5321 §4.1.2): a quoted local part at a protected domain is
// accepted and delivered quoted, the bare <postmaster> (§4.5.1) is
// delivered to the first protected domain's postmaster, and a failure
// notice goes back to a quoted sender as RCPT TO:<"quoted local"@...>
// with the same To: field.
func TestQuotedAddressesFromRcptToNotice(t *testing.T) {
	custAddr, refuseAddr, senderAddr := kit.FreePort(t), kit.FreePort(t), kit.FreePort(t)
	cust := kit.StartSink(t, custAddr)
	refuse := kit.StartSink(t, refuseAddr, "-f", "RCPT") // every RCPT gets a 5xx
	sender := kit.StartSink(t, senderAddr)
	p := newProc(t, "--transport", "ext.test="+senderAddr)
	p.Start()
	p.MustCLI("admin", "domain", "add", "customer.test", "--destination", custAddr)
	p.MustCLI("admin", "domain", "add", "refuse.test", "--destination", refuseAddr)

	c := kit.NewClient(t, p.SMTP)
	c.Cmd("EHLO client.ext.test", "250")
	c.Cmd(`MAIL FROM:<"quoted local"@ext.test>`, "250")
	c.Cmd(`RCPT TO:<"john smith"@customer.test>`, "250")
	c.Cmd(`RCPT TO:<Postmaster>`, "250")
	c.Cmd("DATA", "354")
	c.Write("From: <\"quoted local\"@ext.test>\r\nSubject: quoted\r\n\r\nhello\r\n.\r\n")
	c.Expect("250")
	c.Cmd(`MAIL FROM:<"quoted local"@ext.test>`, "250")
	c.Cmd(`RCPT TO:<"jane doe"@refuse.test>`, "250")
	c.Cmd("DATA", "354")
	c.Write("Subject: to be refused\r\n\r\nhello\r\n.\r\n")
	c.Expect("250")
	c.Cmd("QUIT", "221")

	waitDump(t, cust, "delivery to the customer's server",
		"X-Mail-Args: <\"quoted local\"@ext.test>\n",
		"X-Rcpt-Args: <\"john smith\"@customer.test>\n",
		"X-Rcpt-Args: <postmaster@customer.test> ORCPT=RFC822;postmaster\n",
		"\nhello\n")
	waitDump(t, sender, "the failure notice at the sender's server",
		"X-Mail-Args: <>\n",
		"X-Rcpt-Args: <\"quoted local\"@ext.test>\n",
		"To: <\"quoted local\"@ext.test>\n",
		"Final-Recipient: rfc822; \"jane doe\"@refuse.test\n",
		"Subject: to be refused\n")
	if n := len(sinkDumps(refuse)); n != 0 {
		t.Errorf("the refusing server stored %d messages", n)
	}
}

// More sessions from one address than --max-client-connections: the
// extra one is greeted with 421 4.7.0 and closed, the others are served.
func TestClientConnectionLimitOfANode(t *testing.T) {
	p := newProc(t, "--max-client-connections", "2")
	p.Start()
	var held []*kit.Client
	for range 2 {
		held = append(held, kit.NewClient(t, p.SMTP)) // greeted with 220
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	over, err := kit.Dialer{Timeout: 10 * time.Second}.Open(ctx, p.SMTP)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	r, err := over.ReadReply()
	if err != nil || r.Code != 421 || !strings.HasPrefix(r.String(), "421 4.7.0") {
		t.Fatalf("the third session got %v, %v; want 421 4.7.0", r, err)
	}
	if _, err := over.ReadReply(); err == nil {
		t.Fatal("the refused session was not closed")
	}
	for _, c := range held {
		c.Cmd("EHLO client.example", "250")
		c.Cmd("QUIT", "221")
	}
}
