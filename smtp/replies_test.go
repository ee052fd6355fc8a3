package smtp

import (
	"net"
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// TestOutOfSequence: commands in the wrong order get 503 5.5.1 (RFC 5321
// §4.1.4, §4.3.2), never 502, and the session stays usable.
func TestOutOfSequence(t *testing.T) {
	q := newFakeQueue(protected)
	srvTLS, pool := newTLS(t)
	ts := startServer(t, q, func(c *Config) { c.TLSConfig = srvTLS })

	c := ts.dial()
	c.cmd("MAIL FROM:<s@example.org>", 503, "5.5.1") // before EHLO
	c.hello()
	c.cmd("RCPT TO:<u@protected.test>", 503, "5.5.1") // before MAIL
	c.cmd("DATA", 503, "5.5.1")                       // before MAIL
	c.send("BDAT 5 LAST\r\nhello")                    // the chunk is read and dropped
	c.expect(503, "5.5.1")
	c.cmd("MAIL FROM:<s@example.org>", 250, "2.1.0")
	c.cmd("DATA", 503, "5.5.1") // before RCPT
	c.cmd("MAIL FROM:<s@example.org>", 503, "5.5.1")
	c.cmd("STARTTLS", 503, "5.5.1") // inside a transaction
	c.cmd("RCPT TO:<u@protected.test>", 250, "2.1.5")
	if code, msg := c.data("Subject: in order\r\n\r\nhi\r\n.\r\n"); code != 250 {
		t.Fatalf("the session after out-of-sequence commands: %d %s", code, msg)
	}
	c.cmd("QUIT", 221, "")

	// After STARTTLS the client must greet again (RFC 3207 §4.2).
	c = rawTLS(t, ts.dial(), pool)
	c.cmd("MAIL FROM:<s@example.org>", 503, "5.5.1")
	c.hello()
	c.cmd("STARTTLS", 503, "5.5.1") // TLS already active
	c.cmd("MAIL FROM:<s@example.org>", 250, "")
	if n := len(q.messages()); n != 1 {
		t.Fatalf("%d messages queued, want 1", n)
	}
}

// TestAuthNotOffered: the MX never offers AUTH, so AUTH is a command we do
// not implement, 502 5.5.1 (RFC 5321 §4.2.4), before TLS and after it;
// never 523 ("TLS required"), which would suggest that it exists.
func TestAuthNotOffered(t *testing.T) {
	q := newFakeQueue(protected)
	srvTLS, pool := newTLS(t)
	ts := startServer(t, q, func(c *Config) { c.TLSConfig = srvTLS })
	c := ts.dial()
	if ext := c.hello(); strings.Contains(ext, "AUTH") {
		t.Fatalf("EHLO offers AUTH:\n%s", ext)
	}
	c.cmd("AUTH PLAIN AGFAYgBj", 502, "5.5.1")
	c.cmd("AUTH LOGIN", 502, "5.5.1")
	c = rawTLS(t, ts.dial(), pool)
	if ext := c.hello(); strings.Contains(ext, "AUTH") {
		t.Fatalf("EHLO offers AUTH inside TLS:\n%s", ext)
	}
	c.cmd("AUTH PLAIN AGFAYgBj", 502, "5.5.1")
	c.cmd("MAIL FROM:<s@example.org> AUTH=<>", 555, "5.5.4") // RFC 4954 §5 without AUTH
	c.cmd("MAIL FROM:<s@example.org>", 250, "")
}

// TestOtherReplies: the rest of the command set answers as RFC 5321 says.
func TestOtherReplies(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, nil)
	c := ts.dial()
	c.cmd("EHLO", 501, "5.5.4")
	c.cmd("HELO client.example", 250, "mx.test")
	c.cmd("STARTTLS", 502, "5.5.1") // not offered without a certificate
	c.cmd("EXPN staff", 502, "5.5.1")
	c.cmd("HELP", 502, "5.5.1")
	c.cmd("VRFY someone", 252, "")
	c.cmd("NOOP anything", 250, "2.0.0")
	c.cmd("RSET now", 501, "5.5.4")
	c.cmd("MAIL FROM:<s@example.org> BODY=BINARYMIME", 555, "5.5.4")
	c.cmd("MAIL FROM:<s@example.org> X-UNKNOWN=1", 555, "5.5.4") // RFC 5321 §4.1.1.11
	c.cmd("MAIL FROM:<s@example.org> SIZE=1 SIZE=2", 501, "5.5.4")
	c.cmd("MAIL FROM:<s@example.org> SIZE=99999999999999999999999", 552, "5.3.4")
	c.cmd("MAIL FROM:s@example.org", 250, "") // brackets are optional, as Postfix has them
	c.cmd("RCPT TO:<u@protected.test> X-UNKNOWN", 555, "5.5.4")
	c.cmd("RCPT TO:<u@protected.test> ORCPT=utf-8;\\x{FC}@protected.test", 250, "")
	c.cmd("DATA now", 501, "5.5.4")
	if code, _ := c.data("x\r\n.\r\n"); code != 250 {
		t.Fatalf("DATA: %d", code)
	}
	if got := q.messages()[0]; got.Env.Recipients[0].ORCPT != "UTF-8;ü@protected.test" {
		t.Errorf("ORCPT %q", got.Env.Recipients[0].ORCPT)
	}
	// HELO means SMTP in the Received: field (RFC 5321 §4.4).
	if body := string(q.messages()[0].Body); !strings.Contains(body, "with SMTP id") {
		t.Errorf("Received: after HELO:\n%s", body)
	}
}

// TestPostmaster: RFC 5321 §4.5.1 requires <Postmaster> without a domain to
// be accepted; it goes to the mailbox the node names.
func TestPostmaster(t *testing.T) {
	q := newFakeQueue(protected)
	q.postmaster = "postmaster@protected.test"
	ts := startServer(t, q, nil)
	c := ts.dial()
	c.hello()
	c.cmd("MAIL FROM:<s@example.org>", 250, "")
	c.cmd("RCPT TO:<postmaster>", 250, "2.1.5")
	c.cmd("RCPT TO:<PostMaster>", 250, "2.1.5") // case-insensitive, and once
	if code, msg := c.data("Subject: to the postmaster\r\n\r\nhi\r\n.\r\n"); code != 250 {
		t.Fatalf("%d %s", code, msg)
	}
	got := q.messages()[0].Env.Recipients
	if len(got) != 1 || got[0].Address != "postmaster@protected.test" || got[0].Domain != protected || got[0].ORCPT != "RFC822;postmaster" {
		t.Fatalf("recipients %+v", got)
	}

	// An operator's address outside the protected domains is still the
	// operator's choice, not the client's: accepted.
	q.set(func(q *fakeQueue) { q.postmaster = `"mail admin"@operator.example` })
	c.cmd("MAIL FROM:<s@example.org>", 250, "")
	c.cmd("RCPT TO:<Postmaster>", 250, "")
	c.cmd("RCPT TO:<someone@operator.example>", 554, "5.7.1") // the domain itself is not protected
	if code, _ := c.data("x\r\n.\r\n"); code != 250 {
		t.Fatal(code)
	}
	if got := q.messages()[1].Env.Recipients; len(got) != 1 || got[0].Address != `"mail admin"@operator.example` {
		t.Fatalf("recipients %+v", got)
	}

	q.set(func(q *fakeQueue) { q.postmaster = "" })
	c.cmd("MAIL FROM:<s@example.org>", 250, "")
	c.cmd("RCPT TO:<postmaster>", 550, "5.1.1")
	c.cmd("RCPT TO:<postmaster@evil.test>", 554, "5.7.1") // with a domain it is an ordinary mailbox
	c.cmd("RCPT TO:<postmaster@protected.test>", 250, "")
}

// TestQuotedLocalParts: a quoted local part at a protected domain is
// accepted and kept exactly, for the recipient and the sender alike
// (RFC 5321 §4.1.2); spellings of one mailbox count once (§2.4).
func TestQuotedLocalParts(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, nil)
	c := ts.dial()
	c.hello()
	c.cmd(`MAIL FROM:<"quoted local"@ext.example>`, 250, "")
	c.cmd(`RCPT TO:<"john smith"@protected.test>`, 250, "")
	c.cmd(`RCPT TO:<"john\ smith"@Protected.Test>`, 250, "") // the same mailbox
	c.cmd(`RCPT TO:<"John Smith"@protected.test>`, 250, "")  // another one: case counts
	c.cmd(`RCPT TO:<"a>b"@protected.test>`, 250, "")         // a '>' inside quotes does not end the path
	c.cmd(`RCPT TO:<"john.doe"@protected.test>`, 250, "")    // needs no quotes, so loses them
	c.cmd(`RCPT TO:<"user@evil.test"@protected.test>`, 554, "5.7.1")
	if code, msg := c.data("Subject: quoted\r\n\r\nhi\r\n.\r\n"); code != 250 {
		t.Fatalf("%d %s", code, msg)
	}
	e := q.messages()[0].Env
	if e.From != `"quoted local"@ext.example` {
		t.Errorf("sender %q", e.From)
	}
	var got []string
	for _, r := range e.Recipients {
		got = append(got, r.Address)
	}
	want := []string{`"john smith"@protected.test`, `"John Smith"@protected.test`, `"a>b"@protected.test`, "john.doe@protected.test"}
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Errorf("recipients\n%q\nwant\n%q", got, want)
	}

	// One recipient: the Received: field names it in its quoted form.
	c.cmd(`MAIL FROM:<s@example.org>`, 250, "")
	c.cmd(`RCPT TO:<"john smith"@protected.test>`, 250, "")
	c.data("x\r\n.\r\n")
	if body := string(q.messages()[1].Body); !strings.Contains(body, "\tfor <\"john smith\"@protected.test>;") {
		t.Errorf("Received: field:\n%s", body)
	}
}

// TestAddressLengths: RFC 5321 §4.5.3.1.1 (local part, 64 octets),
// §4.5.3.1.2 (domain, 255) and §4.5.3.1.3 (path, 256) are enforced with
// 501, the reply §4.5.3.1.10 names for a path too long, and RFC 3463's
// X.1.3 (recipient) or X.1.7 (sender).
func TestAddressLengths(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, nil)
	c := ts.dial()
	c.hello()
	long := strings.Repeat("l", 65)
	c.cmd("MAIL FROM:<"+long+"@example.org>", 501, "5.1.7")
	c.cmd("MAIL FROM:<s@"+strings.Repeat("d.", 128)+"org>", 501, "5.1.7")
	c.cmd("MAIL FROM:<"+strings.Repeat("l", 64)+"@example.org>", 250, "")
	c.cmd("RCPT TO:<"+long+"@protected.test>", 501, "5.1.3")
	c.cmd(`RCPT TO:<"`+strings.Repeat("q", 63)+`"@protected.test>`, 501, "5.1.3")
	c.cmd("RCPT TO:<u@"+strings.Repeat("d.", 128)+"test>", 501, "5.1.3")
	c.cmd("RCPT TO:<@"+strings.Repeat("r", 250)+":u@protected.test>", 501, "5.1.3") // the whole path
	c.cmd("RCPT TO:<"+strings.Repeat("l", 64)+"@protected.test>", 250, "")
	if code, _ := c.data("x\r\n.\r\n"); code != 250 {
		t.Fatal(code)
	}
	if got := q.messages()[0].Env.Recipients; len(got) != 1 {
		t.Fatalf("recipients %+v", got)
	}
}

// TestClientConnectionLimit: one client address gets at most
// MaxClientConnections sessions at once; the next is greeted with 421
// 4.7.0 and closed, while other addresses are still served.
func TestClientConnectionLimit(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, func(c *Config) { c.MaxClientConnections = 3 })
	var open []*client
	for range 3 {
		open = append(open, ts.dial())
	}
	over := ts.dialNoGreet()
	over.expect(421, "4.7.0")
	over.expectClosed()
	if !strings.Contains(ts.logs.String(), "too many connections from 127.0.0.1") {
		t.Errorf("refusal not logged:\n%s", ts.logs.String())
	}

	// Another address (Linux routes all of 127/8 to loopback) is served.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	conn, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	other := newClient(t, conn)
	other.expect(220, "")
	other.cmd("QUIT", 221, "")

	// Transactions on the admitted sessions go on; when one ends, the
	// address may connect again.
	open[0].hello()
	open[0].startTx("s@example.org", "u@protected.test")
	if code, _ := open[0].data("x\r\n.\r\n"); code != 250 {
		t.Fatalf("admitted session: %d", code)
	}
	open[0].cmd("QUIT", 221, "")
	kit.Wait(t, 5*time.Second, 2*time.Millisecond, "a free slot for 127.0.0.1", func() (bool, error) {
		c := ts.dialNoGreet()
		defer c.conn.Close()
		code, _, err := c.reply()
		return err == nil && code == 220, nil
	})
}

// TestClientConnectionLimitDefault: by default (Postfix's
// smtpd_client_connection_count_limit) the 51st session from one address
// is turned away.
func TestClientConnectionLimitDefault(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, nil)
	for range DefaultMaxClientConnections {
		ts.dial()
	}
	c := ts.dialNoGreet()
	c.expect(421, "4.7.0")
	c.expectClosed()
}

// TestStressIdleTimeout: above StressPercent of MaxConnections, sessions
// waiting for a command are dropped after StressReadTimeout (421 4.4.2),
// those already waiting included, as in Postfix's stress mode.
func TestStressIdleTimeout(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, func(c *Config) {
		c.MaxConnections = 5
		c.ReadTimeout = time.Minute
		c.StressReadTimeout = 100 * time.Millisecond
	})
	var idle []*client
	for range 4 { // 80%: not yet stress
		c := ts.dial()
		c.hello()
		idle = append(idle, c)
	}
	if strings.Contains(ts.logs.String(), "under stress") {
		t.Fatalf("stress at 80%%:\n%s", ts.logs.String())
	}
	idle = append(idle, ts.dial()) // 100%
	for i, c := range idle {
		_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second)) // far beyond the stress timeout
		c.expect(421, "4.4.2")
		c.expectClosed()
		t.Logf("idle session %d dropped under stress", i)
	}
	if !strings.Contains(ts.logs.String(), "smtp under stress") {
		t.Errorf("stress not logged:\n%s", ts.logs.String())
	}
	kit.Wait(t, 5*time.Second, 2*time.Millisecond, "stress over", func() (bool, error) {
		return strings.Contains(ts.logs.String(), "smtp stress over"), nil
	})
}

// TestSTARTTLSInjection: commands pipelined behind STARTTLS in the clear
// are never run inside TLS (CVE-2011-0411); the session is closed.
func TestSTARTTLSInjection(t *testing.T) {
	q := newFakeQueue(protected)
	srvTLS, _ := newTLS(t)
	ts := startServer(t, q, func(c *Config) { c.TLSConfig = srvTLS })
	c := ts.dial()
	c.hello()
	c.send("STARTTLS\r\nMAIL FROM:<s@example.org>\r\n")
	c.expect(220, "")
	c.expectClosed()
}
