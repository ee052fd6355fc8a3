package delivery

import (
	"bytes"
	"context"
	"fmt"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"lifeline/fsm"
)

const body1 = "From: sender@sender.test\r\nTo: u@customer.test\r\nSubject: hello\r\nMessage-ID: <m1@sender.test>\r\n\r\nFirst line\r\n.leading dot\r\nlast line\r\n"

func TestDeliversByteForByteAndBouncesPermanentFailure(t *testing.T) {
	cust := startSink(t, "")
	cust.reject["nobody@customer.test"] = 550
	senderMX := startSink(t, "")
	h := newHarness(t, map[string]string{"sender.test": senderMX.addr()}, nil)
	h.must(&fsm.DomainPut{Name: "customer.test", Destination: cust.addr(), At: 1})
	h.receive("Q1", "sender@sender.test", body1, rcpt("u@customer.test"), rcpt("nobody@customer.test"))

	ctx := context.Background()
	h.eng.RunOnce(ctx)
	got := cust.messages()
	if len(got) != 1 || !bytes.Equal(got[0].Data, []byte(body1)) || got[0].From != "sender@sender.test" {
		t.Fatalf("customer server got %+v", got)
	}
	if _, ok, _ := h.f.Store().Message("Q1"); ok {
		t.Fatal("a message with every recipient settled is still queued")
	}
	// The notice is queued like any message and goes out on the next pass.
	h.eng.RunOnce(ctx)
	dsns := senderMX.messages()
	if len(dsns) != 1 {
		t.Fatalf("sender's server got %d notices, want 1", len(dsns))
	}
	d := dsns[0]
	if d.From != "" || len(d.To) != 1 || d.To[0] != "sender@sender.test" {
		t.Fatalf("notice envelope: from %q to %v", d.From, d.To)
	}
	report := parseReport(t, d.Data)
	if !strings.Contains(report, "Action: failed") || !strings.Contains(report, "Final-Recipient: rfc822; nobody@customer.test") ||
		!strings.Contains(report, "Status: 5.1.1") || !strings.Contains(report, "Diagnostic-Code: smtp; 550") {
		t.Fatalf("delivery-status part:\n%s", report)
	}
	if strings.Contains(report, "u@customer.test") {
		t.Fatal("the notice reports the delivered recipient as failed")
	}
}

// parseReport checks the RFC 6522 shape and returns the
// message/delivery-status part.
func parseReport(t *testing.T, data []byte) string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q", msg.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no message/delivery-status part: %v", err)
		}
		if p.Header.Get("Content-Type") == "message/delivery-status" {
			var b strings.Builder
			buf := make([]byte, 4096)
			for {
				n, err := p.Read(buf)
				b.Write(buf[:n])
				if err != nil {
					break
				}
			}
			return b.String()
		}
	}
}

// An outage of 31 days, run in seconds on the injected clock: every
// attempt follows the schedule, one delayed notice goes out after the
// warning time, and a failure notice with 4.4.7 when the lifetime ends.
func TestOutageScheduleThroughQueueLifetime(t *testing.T) {
	senderMX := startSink(t, "")
	sched := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour}
	h := newHarness(t, map[string]string{"sender.test": senderMX.addr()}, func(c *Config) {
		c.Schedule = sched
		c.DelayWarning = 4 * time.Hour
		c.QueueLifetime = 720 * time.Hour
	})
	h.must(&fsm.DomainPut{Name: "customer.test", Destination: closedPort(t), At: 1})
	h.receive("Q1", "sender@sender.test", body1, rcpt("u@customer.test"))

	ctx := context.Background()
	var attempts []time.Time
	for i := 0; i < 2000; i++ {
		h.eng.RunOnce(ctx)
		h.eng.RunOnce(ctx) // delivers any notice the first pass queued
		m, ok, _ := h.f.Store().Message("Q1")
		if !ok {
			break
		}
		r := m.Recipients[0]
		if r.Attempts > len(attempts) {
			attempts = append(attempts, time.Unix(0, r.LastAttempt).UTC())
		}
		h.clock.Set(time.Unix(0, r.NextAttempt))
	}
	if _, ok, _ := h.f.Store().Message("Q1"); ok {
		t.Fatal("message still queued after the queue lifetime")
	}
	if attempts[0] != t0 {
		t.Fatalf("first attempt at %v, want on arrival %v", attempts[0], t0)
	}
	for i := 1; i < len(attempts); i++ {
		step := sched[min(i-1, len(sched)-1)]
		gap := attempts[i].Sub(attempts[i-1])
		if gap > step || gap < step*9/10 {
			t.Fatalf("attempt %d came %v after the previous one; the schedule says %v (minus up to 10%% jitter)", i+1, gap, step)
		}
	}
	last := attempts[len(attempts)-1]
	if last.Sub(t0) > 720*time.Hour {
		t.Fatalf("attempted after the lifetime: %v", last.Sub(t0))
	}
	t.Logf("%d attempts over %v", len(attempts), last.Sub(t0))
	if len(attempts) < 700 || len(attempts) > 830 {
		t.Fatalf("%d attempts in 30 days; hourly retries give about 720", len(attempts))
	}

	dsns := senderMX.messages()
	if len(dsns) != 2 {
		t.Fatalf("sender got %d notices, want one delayed and one failed", len(dsns))
	}
	delayed, failed := parseReport(t, dsns[0].Data), parseReport(t, dsns[1].Data)
	if !strings.Contains(delayed, "Action: delayed") || !strings.Contains(delayed, "Will-Retry-Until: "+t0.Add(720*time.Hour).Format(time.RFC1123Z)) {
		t.Fatalf("first notice is not the delayed one:\n%s", delayed)
	}
	if !strings.Contains(failed, "Action: failed") || !strings.Contains(failed, "Status: 4.4.7") {
		t.Fatalf("second notice is not the expiry failure:\n%s", failed)
	}
	d, _, _ := h.f.Store().Domain("customer.test")
	if !d.Spooling || d.SpoolingSince != t0.UnixNano() {
		t.Fatalf("domain should be spooling since the first failure: %+v", d)
	}
}

// While the destination is down the engine probes it with one message at
// a time; once it answers, a flush drains the spool oldest first over few
// connections.
func TestSpoolProbesGentlyThenDrains(t *testing.T) {
	dest := closedPort(t)
	h := newHarness(t, nil, func(c *Config) { c.BatchSize = 50; c.PerDestination = 2 })
	h.must(&fsm.DomainPut{Name: "customer.test", Destination: dest, At: 1})
	const n = 300
	for i := 0; i < n; i++ {
		h.receive(fmt.Sprintf("Q%04d", i), "sender@sender.test", fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i), rcpt("u@customer.test"))
	}
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		h.eng.RunOnce(ctx)
	}
	total := 0
	msgs, _, _ := h.f.Store().Messages(fsm.MessageFilter{}, "", 1000)
	for _, m := range msgs {
		total += m.Recipients[0].Attempts
	}
	// Two batches fail before the domain is known to spool, then one probe.
	if total > 2*50+1 {
		t.Fatalf("%d delivery attempts against a dead destination; want at most %d", total, 2*50+1)
	}
	if d, _, _ := h.f.Store().Domain("customer.test"); !d.Spooling {
		t.Fatal("domain not marked spooling")
	}
	if due, _ := h.f.Store().Due(h.clock.Now().UnixNano(), 10); len(due) != 0 {
		t.Fatalf("recipients still due right after the failed probe: %d", len(due))
	}

	cust := startSink(t, dest)
	h.must(&fsm.QueueOp{Op: fsm.OpRetry, At: h.clock.Now().UnixNano()})
	for i := 0; i < 50 && len(cust.messages()) < n; i++ {
		h.eng.RunOnce(ctx)
	}
	got := cust.messages()
	if len(got) != n {
		t.Fatalf("drained %d of %d", len(got), n)
	}
	if !bytes.HasPrefix(got[0].Data, []byte("Subject: 0\r\n")) {
		t.Fatalf("the drain did not start with the oldest message: %q", got[0].Data[:20])
	}
	if c := cust.connections(); c > n/50+2 {
		t.Fatalf("%d connections for %d messages: connections are not reused", c, n)
	}
	if st, _ := h.f.Store().Stats(); st.Messages != 0 {
		t.Fatalf("%d messages left in the queue", st.Messages)
	}
	if d, _, _ := h.f.Store().Domain("customer.test"); d.Spooling {
		t.Fatal("domain still spooling after the drain")
	}
}

// No notice ever goes to the null sender, and NOTIFY=NEVER silences them.
func TestNoNoticeForNullSenderOrNever(t *testing.T) {
	cust := startSink(t, "")
	cust.reject["gone@customer.test"] = 550
	senderMX := startSink(t, "")
	h := newHarness(t, map[string]string{"*": senderMX.addr()}, nil)
	h.must(&fsm.DomainPut{Name: "customer.test", Destination: cust.addr(), At: 1})
	h.receive("Q1", "", body1, rcpt("gone@customer.test"))
	h.receive("Q2", "sender@sender.test", body1, rcpt("gone@customer.test", "NEVER"))
	ctx := context.Background()
	h.eng.RunOnce(ctx)
	h.eng.RunOnce(ctx)
	if st, _ := h.f.Store().Stats(); st.Messages != 0 {
		t.Fatalf("%d messages queued; no notice should have been created", st.Messages)
	}
	if len(senderMX.messages()) != 0 {
		t.Fatal("a notice went out")
	}
}

// An operator's delete with notice returns the message to its sender.
func TestBounceByOperator(t *testing.T) {
	senderMX := startSink(t, "")
	h := newHarness(t, map[string]string{"sender.test": senderMX.addr()}, nil)
	h.must(&fsm.DomainPut{Name: "customer.test", Destination: closedPort(t), At: 1})
	h.receive("Q1", "sender@sender.test", body1, rcpt("u@customer.test"))
	h.must(&fsm.QueueOp{Op: fsm.OpHold, IDs: []string{"Q1"}, At: h.clock.Now().UnixNano()})
	h.must(&fsm.QueueOp{Op: fsm.OpBounce, IDs: []string{"Q1"}, At: h.clock.Now().UnixNano()})
	ctx := context.Background()
	h.eng.RunOnce(ctx)
	h.eng.RunOnce(ctx)
	if _, ok, _ := h.f.Store().Message("Q1"); ok {
		t.Fatal("bounced message still queued")
	}
	dsns := senderMX.messages()
	if len(dsns) != 1 {
		t.Fatalf("%d notices, want 1", len(dsns))
	}
	mustContain(t, dsns[0].Data, "Action: failed", "removed from the queue by the operator")
}
