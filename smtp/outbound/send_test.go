package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestDeliverByteForByte(t *testing.T) {
	s := newSink(t, sinkOpts{})
	// Leading dots need stuffing; the body must come out unchanged.
	body := "From: a@example.org\r\nTo: b@example.com\r\nSubject: dots\r\n\r\n" +
		".leading dot\r\n..two dots\r\n.\r\nmiddle . dot\r\n\r\n\tindented\r\nlast line\r\n"
	msg := &Message{From: "a@example.org", Recipients: rcpts("b@example.com"), Size: int64(len(body)), Open: bodyOf(body)}

	res := testClient().Deliver(context.Background(), []string{s.addr}, msg)

	r := res.Recipients[0]
	if r.Status != Delivered || r.Code != 250 || r.Enhanced != "2.0.0" {
		t.Fatalf("result = %+v", r)
	}
	msgs := s.messages()
	if len(msgs) != 1 {
		t.Fatalf("server got %d messages", len(msgs))
	}
	if got := string(msgs[0].Data); got != body {
		t.Fatalf("body changed in transit:\n got %q\nwant %q", got, body)
	}
	if msgs[0].MailOpts.Size != int64(len(body)) {
		t.Errorf("declared SIZE = %d, want %d", msgs[0].MailOpts.Size, len(body))
	}
	if !strings.Contains(s.traced(), "EHLO node1.lifeline.test") {
		t.Errorf("EHLO did not carry LocalName:\n%s", s.traced())
	}
	if res.RemoteMTA != "127.0.0.1" {
		t.Errorf("RemoteMTA = %q", res.RemoteMTA)
	}
}

func TestSeveralMessagesOneConnection(t *testing.T) {
	s := newSink(t, sinkOpts{})
	ctx := context.Background()
	c, err := testClient().Dial(ctx, []string{s.addr})
	if err != nil {
		t.Fatal(err)
	}
	for i, to := range []string{"one@example.com", "two@example.com", "three@example.com"} {
		res := c.Send(ctx, &Message{From: "a@example.org", Recipients: rcpts(to), Open: bodyOf(simpleBody)})
		if res.Recipients[0].Status != Delivered {
			t.Fatalf("message %d: %+v", i, res.Recipients[0])
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("server saw %d connections, want 1", n)
	}
	msgs := s.messages()
	if len(msgs) != 3 || msgs[2].Rcpts[0] != "three@example.com" {
		t.Fatalf("server got %+v", msgs)
	}
	tr := s.traced()
	if n := strings.Count(tr, "RSET\r\n"); n != 2 {
		t.Errorf("RSET sent %d times, want 2 (between messages only)", n)
	}
	if strings.Count(tr, "EHLO ") != 1 {
		t.Errorf("EHLO repeated on a reused connection")
	}
	// The server traces what it reads before it answers, so QUIT is there
	// once Close has its reply; what the server wrote may still be on its way.
	if q := strings.LastIndex(tr, "QUIT\r\n"); q < 0 || q < strings.LastIndex(tr, "OK: queued") {
		t.Errorf("session did not end with QUIT:\n%s", tr[max(0, len(tr)-200):])
	}
	if res := c.Send(ctx, &Message{From: "a@example.org", Recipients: rcpts("x@example.com"), Open: bodyOf(simpleBody)}); res.Recipients[0].Status != TempFail {
		t.Errorf("Send after Close = %+v, want a temporary failure", res.Recipients[0])
	}
}

func TestMixedRecipientOutcomes(t *testing.T) {
	s := newSink(t, sinkOpts{})
	s.refuseRcpt("later@example.com", 450, smtp.EnhancedCode{4, 2, 1}, "Mailbox busy, try later")
	s.refuseRcpt("gone@example.com", 550, smtp.EnhancedCode{5, 1, 1}, "No such user here")
	msg := &Message{From: "a@example.org", Recipients: rcpts("ok@example.com", "later@example.com", "gone@example.com"), Open: bodyOf(simpleBody)}

	res := testClient().Deliver(context.Background(), []string{s.addr}, msg)

	want := []struct {
		st   Status
		code int
		enh  string
		text string
	}{
		{Delivered, 250, "2.0.0", "OK: queued"},
		{TempFail, 450, "4.2.1", "Mailbox busy, try later"},
		{PermFail, 550, "5.1.1", "No such user here"},
	}
	for i, w := range want {
		r := res.Recipients[i]
		if r.Address != msg.Recipients[i].Address || r.Status != w.st || r.Code != w.code || r.Enhanced != w.enh || r.Text != w.text {
			t.Errorf("recipient %d = %+v, want %+v", i, r, w)
		}
	}
	if got := res.Recipients[2].Reply.String(); got != "550 5.1.1 No such user here" {
		t.Errorf("Reply.String() = %q", got)
	}
	msgs := s.messages()
	if len(msgs) != 1 || len(msgs[0].Rcpts) != 1 || msgs[0].Rcpts[0] != "ok@example.com" {
		t.Fatalf("server got %+v", msgs)
	}
}

func TestMailFromRefusedDecidesForAll(t *testing.T) {
	for _, tc := range []struct {
		code int
		enh  smtp.EnhancedCode
		want Status
	}{
		{550, smtp.EnhancedCode{5, 7, 1}, PermFail},
		{451, smtp.EnhancedCode{4, 7, 1}, TempFail},
	} {
		s := newSink(t, sinkOpts{})
		s.mailErr = &smtp.SMTPError{Code: tc.code, EnhancedCode: tc.enh, Message: "sender refused"}
		msg := &Message{From: "a@example.org", Recipients: rcpts("x@example.com", "y@example.com"), Open: bodyOf(simpleBody)}
		res := testClient().Deliver(context.Background(), []string{s.addr}, msg)
		for _, r := range res.Recipients {
			if r.Status != tc.want || r.Code != tc.code || r.Text != "sender refused" {
				t.Errorf("MAIL %d: recipient %+v", tc.code, r)
			}
		}
	}
}

func TestDataRefused(t *testing.T) {
	s := newSink(t, sinkOpts{})
	s.dataErr = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content rejected"}
	msg := &Message{From: "a@example.org", Recipients: rcpts("x@example.com", "y@example.com"), Open: bodyOf(simpleBody)}
	res := testClient().Deliver(context.Background(), []string{s.addr}, msg)
	for _, r := range res.Recipients {
		if r.Status != PermFail || r.Code != 554 || r.Enhanced != "5.6.0" {
			t.Errorf("recipient %+v", r)
		}
	}
}

func TestConnectionRefusedIsTemporary(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	_, err = testClient().Dial(context.Background(), []string{addr})
	var e *Error
	if !errors.As(err, &e) || e.Permanent || !strings.Contains(e.Text, "connection refused") || e.Host != "127.0.0.1" {
		t.Fatalf("Dial error = %#v", err)
	}

	msg := &Message{From: "a@example.org", Recipients: rcpts("x@example.com"), Open: bodyOf(simpleBody)}
	r := testClient().Deliver(context.Background(), []string{addr}, msg).Recipients[0]
	if r.Status != TempFail || r.Code != 0 || r.Text != "connection refused" || r.Enhanced != "4.4.1" {
		t.Fatalf("recipient = %+v", r)
	}
}

func TestDSNParametersOnlyWhenAdvertised(t *testing.T) {
	msg := func() *Message {
		return &Message{
			From: "a@example.org", Ret: "hdrs", EnvID: "env id+1",
			Recipients: []Rcpt{
				{Address: "x@example.com", Notify: []string{"failure", "DELAY"}, ORCPT: "rfc822;X@Example.com"},
				{Address: "y@example.com", Notify: []string{"NEVER"}, ORCPT: "rfc822;jöe@example.com"},
			},
			Open: bodyOf(simpleBody),
		}
	}

	withDSN := newSink(t, sinkOpts{dsn: true})
	res := testClient().Deliver(context.Background(), []string{withDSN.addr}, msg())
	if !res.RemoteDSN || res.Recipients[0].Status != Delivered || res.Recipients[1].Status != Delivered {
		t.Fatalf("result = %+v", res)
	}
	got := withDSN.messages()[0]
	if got.MailOpts.Return != smtp.DSNReturnHeaders || got.MailOpts.EnvelopeID != "env id+1" {
		t.Errorf("MAIL options = %+v", got.MailOpts)
	}
	o := got.RcptOpts[0]
	if len(o.Notify) != 2 || o.Notify[0] != smtp.DSNNotifyFailure || o.Notify[1] != smtp.DSNNotifyDelayed ||
		o.OriginalRecipientType != smtp.DSNAddressTypeRFC822 || o.OriginalRecipient != "X@Example.com" {
		t.Errorf("first RCPT options = %+v", o)
	}
	o = got.RcptOpts[1]
	if len(o.Notify) != 1 || o.Notify[0] != smtp.DSNNotifyNever ||
		o.OriginalRecipientType != smtp.DSNAddressTypeUTF8 || o.OriginalRecipient != "jöe@example.com" {
		t.Errorf("second RCPT options = %+v", o)
	}

	// go-smtp refuses RET, ENVID, NOTIFY and ORCPT with 504 when it has not
	// offered DSN, so delivery itself proves they were dropped.
	without := newSink(t, sinkOpts{})
	res = testClient().Deliver(context.Background(), []string{without.addr}, msg())
	if res.RemoteDSN || res.Recipients[0].Status != Delivered || res.Recipients[1].Status != Delivered {
		t.Fatalf("result = %+v", res)
	}
	got = without.messages()[0]
	if got.MailOpts.Return != "" || got.MailOpts.EnvelopeID != "" || got.RcptOpts[0].Notify != nil || got.RcptOpts[0].OriginalRecipient != "" {
		t.Errorf("DSN parameters reached a server without DSN: %+v %+v", got.MailOpts, got.RcptOpts)
	}
	if strings.Contains(without.traced(), "NOTIFY=") {
		t.Errorf("NOTIFY sent to a server without DSN")
	}
}

func TestSTARTTLSWhenOffered(t *testing.T) {
	cert, pool := selfSigned(t)
	s := newSink(t, sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})

	t.Run("insecure skip verify", func(t *testing.T) {
		cl := testClient()
		cl.TLSConfig = &tls.Config{InsecureSkipVerify: true}
		c, err := cl.Dial(context.Background(), []string{s.addr})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, ok := c.TLSConnectionState(); !ok {
			t.Fatal("STARTTLS not used")
		}
		// The extensions are those of the EHLO after the handshake.
		if ok, _ := c.Extension("STARTTLS"); ok {
			t.Error("cleartext EHLO reply kept after STARTTLS")
		}
		res := c.Send(context.Background(), &Message{From: "a@example.org", Recipients: rcpts("x@example.com"), Open: bodyOf(simpleBody)})
		if res.Recipients[0].Status != Delivered {
			t.Fatalf("result = %+v", res.Recipients[0])
		}
		if m := s.messages(); !m[len(m)-1].TLS {
			t.Error("server did not see the message over TLS")
		}
	})

	t.Run("verified by host name", func(t *testing.T) {
		cl := testClient()
		cl.Dialer = &mapDialer{m: map[string]string{"mx.test:25": s.addr}}
		cl.TLSConfig = &tls.Config{RootCAs: pool}
		c, err := cl.Dial(context.Background(), []string{"mx.test:25"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		st, ok := c.TLSConnectionState()
		if !ok || st.ServerName != "mx.test" {
			t.Fatalf("TLS = %v, server name %q", ok, st.ServerName)
		}
	})

	t.Run("failed handshake falls back to cleartext", func(t *testing.T) {
		before := s.conns.Load()
		cl := testClient() // no roots for the self-signed certificate
		res := cl.Deliver(context.Background(), []string{s.addr}, &Message{From: "a@example.org", Recipients: rcpts("x@example.com"), Open: bodyOf(simpleBody)})
		if res.Recipients[0].Status != Delivered {
			t.Fatalf("result = %+v", res.Recipients[0])
		}
		if m := s.messages(); m[len(m)-1].TLS {
			t.Error("message went over TLS although the handshake should have failed")
		}
		if n := s.conns.Load() - before; n != 2 {
			t.Errorf("%d connections, want 2 (TLS attempt, then cleartext)", n)
		}
	})
}

func TestNullSender(t *testing.T) {
	s := newSink(t, sinkOpts{})
	res := testClient().Deliver(context.Background(), []string{s.addr}, &Message{From: "", Recipients: rcpts("x@example.com"), Open: bodyOf(simpleBody)})
	if res.Recipients[0].Status != Delivered {
		t.Fatalf("result = %+v", res.Recipients[0])
	}
	if !strings.Contains(s.traced(), "MAIL FROM:<> BODY") && !strings.Contains(s.traced(), "MAIL FROM:<>\r\n") {
		t.Errorf("no MAIL FROM:<> in\n%s", s.traced())
	}
	if got := s.messages()[0].From; got != "" {
		t.Errorf("server saw sender %q", got)
	}
}

func TestSizeOverServerLimitFailsWithoutSending(t *testing.T) {
	s := newSink(t, sinkOpts{maxSize: 100})
	res := testClient().Deliver(context.Background(), []string{s.addr}, &Message{From: "a@example.org", Recipients: rcpts("x@example.com"), Size: 1000, Open: bodyOf(simpleBody)})
	r := res.Recipients[0]
	if r.Status != PermFail || r.Code != 552 || r.Enhanced != "5.3.4" {
		t.Fatalf("result = %+v", r)
	}
	if strings.Contains(s.traced(), "MAIL FROM") {
		t.Error("MAIL sent although the server's SIZE forbids the message")
	}
}

func TestSMTPUTF8(t *testing.T) {
	msg := func() *Message {
		return &Message{From: "a@example.org", Recipients: rcpts("jöe@example.com"), Open: bodyOf(simpleBody)}
	}
	plain := newSink(t, sinkOpts{})
	r := testClient().Deliver(context.Background(), []string{plain.addr}, msg()).Recipients[0]
	if r.Status != PermFail || r.Enhanced != "5.6.7" {
		t.Errorf("to a server without SMTPUTF8: %+v", r)
	}
	utf8 := newSink(t, sinkOpts{utf8: true})
	r = testClient().Deliver(context.Background(), []string{utf8.addr}, msg()).Recipients[0]
	if r.Status != Delivered || !utf8.messages()[0].MailOpts.UTF8 {
		t.Errorf("to a server with SMTPUTF8: %+v", r)
	}
}

func TestBodyOpenErrorKeepsConnection(t *testing.T) {
	s := newSink(t, sinkOpts{})
	ctx := context.Background()
	c, err := testClient().Dial(ctx, []string{s.addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res := c.Send(ctx, &Message{From: "a@example.org", Recipients: rcpts("x@example.com"),
		Open: func() (io.ReadCloser, error) { return nil, errors.New("blob missing") }})
	if r := res.Recipients[0]; r.Status != TempFail || !strings.Contains(r.Text, "blob missing") {
		t.Fatalf("result = %+v", r)
	}
	res = c.Send(ctx, &Message{From: "a@example.org", Recipients: rcpts("y@example.com"), Open: bodyOf(simpleBody)})
	if r := res.Recipients[0]; r.Status != Delivered {
		t.Fatalf("next message on the same connection: %+v", r)
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections", n)
	}
}

// smtpScript greets and answers a minimal session by hand; ext is the
// EHLO extension list, or nil to refuse EHLO so the client must fall back
// to HELO. onData runs after the final dot, before the reply.
func smtpScript(ext []string, onData func()) func(c net.Conn, r *bufio.Reader) {
	return func(c net.Conn, r *bufio.Reader) {
		io.WriteString(c, "220 script.test ESMTP\r\n")
		smtpLoop(ext, onData)(c, r)
	}
}

func smtpLoop(ext []string, onData func()) func(c net.Conn, r *bufio.Reader) {
	return func(c net.Conn, r *bufio.Reader) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case strings.HasPrefix(cmd, "EHLO"):
				if ext == nil {
					io.WriteString(c, "502 5.5.1 EHLO not implemented\r\n")
					continue
				}
				lines := append([]string{"script.test"}, ext...)
				for i, l := range lines {
					sep := "-"
					if i == len(lines)-1 {
						sep = " "
					}
					io.WriteString(c, "250"+sep+l+"\r\n")
				}
			case strings.HasPrefix(cmd, "HELO"):
				io.WriteString(c, "250 script.test\r\n")
			case strings.HasPrefix(cmd, "DATA"):
				io.WriteString(c, "354 go ahead\r\n")
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
				}
				if onData != nil {
					onData()
				}
				io.WriteString(c, "250 2.0.0 accepted\r\n")
			case cmd == "QUIT":
				io.WriteString(c, "221 bye\r\n")
				return
			default:
				io.WriteString(c, "250 ok\r\n")
			}
		}
	}
}

func TestGreetingRefusals(t *testing.T) {
	busy := scripted(t, func(c net.Conn, r *bufio.Reader) {
		io.WriteString(c, "421 4.3.2 Service not available, try later\r\n")
	})
	hostile := scripted(t, func(c net.Conn, r *bufio.Reader) {
		io.WriteString(c, "554 5.7.1 No SMTP service here\r\n")
		r.ReadString('\n') // QUIT
		io.WriteString(c, "221 bye\r\n")
	})
	good := newSink(t, sinkOpts{})

	_, err := testClient().Dial(context.Background(), []string{busy})
	var e *Error
	if !errors.As(err, &e) || e.Permanent || e.Code != 421 || e.Enhanced != "4.3.2" {
		t.Errorf("4xx greeting: %#v", err)
	}
	_, err = testClient().Dial(context.Background(), []string{busy, hostile})
	if !errors.As(err, &e) || e.Permanent || !strings.Contains(e.Text, busy+": 421") || !strings.Contains(e.Text, hostile+": 554") {
		t.Errorf("4xx then 5xx greeting: %#v", err)
	}
	_, err = testClient().Dial(context.Background(), []string{hostile})
	if !errors.As(err, &e) || !e.Permanent || e.Code != 554 {
		t.Errorf("5xx greeting from every candidate: %#v", err)
	}

	// The next candidate is tried after a refusal.
	c, err := testClient().Dial(context.Background(), []string{busy, good.addr})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestPipelining(t *testing.T) {
	// The server reads MAIL and both RCPTs before it answers any of them: a
	// client that waits for each reply would stall until its timeout.
	addr := scripted(t, func(c net.Conn, r *bufio.Reader) {
		io.WriteString(c, "220 script.test ESMTP\r\n")
		r.ReadString('\n')
		io.WriteString(c, "250-script.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
		var cmds []string
		for range 3 {
			l, _ := r.ReadString('\n')
			cmds = append(cmds, l)
		}
		io.WriteString(c, "250 2.1.0 sender ok\r\n250 2.1.5 ok\r\n550 5.1.1 unknown\r\n")
		smtpLoop([]string{"PIPELINING"}, nil)(c, r)
	})
	res := testClient().Deliver(context.Background(), []string{addr}, &Message{From: "a@example.org", Recipients: rcpts("x@example.com", "y@example.com"), Open: bodyOf(simpleBody)})
	if res.Recipients[0].Status != Delivered || res.Recipients[1].Status != PermFail || res.Recipients[1].Enhanced != "5.1.1" {
		t.Fatalf("result = %+v", res.Recipients)
	}
}

func TestHeloFallbackAndNo8BitMIME(t *testing.T) {
	addr := scripted(t, smtpScript(nil, nil))
	ctx := context.Background()
	c, err := testClient().Dial(ctx, []string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := c.Send(ctx, &Message{From: "a@example.org", Recipients: rcpts("x@example.com"), EightBitMIME: true, Open: bodyOf(simpleBody)}).Recipients[0]
	if r.Status != PermFail || r.Enhanced != "5.6.3" {
		t.Errorf("8-bit message to a HELO-only server: %+v", r)
	}
	r = c.Send(ctx, &Message{From: "a@example.org", Recipients: rcpts("x@example.com"), Open: bodyOf(simpleBody)}).Recipients[0]
	if r.Status != Delivered || r.Text != "accepted" {
		t.Errorf("7-bit message to a HELO-only server: %+v", r)
	}
}

func TestTimeoutIsTemporary(t *testing.T) {
	silent := scripted(t, func(c net.Conn, r *bufio.Reader) {
		r.ReadString('\n') // never greets; returns when the client hangs up
	})
	cl := testClient()
	cl.Timeouts.Greeting = 50 * time.Millisecond
	_, err := cl.Dial(context.Background(), []string{silent})
	var e *Error
	if !errors.As(err, &e) || e.Permanent || !strings.Contains(e.Text, "timed out waiting for the greeting") {
		t.Fatalf("Dial error = %#v", err)
	}
}

func TestCancelDuringFinalReply(t *testing.T) {
	gotDot := make(chan struct{})
	release := make(chan struct{})
	addr := scripted(t, smtpScript([]string{"PIPELINING"}, func() {
		close(gotDot)
		<-release
	}))
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-gotDot
		cancel()
	}()
	r := testClient().Deliver(ctx, []string{addr}, &Message{From: "a@example.org", Recipients: rcpts("x@example.com"), Open: bodyOf(simpleBody)}).Recipients[0]
	if r.Status != TempFail || !strings.Contains(r.Text, "cancelled") {
		t.Fatalf("result = %+v", r)
	}
}

func TestRcpt552IsTemporary(t *testing.T) {
	s := newSink(t, sinkOpts{})
	s.refuseRcpt("many@example.com", 552, smtp.EnhancedCode{5, 5, 3}, "Too many recipients")
	r := testClient().Deliver(context.Background(), []string{s.addr}, &Message{From: "a@example.org", Recipients: rcpts("ok@example.com", "many@example.com"), Open: bodyOf(simpleBody)})
	if r.Recipients[0].Status != Delivered || r.Recipients[1].Status != TempFail {
		t.Fatalf("result = %+v", r.Recipients)
	}
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Reply
		bad  bool
	}{
		{in: "250 ok\r\n", want: Reply{Code: 250, Text: "ok"}},
		{in: "250\r\n", want: Reply{Code: 250}},
		{in: "550-5.1.1 first\r\n550-5.1.1 second\r\n550 5.1.1 third\r\n", want: Reply{Code: 550, Enhanced: "5.1.1", Text: "first\nsecond\nthird"}},
		{in: "451 5.1.1 class mismatch stays text\r\n", want: Reply{Code: 451, Text: "5.1.1 class mismatch stays text"}},
		{in: "250-a\r\n251 b\r\n", bad: true},
		{in: "hello\r\n", bad: true},
		{in: "250-a\r\n", bad: true},
	} {
		got, err := readReply(bufio.NewReader(strings.NewReader(tc.in)))
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("readReply(%q) = %+v, %v", tc.in, got, err)
		}
	}
	long := "250 " + strings.Repeat("x", 5000) + "\r\n"
	if _, err := readReply(bufio.NewReaderSize(strings.NewReader(long), 4096)); err == nil {
		t.Error("an over-long line was accepted")
	}
}

func TestParams(t *testing.T) {
	if got := xtext("a+b=c d\x01é"); got != "a+2Bb+3Dc+20d+01+C3+A9" {
		t.Errorf("xtext = %q", got)
	}
	for in, want := range map[string]string{
		"rfc822;a@example.com":   "rfc822;a@example.com",
		"a+b@example.com":        "rfc822;a+2Bb@example.com",
		"RFC822;jö@example.com":  `utf-8;j\x{F6}@example.com`,
		"utf-8;a\\b@example.com": `utf-8;a\x{5C}b@example.com`,
		";a@example.com":         "",
	} {
		if got := orcptParam(in); got != want {
			t.Errorf("orcptParam(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"success", "failure"}, "SUCCESS,FAILURE"},
		{[]string{"NEVER", "DELAY"}, ""},
		{[]string{"BOGUS"}, ""},
	} {
		if got := notifyParam(tc.in); got != tc.want {
			t.Errorf("notifyParam(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
