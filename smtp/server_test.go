package smtp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"lifeline/e2e/kit"
)

const protected = "protected.test"

func TestHappyPath(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, nil)
	c := ts.dial()

	ext := c.hello()
	for _, want := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN",
		"SMTPUTF8", "SIZE 52428800", "LIMITS RCPTMAX=1000"} {
		if !strings.Contains(ext, want) {
			t.Errorf("EHLO lacks %s:\n%s", want, ext)
		}
	}
	for _, bad := range []string{"STARTTLS", "AUTH", "BINARYMIME"} {
		if strings.Contains(ext, bad) {
			t.Errorf("EHLO offers %s without reason:\n%s", bad, ext)
		}
	}

	c.startTx("sender@example.org", "User@Protected.Test")
	body := "Subject: hi\r\n\r\nline one\r\n..starts with a dot\r\n"
	code, msg := c.data(body + ".\r\n")
	if code != 250 || msg != "2.0.0 Ok: queued as ID0001" {
		t.Fatalf("got %d %q", code, msg)
	}

	// A second transaction on the same session, two recipients: no "for".
	c.startTx("", "a@protected.test", "b@PROTECTED.test.")
	if code, msg := c.data("x\r\n.\r\n"); code != 250 || !strings.Contains(msg, "queued as ID0002") {
		t.Fatalf("second message: %d %q", code, msg)
	}
	c.cmd("QUIT", 221, "")

	msgs := q.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages queued, want 2", len(msgs))
	}
	m := msgs[0]
	want := "Received: from client.example ([127.0.0.1])\r\n" +
		"\tby mx.test with ESMTP id ID0001\r\n" +
		"\tfor <User@protected.test>; " + testDate + "\r\n" +
		"Subject: hi\r\n\r\nline one\r\n.starts with a dot\r\n"
	if string(m.Body) != want {
		t.Errorf("stored body:\n%q\nwant:\n%q", m.Body, want)
	}
	sum := sha256.Sum256(m.Body)
	if m.Hash != hex.EncodeToString(sum[:]) || m.Size != int64(len(m.Body)) {
		t.Errorf("hash/size %s/%d do not match the body", m.Hash, m.Size)
	}
	e := m.Env
	if e.ID != "ID0001" || e.From != "sender@example.org" || e.Helo != "client.example" ||
		e.TLS || !e.ReceivedAt.Equal(testTime) || !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") {
		t.Errorf("envelope: %+v", e)
	}
	if want := []Recipient{{Address: "User@protected.test", Domain: protected}}; !reflect.DeepEqual(e.Recipients, want) {
		t.Errorf("recipients %+v, want %+v", e.Recipients, want)
	}

	m2 := msgs[1]
	want2 := "Received: from client.example ([127.0.0.1])\r\n" +
		"\tby mx.test with ESMTP id ID0002;\r\n\t" + testDate + "\r\nx\r\n"
	if string(m2.Body) != want2 || m2.Env.From != "" || len(m2.Env.Recipients) != 2 ||
		m2.Env.Recipients[1].Address != "b@protected.test" {
		t.Errorf("second message: %+v\n%q", m2.Env, m2.Body)
	}

	logs := ts.logs.String()
	if !strings.Contains(logs, "id=ID0001") || !strings.Contains(logs, "code=250") ||
		!strings.Contains(logs, "rcpts=1") {
		t.Errorf("no transaction log line:\n%s", logs)
	}
	if n := q.openBlobs(); n != 0 {
		t.Errorf("%d blobs left open", n)
	}
}

// TestRelayTricks: every way of naming a mailbox that is not plainly
// local@protected-domain gets 554 5.7.1 at RCPT, and nothing is queued.
func TestRelayTricks(t *testing.T) {
	q := newFakeQueue(protected, "other.test")
	ts := startServer(t, q, nil)

	denied := []string{
		"<user@evil.test>",
		"<user%evil.test@protected.test>",              // percent hack
		"<user%evil.test%other.test@protected.test>",   // nested percent hack
		"<evil.test!user@protected.test>",              // bang path
		"<evil.test!user%other.test@protected.test>",   // both
		`<"user@evil.test"@protected.test>`,            // quoted @
		`<"user%evil.test"@protected.test>`,            // quoted %
		`<"evil.test!user"@protected.test>`,            // quoted !
		"<user@evil.test@protected.test>",              // double @
		"<user@protected.test@evil.test>",              // double @ the other way
		"<@protected.test:user@evil.test>",             // source route to outside
		"<@protected.test,@other.test:user@evil.test>", // longer route
		"<user@[127.0.0.1]>",                           // IP literal, loopback
		"<user@[IPv6:::1]>",                            // IPv6 literal
		"<user@127.0.0.1>",                             // bare IP
		"<user@localhost>",                             // local name
		"<user@evilprotected.test>",                    // look-alike prefix
		"<user@protected.test.evil.test>",              // look-alike suffix
		"<user@sub.protected.test>",                    // subdomain
		"<user@protected.test..>",                      // two trailing dots
		"<user@.protected.test>",                       // empty label
		"<user@protected..test>",                       // empty label
		"<user@protected.test:25>",                     // port
		"<user@protected_test>",                        // underscore
		"<user@-protected.test>",                       // leading hyphen
		"<postmaster@evil.test>",                       // still outside
		"<user@prötected.test>",                        // non-ASCII domain (SMTPUTF8 below)
		"<user@xn--prtected-n4a.test>",                 // its A-label is not protected either
		"<user@protected.test\x00>",                    // NUL in domain
	}
	for _, rcpt := range denied {
		t.Run(fmt.Sprintf("%q", rcpt), func(t *testing.T) {
			c := ts.dial()
			c.hello()
			c.cmd("MAIL FROM:<s@example.org> SMTPUTF8", 250, "")
			c.cmd("RCPT TO:"+rcpt, 554, "5.7.1")
			// RFC 5321 §3.3: every RCPT was refused, so DATA gets 554.
			c.cmd("DATA", 554, "5.5.1")
			c.cmd("QUIT", 221, "")
		})
	}

	// Not mailboxes at all: syntax errors, 501 5.1.3 (RFC 5321
	// §4.5.3.1.10, RFC 3463 X.1.3). The bare <Postmaster> is a mailbox
	// (TestPostmaster).
	for _, rcpt := range []string{"<>", "<user>", "<@protected.test>", "<.user@protected.test>",
		"<user.@protected.test>", "<us..er@protected.test>", `<"unterminated@protected.test>`,
		"<us er@protected.test>", `<"a"b@protected.test>`, "<@relay:>"} {
		t.Run(fmt.Sprintf("%q", rcpt), func(t *testing.T) {
			c := ts.dial()
			c.hello()
			c.cmd("MAIL FROM:<s@example.org>", 250, "")
			c.cmd("RCPT TO:"+rcpt, 501, "")
			c.cmd("DATA", 554, "5.5.1")
			c.cmd("QUIT", 221, "")
		})
	}

	if msgs := q.messages(); len(msgs) != 0 {
		t.Fatalf("queued %d messages", len(msgs))
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range q.lookups {
		if d != strings.ToLower(d) || strings.HasSuffix(d, ".") {
			t.Errorf("Protected asked about un-normalised %q", d)
		}
	}
}

func TestRecipientNormalisation(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, nil)
	cases := []struct{ rcpt, want string }{
		{"<User@PROTECTED.TEST>", "User@protected.test"},
		{"<user@protected.test.>", "user@protected.test"}, // root dot trimmed
		{`<"john.doe"@protected.test>`, "john.doe@protected.test"},
		{"<@relay.example:user@protected.test>", "user@protected.test"}, // route ignored, RFC 5321 §4.1.1.3
		{"<first.last+tag@Protected.Test>", "first.last+tag@protected.test"},
		{"<Ünïcode@protected.test>", "Ünïcode@protected.test"},
	}
	for _, tc := range cases {
		c := ts.dial()
		c.hello()
		c.cmd("MAIL FROM:<s@example.org> SMTPUTF8", 250, "")
		c.cmd("RCPT TO:"+tc.rcpt, 250, "")
		if code, msg := c.data("x\r\n.\r\n"); code != 250 {
			t.Fatalf("%s: %d %s", tc.rcpt, code, msg)
		}
		c.cmd("QUIT", 221, "")
		msgs := q.messages()
		got := msgs[len(msgs)-1].Env.Recipients
		if len(got) != 1 || got[0].Address != tc.want || got[0].Domain != protected {
			t.Errorf("%s: recipients %+v, want %s", tc.rcpt, got, tc.want)
		}
	}

	// Without SMTPUTF8 a non-ASCII mailbox is refused (RFC 6531 §3.5).
	c := ts.dial()
	c.hello()
	c.cmd("MAIL FROM:<s@example.org>", 250, "")
	c.cmd("RCPT TO:<Ünïcode@protected.test>", 553, "5.6.7")
	c.cmd("MAIL FROM:<s@example.org>", 503, "5.5.1") // still in the transaction
	c.cmd("RSET", 250, "")
	c.cmd("MAIL FROM:<ü@example.org>", 550, "5.6.7")
	c.cmd("MAIL FROM:<ü@example.org> SMTPUTF8", 250, "")
}

// A node short of disk refuses at MAIL with 452 4.3.1, before the body is
// sent: for any message when it is nearly full, and for a declared SIZE
// that would not fit. It takes mail again as soon as there is room.
func TestNoRoomRefusedAtMail(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, nil)
	c := ts.dial()
	c.hello()
	q.mu.Lock()
	q.room = 5000
	q.mu.Unlock()
	c.cmd("MAIL FROM:<s@example.org> SIZE=6000", 452, "4.3.1")
	c.cmd("MAIL FROM:<s@example.org> SIZE=100", 250, "")
	c.cmd("RSET", 250, "")
	q.mu.Lock()
	q.room = 10 // nearly full: nothing fits
	q.mu.Unlock()
	c.cmd("MAIL FROM:<s@example.org>", 452, "4.3.1")
	c.cmd("RCPT TO:<u@protected.test>", 503, "5.5.1") // no transaction began
	q.mu.Lock()
	q.room = 0
	q.mu.Unlock()
	c.startTx("s@example.org", "u@protected.test")
	if code, _ := c.data("Subject: room again\r\n\r\nhi\r\n.\r\n"); code != 250 {
		t.Fatalf("with room again: %d", code)
	}
	if n := len(q.messages()); n != 1 {
		t.Fatalf("%d messages queued, want 1", n)
	}
}

func TestOversize(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, func(c *Config) { c.MaxMessageBytes = 1000 })
	c := ts.dial()
	if ext := c.hello(); !strings.Contains(ext, "SIZE 1000") {
		t.Errorf("EHLO does not advertise SIZE 1000:\n%s", ext)
	}
	c.cmd("MAIL FROM:<s@example.org> SIZE=1001", 552, "5.3.4")
	c.cmd("MAIL FROM:<s@example.org> SIZE=999999999", 552, "5.3.4")

	c.cmd("MAIL FROM:<s@example.org> SIZE=100", 250, "")
	c.cmd("RCPT TO:<u@protected.test>", 250, "")
	big := strings.Repeat(strings.Repeat("x", 98)+"\r\n", 30) // 3000 bytes
	code, msg := c.data(big + ".\r\n")
	if code != 552 || !strings.HasPrefix(msg, "5.3.4") {
		t.Fatalf("oversize body: %d %q", code, msg)
	}
	// The rest of the body was drained, not read as commands.
	c.cmd("NOOP", 250, "")
	c.startTx("s@example.org", "u@protected.test")
	if code, _ := c.data(strings.Repeat("y", 900) + "\r\n.\r\n"); code != 250 {
		t.Fatalf("small message after an oversize one: %d", code)
	}
	if n := len(q.messages()); n != 1 {
		t.Fatalf("%d messages queued, want 1", n)
	}
	kit.Wait(t, 5*time.Second, 2*time.Millisecond, "blobs closed", func() (bool, error) { return q.openBlobs() == 0, nil })
}

func TestTooManyRecipients(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, func(c *Config) { c.MaxRecipients = 3 })
	c := ts.dial()
	c.hello()
	c.startTx("s@example.org", "a@protected.test", "b@protected.test", "c@protected.test")
	c.cmd("RCPT TO:<d@protected.test>", 452, "4.5.3")
	if code, _ := c.data("x\r\n.\r\n"); code != 250 {
		t.Fatalf("DATA after 452: %d", code)
	}
	if got := q.messages()[0].Env.Recipients; len(got) != 3 {
		t.Fatalf("recipients %+v", got)
	}
}

func TestOverlongLine(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, func(c *Config) { c.MaxLineLength = 200 })

	// A command line.
	c := ts.dial()
	c.hello()
	c.send("MAIL FROM:<" + strings.Repeat("a", 300) + "@example.org>\r\n")
	c.expect(500, "")
	c.expectClosed()

	// A text line in DATA.
	c = ts.dial()
	c.hello()
	c.startTx("s@example.org", "u@protected.test")
	c.cmd("DATA", 354, "")
	c.send("Subject: x\r\n\r\n" + strings.Repeat("b", 300) + "\r\n.\r\nQUIT\r\n")
	c.expect(500, "5.5.2")
	for { // go-smtp adds its own 500 before it closes
		if _, _, err := c.reply(); err != nil {
			if isTimeout(err) {
				t.Fatal("connection left open after an overlong line")
			}
			break
		}
	}

	// A line of exactly the limit, CRLF included, is fine.
	c = ts.dial()
	c.hello()
	c.startTx("s@example.org", "u@protected.test")
	if code, msg := c.data(strings.Repeat("c", 198) + "\r\n.\r\n"); code != 250 {
		t.Fatalf("line at the limit: %d %s", code, msg)
	}

	if n := len(q.messages()); n != 1 {
		t.Fatalf("%d messages queued, want 1", n)
	}
	kit.Wait(t, 5*time.Second, 2*time.Millisecond, "blobs closed", func() (bool, error) { return q.openBlobs() == 0, nil })
}

func TestBareLineEnds(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, nil)
	bodies := map[string]string{
		"LF in header":        "Subject: x\nFrom: a@b\r\n\r\nbody\r\n",
		"LF in body":          "Subject: x\r\n\r\nbo\ndy\r\n",
		"LF at start":         "\nSubject: x\r\n\r\nbody\r\n",
		"CR in body":          "Subject: x\r\n\r\nbo\rdy\r\n",
		"CR before CRLF":      "Subject: x\r\n\r\nbody\r\r\nmore\r\n",
		"LF LF":               "Subject: x\r\n\r\nbody\n\nmore\r\n",
		"CR LF LF":            "Subject: x\r\n\r\nbody\r\n\nmore\r\n",
		"CR at 32767":         filler(32767) + "\rb\r\n",
		"LF at 32768":         filler(32768) + "\nb\r\n",
		"LF after dot":        "Subject: x\r\n\r\nbody\r\n.\nmore\r\n",
		"CR dot CRLF inside":  "Subject: x\r\n\r\nbody\r.\r\nmore\r\n",
		"LF dot CRLF inside":  "Subject: x\r\n\r\nbody\n.\r\nmore\r\n",
		"CR in last line":     "Subject: x\r\n\r\nbody\rmore\r\n",
		"NUL then bare LF":    "Subject: x\r\n\r\n\x00\n\r\n",
		"bare LF in Received": "Received: from x\nSubject: x\r\n\r\nbody\r\n",
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			c := ts.dial()
			c.hello()
			c.startTx("s@example.org", "u@protected.test")
			code, msg := c.data(body + ".\r\n")
			if code != 550 || !strings.HasPrefix(msg, "5.5.2") {
				t.Fatalf("got %d %q, want 550 5.5.2", code, msg)
			}
			c.cmd("NOOP", 250, "") // still in step
			c.cmd("QUIT", 221, "")
		})
	}
	if n := len(q.messages()); n != 0 {
		t.Fatalf("%d messages queued, want 0", n)
	}
	kit.Wait(t, 5*time.Second, 2*time.Millisecond, "blobs aborted", func() (bool, error) { return q.openBlobs() == 0, nil })

	// CRLF split exactly across two 32 KiB reads is a CRLF.
	c := ts.dial()
	c.hello()
	c.startTx("s@example.org", "u@protected.test")
	body := filler(32767) + "\r\n" + filler(40000) + "\r\n"
	if code, msg := c.data(body + ".\r\n"); code != 250 {
		t.Fatalf("long clean message: %d %q", code, msg)
	}
	if got := q.messages()[0].Body; !bytes.HasSuffix(got, []byte(body)) {
		t.Fatalf("stored body differs")
	}
}

// filler returns n bytes of 100-byte CRLF lines, the last one cut short
// (so a following byte lands at offset n).
func filler(n int) string {
	line := strings.Repeat("f", 98) + "\r\n"
	s := strings.Repeat(line, n/len(line)+1)
	return s[:n-n%len(line)] + strings.Repeat("g", n%len(line))
}

// TestSmuggling: end-of-data look-alikes followed by a second transaction
// never yield a second message (SMTP smuggling, CVE-2023-51764 and kin).
func TestSmuggling(t *testing.T) {
	smuggled := "MAIL FROM:<ceo@protected.test>\r\nRCPT TO:<victim@protected.test>\r\nDATA\r\n" +
		"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n"
	ends := []string{"\n.\r\n", "\n.\n", "\r\n.\n", "\r.\r\n", "\r.\n", "\n.\r", "\r\n.\r", "\r\n\x00.\r\n", "\r\n.\r\r\n"}
	for _, end := range ends {
		t.Run(fmt.Sprintf("%q", end), func(t *testing.T) {
			q := newFakeQueue(protected)
			ts := startServer(t, q, nil)
			c := ts.dial()
			c.hello()
			c.startTx("s@example.org", "u@protected.test")
			c.cmd("DATA", 354, "")
			c.send("Subject: real\r\n\r\nreal" + end + smuggled)
			code, msg, err := c.reply()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("reply %d %s", code, msg)
			// Whatever the first reply, the next one must answer QUIT:
			// no smuggled command was executed.
			c.send("QUIT\r\n")
			c.expect(221, "")
			msgs := q.messages()
			if len(msgs) > 1 {
				t.Fatalf("%d messages from one transaction", len(msgs))
			}
			for _, m := range msgs {
				if hasBareCRorLF(m.Body) {
					t.Fatalf("stored a body with a bare CR or LF: %q", m.Body)
				}
				if m.Env.From != "s@example.org" || len(m.Env.Recipients) != 1 ||
					m.Env.Recipients[0].Address != "u@protected.test" {
					t.Fatalf("smuggled envelope %+v", m.Env)
				}
			}
			if len(msgs) == 0 && code != 550 {
				t.Fatalf("nothing queued but reply %d %q", code, msg)
			}
			if len(msgs) == 1 && code != 250 {
				t.Fatalf("queued but reply %d %q", code, msg)
			}
		})
	}
}

func TestGarbage(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, func(c *Config) { c.MaxLineLength = 512 })

	junk := []string{
		"HELLO\r\nFOO BAR\r\nXYZZY\r\n\x00\x01\x02\xff\r\n\r\nMAIL\r\n",
		"MAIL FROM:<a@b>\r\nRCPT TO:<u@protected.test>\r\nDATA\r\nhello\r\n.\r\n", // before EHLO
		"EHLO x\r\nDATA\r\nRCPT TO:<u@protected.test>\r\nBDAT 5 LAST\r\nhello",
		"EHLO x\r\nMAIL FROM:<a@b> BOGUS=1\r\nMAIL FROM:<a@b> SIZE=abc\r\nMAIL FROM:a@b\r\nRCPT TO:<\r\n",
		"EHLO x\r\nAUTH PLAIN AGFAYgBj\r\nAUTH LOGIN\r\nSTARTTLS\r\nVRFY root\r\nEXPN all\r\nHELP\r\n",
		string(bytes.Repeat([]byte{0xff, 0x00, 0x7f}, 2000)), // no newline at all
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@protected.test>\r\nDATA\r\n" + strings.Repeat("\x00\xff", 100),
	}
	for i, j := range junk {
		c := ts.dialNoGreet()
		c.send(j)
		if tc, ok := c.conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		// Read every reply until the server closes (a reset is a close
		// too: the server may leave junk unread); nothing is accepted.
		all, err := io.ReadAll(c.conn)
		if isTimeout(err) {
			t.Fatalf("junk %d: server did not close: %v", i, err)
		}
		for _, line := range strings.Split(string(all), "\r\n") {
			if strings.Contains(line, "queued as") || strings.HasPrefix(line, "235") {
				t.Fatalf("junk %d was accepted:\n%s", i, all)
			}
		}
	}

	// Unknown commands count as errors and end the session past the limit.
	c := ts.dial()
	for range DefaultMaxErrors + 1 {
		c.send("JUNK\r\n")
		c.expect(500, "5.5.2")
	}
	c.expect(421, "too many errors")
	c.expectClosed()

	// And the server still works.
	c = ts.dial()
	c.hello()
	c.startTx("s@example.org", "u@protected.test")
	if code, _ := c.data("ok\r\n.\r\n"); code != 250 {
		t.Fatalf("server broken after garbage: %d", code)
	}
	if n := len(q.messages()); n != 1 {
		t.Fatalf("%d messages queued, want 1", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, func(c *Config) { c.ReadTimeout = 300 * time.Millisecond })

	idle := ts.dial()
	idleDone := make(chan error, 1)
	start := time.Now()
	go func() {
		code, _, err := idle.reply()
		if err == nil && code != 421 {
			err = fmt.Errorf("idle client got %d, want 421", code)
		}
		if err == nil {
			_, _, err = idle.reply()
			if err == nil || isTimeout(err) {
				err = fmt.Errorf("idle connection not closed after 421: %v", err)
			} else {
				err = nil
			}
		}
		idleDone <- err
	}()

	busy := ts.dial()
	busy.hello()
	busy.startTx("s@example.org", "u@protected.test")
	if code, _ := busy.data("hello\r\n.\r\n"); code != 250 {
		t.Fatalf("busy client: %d", code)
	}

	if err := <-idleDone; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle client dropped after %v", d)
	}
	busy.conn.Close()
	// And new sessions are still served.
	c := ts.dial()
	c.hello()
	c.cmd("QUIT", 221, "")
}

func TestQueueFailures(t *testing.T) {
	cases := []struct {
		name string
		set  func(q *fakeQueue)
	}{
		{"enqueue error", func(q *fakeQueue) { q.enqueueErr = errors.New("no quorum") }},
		{"enqueue timeout", func(q *fakeQueue) { q.enqueueBlock = true }},
		{"enqueue returns an SMTPError", func(q *fakeQueue) {
			q.enqueueErr = &Reply{Code: 250, Status: "2.0.0", Text: "lying"}
		}},
		{"new blob error", func(q *fakeQueue) { q.newBlobErr = errors.New("disk full") }},
		{"write error", func(q *fakeQueue) { q.writeErr = errors.New("EIO") }},
		{"commit error", func(q *fakeQueue) { q.commitErr = errors.New("fsync failed") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := newFakeQueue(protected)
			ts := startServer(t, q, func(c *Config) { c.CommitTimeout = 200 * time.Millisecond })
			q.set(tc.set)
			c := ts.dial()
			c.hello()
			c.startTx("s@example.org", "u@protected.test")
			code, msg := c.data("Subject: x\r\n\r\n" + filler(100000) + "\r\n.\r\n")
			if code != 451 || !strings.HasPrefix(msg, "4.3.0") || strings.Contains(msg, "queued as") {
				t.Fatalf("got %d %q, want 451 4.3.0", code, msg)
			}
			c.cmd("NOOP", 250, "")
			if n := len(q.messages()); n != 0 {
				t.Fatalf("%d messages queued", n)
			}
			kit.Wait(t, 5*time.Second, 2*time.Millisecond, "blobs closed", func() (bool, error) { return q.openBlobs() == 0, nil })
			if !strings.Contains(ts.logs.String(), "code=451") {
				t.Errorf("failure not logged:\n%s", ts.logs.String())
			}
		})
	}

	t.Run("protected lookup error", func(t *testing.T) {
		q := newFakeQueue(protected)
		q.protectedErr = errors.New("store unreadable")
		ts := startServer(t, q, nil)
		c := ts.dial()
		c.hello()
		c.cmd("MAIL FROM:<s@example.org>", 250, "")
		c.cmd("RCPT TO:<u@protected.test>", 451, "4.3.0")
	})
}

func TestDSNParameters(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, nil)
	c := ts.dial()
	c.hello()
	c.cmd("MAIL FROM:<s@example.org> RET=HDRS ENVID=QQ+2B123 BODY=8BITMIME", 250, "")
	c.cmd("RCPT TO:<a@protected.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40protected.test", 250, "")
	c.cmd("RCPT TO:<b@protected.test> NOTIFY=NEVER", 250, "")
	c.cmd("RCPT TO:<c@protected.test> NOTIFY=NEVER,SUCCESS", 501, "5.5.4") // RFC 3461 §4.1
	c.cmd("RCPT TO:<c@protected.test> NOTIFY=BOGUS", 501, "5.5.4")
	c.cmd("RCPT TO:<c@protected.test> NOTIFY=SUCCESS,SUCCESS", 501, "5.5.4")
	c.cmd("RCPT TO:<c@protected.test> ORCPT=bogus", 501, "5.5.4")
	c.cmd("RCPT TO:<d@protected.test>", 250, "")
	if code, _ := c.data("x\r\n.\r\n"); code != 250 {
		t.Fatal(code)
	}
	c.cmd("MAIL FROM:<s@example.org> RET=ALL", 501, "5.5.4")

	e := q.messages()[0].Env
	if e.Ret != "HDRS" || e.EnvID != "QQ+123" || e.Body != "8BITMIME" {
		t.Errorf("envelope DSN fields: %+v", e)
	}
	want := []Recipient{
		{Address: "a@protected.test", Domain: protected, Notify: []string{"SUCCESS", "DELAY"}, ORCPT: "RFC822;a@protected.test"},
		{Address: "b@protected.test", Domain: protected, Notify: []string{"NEVER"}},
		{Address: "d@protected.test", Domain: protected},
	}
	if !reflect.DeepEqual(e.Recipients, want) {
		t.Errorf("recipients:\n%+v\nwant\n%+v", e.Recipients, want)
	}
}

func newTLS(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	cfg, err := SelfSignedTLS("mx.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cfg.Certificates[0].Leaf)
	return cfg, pool
}

func TestSTARTTLS(t *testing.T) {
	q := newFakeQueue(protected)
	srvTLS, pool := newTLS(t)
	ts := startServer(t, q, func(c *Config) { c.TLSConfig = srvTLS })

	// DialStartTLS fails unless STARTTLS is offered; it says EHLO localhost.
	c, err := gosmtp.DialStartTLS(ts.addr, &tls.Config{ServerName: "mx.test", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered again inside TLS")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered on the MX")
	}
	if err := c.Mail("s@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("u@protected.test", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(w, "Subject: tls\r\n\r\nsecret\r\n")
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.StatusText, "queued as ID0001") {
		t.Fatalf("reply %q", resp.StatusText)
	}
	_ = c.Quit()

	m := q.messages()[0]
	if !m.Env.TLS {
		t.Error("envelope does not record TLS")
	}
	if !strings.Contains(string(m.Body), "with ESMTPS id ID0001") ||
		!strings.Contains(string(m.Body), "(using TLS 1.3 with cipher ") {
		t.Errorf("Received field does not show TLS:\n%s", m.Body)
	}
}

// rawTLS upgrades a raw client session with STARTTLS.
func rawTLS(t *testing.T, c *client, pool *x509.CertPool) *client {
	t.Helper()
	c.hello()
	c.cmd("STARTTLS", 220, "")
	tc := tls.Client(c.conn, &tls.Config{ServerName: "mx.test", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return newClient(t, tc)
}

func TestDataTimeout(t *testing.T) {
	srvTLS, pool := newTLS(t)

	check := func(t *testing.T, q *fakeQueue, c *client) {
		t.Helper()
		c.expect(421, "4.4.2")
		// Whatever else the client sends is not read as commands.
		_, _ = io.WriteString(c.conn, "\r\n.\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<u@protected.test>\r\nDATA\r\nx\r\n.\r\n")
		c.expectClosed()
		if n := len(q.messages()); n != 0 {
			t.Fatalf("%d messages queued", n)
		}
		kit.Wait(t, 5*time.Second, 2*time.Millisecond, "blob aborted", func() (bool, error) { return q.openBlobs() == 0, nil })
	}

	t.Run("stall, whole-DATA deadline", func(t *testing.T) {
		q := newFakeQueue(protected)
		ts := startServer(t, q, func(c *Config) { c.DataTimeout = 300 * time.Millisecond })
		c := ts.dial()
		c.hello()
		c.startTx("s@example.org", "u@protected.test")
		c.cmd("DATA", 354, "")
		c.send("Subject: x\r\n\r\npartial")
		check(t, q, c)
	})

	t.Run("stall, per-read deadline", func(t *testing.T) {
		q := newFakeQueue(protected)
		ts := startServer(t, q, func(c *Config) { c.ReadTimeout = 300 * time.Millisecond })
		c := ts.dial()
		c.hello()
		c.startTx("s@example.org", "u@protected.test")
		c.cmd("DATA", 354, "")
		c.send("Subject: x\r\n\r\npartial\r\n")
		check(t, q, c)
	})

	t.Run("trickle", func(t *testing.T) {
		q := newFakeQueue(protected)
		ts := startServer(t, q, func(c *Config) {
			c.ReadTimeout = 300 * time.Millisecond
			c.DataTimeout = 600 * time.Millisecond
		})
		c := ts.dial()
		c.hello()
		c.startTx("s@example.org", "u@protected.test")
		c.cmd("DATA", 354, "")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // a line every 50 ms: never idle, never done
			defer wg.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := io.WriteString(c.conn, "more\r\n"); err != nil {
						return
					}
				}
			}
		}()
		start := time.Now()
		c.expect(421, "4.4.2")
		close(stop)
		wg.Wait()
		if d := time.Since(start); d < 400*time.Millisecond {
			t.Errorf("trickling client cut off after %v, before the DATA deadline", d)
		}
		c.expectClosed()
		if n := len(q.messages()); n != 0 {
			t.Fatalf("%d messages queued", n)
		}
	})

	t.Run("stall inside TLS", func(t *testing.T) {
		q := newFakeQueue(protected)
		ts := startServer(t, q, func(c *Config) {
			c.TLSConfig = srvTLS
			c.DataTimeout = 300 * time.Millisecond
		})
		c := rawTLS(t, ts.dial(), pool)
		c.hello()
		c.startTx("s@example.org", "u@protected.test")
		c.cmd("DATA", 354, "")
		c.send("Subject: x\r\n\r\npartial")
		check(t, q, c)
	})

	t.Run("stall while draining an oversize body", func(t *testing.T) {
		q := newFakeQueue(protected)
		ts := startServer(t, q, func(c *Config) {
			c.MaxMessageBytes = 100
			c.DataTimeout = 300 * time.Millisecond
		})
		c := ts.dial()
		c.hello()
		c.startTx("s@example.org", "u@protected.test")
		c.cmd("DATA", 354, "")
		c.send(strings.Repeat("x", 500) + "\r\n")
		// The refusal comes once the body ends; here it never does.
		code, _, err := c.reply()
		if err != nil || (code != 552 && code != 421) {
			t.Fatalf("got %d, %v", code, err)
		}
		_, _ = io.WriteString(c.conn, "\r\n.\r\nMAIL FROM:<s@example.org>\r\n")
		for {
			code, msg, err := c.reply()
			if err != nil {
				break
			}
			if code != 421 && code != 552 {
				t.Fatalf("after the DATA timeout: %d %s", code, msg)
			}
		}
	})
}

func TestHopLimit(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, nil)
	hops := func(n int, name string) string {
		return strings.Repeat(name+": from a by b; "+testDate+"\r\n", n)
	}
	c := ts.dial()
	c.hello()

	c.startTx("s@example.org", "u@protected.test")
	if code, _ := c.data(hops(100, "Received") + "\r\nbody\r\n.\r\n"); code != 250 {
		t.Fatalf("100 hops: %d", code)
	}
	c.startTx("s@example.org", "u@protected.test")
	if code, msg := c.data(hops(50, "Received") + hops(51, "RECEIVED") + "\r\nbody\r\n.\r\n"); code != 554 || !strings.HasPrefix(msg, "5.4.6") {
		t.Fatalf("101 hops: %d %s", code, msg)
	}
	// Received: lines in the body are not hops.
	c.startTx("s@example.org", "u@protected.test")
	if code, _ := c.data("Subject: x\r\n\r\n" + hops(150, "Received") + ".\r\n"); code != 250 {
		t.Fatalf("Received: in body: %d", code)
	}
	c.cmd("NOOP", 250, "")
	if n := len(q.messages()); n != 2 {
		t.Fatalf("%d messages queued, want 2", n)
	}
}

func TestBDAT(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, func(c *Config) { c.MaxMessageBytes = 1000 })
	c := ts.dial()
	if ext := c.hello(); !strings.Contains(ext, "CHUNKING") {
		t.Fatalf("no CHUNKING:\n%s", ext)
	}
	c.startTx("s@example.org", "u@protected.test")
	c.send("BDAT 14\r\nSubject: x\r\n\r\n")
	c.expect(250, "")
	c.send("BDAT 10 LAST\r\nhello\r\n.tx")
	c.expect(250, "queued as ID0001")

	c.startTx("s@example.org", "u@protected.test")
	c.send("BDAT 9 LAST\r\nbare\nLF\r\n")
	c.expect(550, "5.5.2")

	c.startTx("s@example.org", "u@protected.test")
	c.send("BDAT 600\r\n" + strings.Repeat("a", 598) + "\r\n")
	c.expect(250, "")
	c.send("BDAT 600 LAST\r\n" + strings.Repeat("b", 598) + "\r\n")
	c.expect(552, "5.3.4")
	c.cmd("NOOP", 250, "")

	msgs := q.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	// BDAT carries no dot-stuffing; an unterminated last line gets CRLF.
	if !strings.HasSuffix(string(msgs[0].Body), "Subject: x\r\n\r\nhello\r\n.tx\r\n") {
		t.Errorf("stored %q", msgs[0].Body)
	}
	kit.Wait(t, 5*time.Second, 2*time.Millisecond, "blobs closed", func() (bool, error) { return q.openBlobs() == 0, nil })
}

func TestMaxErrors(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, func(c *Config) { c.MaxErrors = 3 })
	c := ts.dial()
	c.hello()
	c.cmd("MAIL FROM:<s@example.org>", 250, "")
	for range 3 {
		c.cmd("RCPT TO:<x@evil.test>", 554, "5.7.1")
	}
	c.cmd("RCPT TO:<x@evil.test>", 554, "5.7.1")
	c.expect(421, "4.7.0")
	c.expectClosed()
}

func TestMaxConnections(t *testing.T) {
	q := newFakeQueue(protected)
	var mu sync.Mutex
	var codes []int
	ts := startServer(t, q, func(c *Config) {
		c.MaxConnections = 1
		c.OnReply = func(code int) { mu.Lock(); codes = append(codes, code); mu.Unlock() }
	})
	first := ts.dial()
	second := ts.dialNoGreet()
	second.expect(421, "4.7.0")
	second.expectClosed()
	first.cmd("QUIT", 221, "")
	kit.Wait(t, 5*time.Second, 2*time.Millisecond, "a free slot", func() (bool, error) {
		c := ts.dialNoGreet()
		defer c.conn.Close()
		code, _, err := c.reply()
		return err == nil && code == 220, nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(codes) == 0 || codes[0] != 421 {
		t.Errorf("OnReply saw %v", codes)
	}
}

func TestShutdown(t *testing.T) {
	q := newFakeQueue(protected)
	ts := startServer(t, q, nil)
	c := ts.dial()
	c.hello()
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(context.Background()) }()
	// The session in progress may finish its transaction.
	c.startTx("s@example.org", "u@protected.test")
	if code, _ := c.data("x\r\n.\r\n"); code != 250 {
		t.Fatal(code)
	}
	c.cmd("QUIT", 221, "")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", ts.addr); err == nil {
		t.Fatal("still listening after Shutdown")
	}
}

func TestReceivedField(t *testing.T) {
	srv := NewServer(Config{Hostname: "mx.test", Queue: newFakeQueue()})
	env := &Envelope{ID: "ABC", ReceivedAt: testTime, Recipients: []Recipient{{Address: "u@p.test"}}, SMTPUTF8: true}
	cases := []struct {
		helo, remote, want string
	}{
		{"Mail.Example.COM", "192.0.2.1", "from mail.example.com ([192.0.2.1])\r\n"},
		{"[192.0.2.1]", "192.0.2.1", "from [192.0.2.1] ([192.0.2.1])\r\n"},
		{"bad (helo) \\ name", "2001:db8::1", "from [IPv6:2001:db8::1] ([IPv6:2001:db8::1]) (helo=bad??helo????name)\r\n"},
		{"x", "::ffff:192.0.2.7", "from x ([192.0.2.7])\r\n"},
	}
	for _, tc := range cases {
		s := &session{srv: srv, helo: tc.helo, esmtp: true}
		s.remote = mustAddr(t, tc.remote)
		got := s.receivedField(env)
		want := "Received: " + tc.want + "\tby mx.test with UTF8SMTP id ABC\r\n\tfor <u@p.test>; " + testDate + "\r\n"
		if got != want {
			t.Errorf("helo %q:\n got %q\nwant %q", tc.helo, got, want)
		}
	}
}

func TestSelfSignedTLS(t *testing.T) {
	cfg, pool := newTLS(t)
	leaf := cfg.Certificates[0].Leaf
	for _, h := range []string{"mx.test", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: pool}); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if _, err := SelfSignedTLS(); err == nil {
		t.Error("no hostnames accepted")
	}
}
