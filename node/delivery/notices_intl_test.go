package delivery

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	"lifeline/fsm"
	"lifeline/smtp"
)

// senderMX is Lifeline's own MX standing for the sender's server: it
// offers SMTPUTF8 and keeps every address exactly as it arrives, so a
// test sees the envelope the notice really travelled with.
type senderMX struct {
	mu   sync.Mutex
	msgs []senderMsg
	addr string
}

type senderMsg struct {
	env  smtp.Envelope
	body []byte
}

func startSenderMX(t *testing.T, domain string) *senderMX {
	t.Helper()
	m := &senderMX{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.addr = ln.Addr().String()
	srv := smtp.NewServer(smtp.Config{Hostname: "mx.sender.test", Queue: &mxSpool{m: m, domain: domain}})
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return m
}

func (m *senderMX) messages() []senderMsg {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]senderMsg(nil), m.msgs...)
}

type mxSpool struct {
	m      *senderMX
	domain string
	blobs  sync.Map
}

func (q *mxSpool) Protected(d string) (bool, error) { return d == q.domain, nil }

func (q *mxSpool) NewBlob() (smtp.BlobWriter, error) { return &memBlob{q: q}, nil }

func (q *mxSpool) Enqueue(_ context.Context, env *smtp.Envelope, hash string, _ int64) error {
	b, _ := q.blobs.Load(hash)
	q.m.mu.Lock()
	defer q.m.mu.Unlock()
	q.m.msgs = append(q.m.msgs, senderMsg{env: *env, body: b.([]byte)})
	return nil
}

type memBlob struct {
	q   *mxSpool
	buf bytes.Buffer
}

func (b *memBlob) Write(p []byte) (int, error) { return b.buf.Write(p) }
func (b *memBlob) Abort() error                { return nil }
func (b *memBlob) Commit() (string, int64, error) {
	h := fmt.Sprintf("%p", b)
	b.q.blobs.Store(h, bytes.Clone(b.buf.Bytes()))
	return h, int64(b.buf.Len()), nil
}

// A failure notice goes back to the sender exactly as the sender's address
// was given: a quoted local part stays quoted in RCPT TO and in To:, and
// the failed recipient keeps its quotes in the report.
func TestNoticeKeepsQuotedAddresses(t *testing.T) {
	cust := startSink(t, "")
	cust.reject["john smith@customer.test"] = 550 // go-smtp hands it over unquoted
	mx := startSenderMX(t, "ext.example")
	h := newHarness(t, map[string]string{"ext.example": mx.addr}, nil)
	h.must(&fsm.DomainPut{Name: "customer.test", Destination: cust.addr(), At: 1})
	h.receive("Q1", `"quoted local"@ext.example`, body1, rcpt(`"john smith"@customer.test`))

	ctx := context.Background()
	h.eng.RunOnce(ctx)
	h.eng.RunOnce(ctx)
	got := mx.messages()
	if len(got) != 1 {
		t.Fatalf("the sender's server got %d notices, want 1", len(got))
	}
	n := got[0]
	if n.env.From != "" || len(n.env.Recipients) != 1 || n.env.Recipients[0].Address != `"quoted local"@ext.example` {
		t.Fatalf("notice envelope %+v", n.env)
	}
	mustContain(t, n.body, "To: <\"quoted local\"@ext.example>\r\n", "Final-Recipient: rfc822; \"john smith\"@customer.test\r\n")
}

const utf8Body = "From: Jörg <jörg@ext.example>\r\nTo: ünal@customer.test\r\nSubject: Grüße\r\n" +
	"Message-ID: <m2@ext.example>\r\n\r\nSchöne Grüße\r\n"

// RFC 6533: a notice to a sender with a UTF-8 address travels with
// SMTPUTF8 (the sender's server offers it) as message/global-delivery-status
// instead of being dropped; one to an ASCII sender of UTF-8 mail stays
// 7-bit and reaches a server without SMTPUTF8.
func TestNoticesForInternationalMail(t *testing.T) {
	// The customer's server lacks SMTPUTF8, so the originals fail with
	// 5.6.7 and both senders get a failure notice.
	cust := startSink(t, "")
	utf8MX := startSenderMX(t, "ext.example")
	plain := startSink(t, "") // go-smtp without SMTPUTF8
	h := newHarness(t, map[string]string{"ext.example": utf8MX.addr, "plain.test": plain.addr()}, nil)
	h.must(&fsm.DomainPut{Name: "customer.test", Destination: cust.addr(), At: 1})
	for _, m := range []struct{ id, from string }{{"Q1", "jörg@ext.example"}, {"Q2", "ascii@plain.test"}} {
		cmd := &fsm.SpoolAdd{ID: m.id, From: m.from, Recipients: []fsm.Recipient{rcpt("ünal@customer.test")},
			ReceivedAt: h.clock.Now().UnixNano(), SMTPUTF8: true, Body: "8BITMIME"}
		if err := h.spool(context.Background(), cmd, []byte(utf8Body)); err != nil {
			t.Fatal(err)
		}
	}

	ctx := context.Background()
	h.eng.RunOnce(ctx)
	h.eng.RunOnce(ctx)

	got := utf8MX.messages()
	if len(got) != 1 {
		t.Fatalf("the UTF-8 sender's server got %d notices, want 1", len(got))
	}
	n := got[0]
	if !n.env.SMTPUTF8 || n.env.Body != "8BITMIME" || n.env.Recipients[0].Address != "jörg@ext.example" {
		t.Fatalf("notice envelope %+v", n.env)
	}
	mustContain(t, n.body, "To: <jörg@ext.example>\r\n", "report-type=global-delivery-status",
		"Content-Type: message/global-delivery-status\r\n", "Final-Recipient: utf-8; ünal@customer.test\r\n",
		"Content-Type: message/global\r\n", "Subject: Grüße\r\n")

	plainGot := plain.messages()
	if len(plainGot) != 1 || len(plainGot[0].To) != 1 || plainGot[0].To[0] != "ascii@plain.test" {
		t.Fatalf("the ASCII sender's server got %+v", plainGot)
	}
	d := plainGot[0].Data
	for _, c := range d {
		if c >= 0x80 {
			t.Fatalf("the notice to a server without SMTPUTF8 is not 7-bit:\n%s", d)
		}
	}
	mustContain(t, d, "Content-Type: message/delivery-status\r\n", `Final-Recipient: utf-8; \x{FC}nal@customer.test`,
		"Content-Type: message/global\r\n", "Content-Transfer-Encoding: quoted-printable\r\n", "Status: 5.6.7\r\n")
}
