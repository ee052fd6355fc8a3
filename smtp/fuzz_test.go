package smtp

import (
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"lifeline/e2e/kit"
	"lifeline/smtp/mailbox"
)

// Anchored so that client text echoed in a reply cannot fake it.
var queuedAs = regexp.MustCompile(`(?m)^250 2\.0\.0 Ok: queued as ([A-Z0-9]+)\r$`)

// FuzzSession plays arbitrary bytes as a client over a real loopback
// connection. It holds that the server does not panic, always ends the
// session, still serves a fresh one, and that only clean mail for protected
// mailboxes reaches the queue, each message matching one 250 reply.
func FuzzSession(f *testing.F) {
	const tx = "EHLO x\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<u@protected.test>\r\n"
	seeds := []string{
		tx + "DATA\r\nSubject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n",
		tx + "DATA\r\nhello\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<v@protected.test>\r\nDATA\r\nx\r\n.\r\n",
		tx + "DATA\r\nhello\r\n.\rMAIL FROM:<a@b>\r\nRCPT TO:<v@protected.test>\r\nDATA\r\nx\r\n.\r\n",
		tx + "DATA\r\nhello\r.\r\nx\r\n.\r\n",
		tx + "BDAT 7\r\nhello\r\nBDAT 3 LAST\r\nx\r\n",
		tx + "BDAT 5 LAST\r\na\nb\r\n",
		"EHLO x\r\nMAIL FROM:<s@example.org> SMTPUTF8 RET=FULL ENVID=x+2By\r\n" +
			"RCPT TO:<ü@protected.test> NOTIFY=SUCCESS ORCPT=rfc822;u+40x\r\nDATA\r\nx\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<u%evil.test@protected.test>\r\n" +
			"RCPT TO:<@protected.test:u@evil.test>\r\nRCPT TO:<\"u@evil\"@protected.test>\r\nDATA\r\nx\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<\"s p\"@example.org>\r\nRCPT TO:<\"j s\"@protected.test>\r\nRCPT TO:<postmaster>\r\nDATA\r\nx\r\n.\r\n",
		"EHLO x\r\nRCPT TO:<u@protected.test>\r\nDATA\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN\r\n",
		"EHLO x\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05hello",
		"EHLO x\r\nMAIL FROM:<s@example.org> SIZE=99999999\r\nNOOP\r\nRSET\r\nVRFY x\r\nAUTH PLAIN AA==\r\n",
		tx + "DATA\r\n" + strings.Repeat("Received: x\r\n", 120) + "\r\nbody\r\n.\r\n",
		tx + "DATA\r\n" + strings.Repeat("a", 2000) + "\r\n.\r\n",
		"\x00\xff\r\n\r\nHELO\r\nEHLO\r\n" + strings.Repeat("JUNK\r\n", 10),
		tx + "DATA\r\npartial body without an end",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}

	q := newFakeQueue(protected)
	srvTLS, _ := newTLS(f)
	ts := startServer(f, q, func(c *Config) {
		c.ReadTimeout = 500 * time.Millisecond
		c.WriteTimeout = time.Second
		c.DataTimeout = time.Second
		c.MaxMessageBytes = 64 << 10
		c.MaxLineLength = 1000
		c.MaxRecipients = 5
		c.TLSConfig = srvTLS
		c.Logger = nil
	})

	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 32<<10 {
			t.Skip()
		}
		before := len(q.messages())

		conn, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		out := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(conn)
			out <- b
		}()
		_, _ = conn.Write(in)
		_ = conn.(*net.TCPConn).CloseWrite()
		var replies []byte
		select {
		case replies = <-out:
		case <-time.After(8 * time.Second):
			t.Fatalf("server did not end the session")
		}

		msgs := q.messages()[before:]
		replied := map[string]bool{}
		for _, m := range queuedAs.FindAllSubmatch(replies, -1) {
			replied[string(m[1])] = true
		}
		if len(replied) != len(msgs) {
			t.Fatalf("%d messages queued, %d reported queued:\n%s", len(msgs), len(replied), replies)
		}
		for _, m := range msgs {
			if !replied[m.Env.ID] {
				t.Fatalf("message %s queued without a 250", m.Env.ID)
			}
			if hasBareCRorLF(m.Body) {
				t.Fatalf("queued a body with a bare CR or LF: %q", m.Body)
			}
			if !strings.HasPrefix(string(m.Body), "Received: from ") {
				t.Fatalf("no Received: field: %q", m.Body)
			}
			if len(m.Env.Recipients) == 0 {
				t.Fatalf("message without recipients")
			}
			for _, r := range m.Env.Recipients {
				mb, err := mailbox.Parse(r.Address)
				if r.Domain != protected || err != nil || mb.Domain != protected || strings.ContainsAny(mb.Content, "%!@") {
					t.Fatalf("queued for %+v", r)
				}
			}
		}
		kit.Wait(t, 5*time.Second, 2*time.Millisecond, "blobs closed", func() (bool, error) { return q.openBlobs() == 0, nil })

		// A fresh session is still served.
		c2, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
		c := newClient(t, c2)
		c.expect(220, "")
		c.cmd("QUIT", 221, "")
	})
}

// FuzzParseRecipient holds that an accepted recipient is a mailbox in a
// protected domain, matched exactly after lower-casing and trimming one root
// dot, whose local part carries no routing characters.
func FuzzParseRecipient(f *testing.F) {
	for _, s := range []string{
		"user@protected.test", "User@PROTECTED.TEST.", "user%evil@protected.test",
		"evil!user@protected.test", "u@evil@protected.test", "u@[127.0.0.1]",
		"u@protected.test.evil", "u@evilprotected.test", "ü@protected.test",
		"u@prötected.test", "a..b@protected.test", ".a@other.test", "@", "",
		"u@protected.test..", "u@sub.protected.test", "u@other.test\x00",
		`"john smith"@protected.test`, `"a\"b"@other.test`, `"u@evil"@protected.test`, `"x\`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	domains := []string{"protected.test", "other.test"}
	prot := protectedSet(domains...)

	f.Fuzz(func(t *testing.T, addr string, smtputf8 bool) {
		r, err := ParseRecipient(addr, smtputf8, prot)
		if err != nil {
			return
		}
		in, err := mailbox.Parse(addr)
		if err != nil {
			t.Fatalf("accepted %q, which does not parse: %v", addr, err)
		}
		given := strings.TrimSuffix(in.Domain, ".")
		matched := false
		for _, d := range domains {
			if r.Domain == d && strings.ToLower(given) == d {
				matched = true
			}
		}
		if !matched {
			t.Fatalf("accepted %q as domain %q", addr, r.Domain)
		}
		out, err := mailbox.Parse(r.Address)
		if err != nil || out.Content != in.Content || out.Domain != r.Domain || out.String() != r.Address {
			t.Fatalf("accepted %q as %q, which does not read back the same (%v)", addr, r.Address, err)
		}
		if strings.ContainsAny(out.Content, "%!@") {
			t.Fatalf("accepted routing characters in %q", addr)
		}
		if len(out.Local) > mailbox.MaxLocal || !utf8.ValidString(out.Content) || (!smtputf8 && !isASCII(out.Content)) {
			t.Fatalf("accepted local part %q (SMTPUTF8 %v)", out.Local, smtputf8)
		}
		for _, c := range []byte(out.Content) {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("accepted a control character in %q", addr)
			}
		}
	})
}
