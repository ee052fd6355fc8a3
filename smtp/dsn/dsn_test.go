package dsn

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

type part struct {
	header textproto.MIMEHeader
	body   []byte
}

// parse reads a composed notice back with the standard library only, and
// checks the framing every notice must have.
func parse(t *testing.T, raw []byte) (mail.Header, []part) {
	t.Helper()
	if n, m := bytes.Count(raw, []byte("\n")), bytes.Count(raw, []byte("\r\n")); n != m {
		t.Fatalf("%d LF but %d CRLF: line endings must all be CRLF", n, m)
	}
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\r")) {
		t.Fatal("bare CR in output")
	}
	for i, l := range strings.Split(string(raw), "\r\n") {
		if len(l) > 998 {
			t.Fatalf("line %d is %d characters long", i, len(l))
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if rt := params["report-type"]; err != nil || mt != "multipart/report" || (rt != "delivery-status" && rt != "global-delivery-status") {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var parts []part
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, part{p.Header, b})
	}
	return msg.Header, parts
}

// statusFields splits a message/delivery-status body into its
// per-message block and per-recipient blocks (RFC 3464 §2.1).
func statusFields(t *testing.T, body []byte) []textproto.MIMEHeader {
	t.Helper()
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
	var blocks []textproto.MIMEHeader
	for {
		h, err := r.ReadMIMEHeader()
		if len(h) > 0 {
			blocks = append(blocks, h)
		}
		if err == io.EOF {
			return blocks
		}
		if err != nil {
			t.Fatalf("delivery-status: %v\n%s", err, body)
		}
	}
}

// testNow is the fixed clock of these tests; testArrived is when the
// original came in.
func testNow() time.Time     { return time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC) }
func testArrived() time.Time { return testNow().Add(-5 * time.Hour) }

const origHeader = "From: Alice <alice@example.org>\r\n" +
	"To: bob@customer.example\r\n" +
	"Subject: =?utf-8?q?Quarterly_r=C3=A9port?=\r\n" +
	"Message-ID: <orig-1@example.org>\r\n"
const origBody = "Hello Bob,\r\n.\r\nsee attached.\r\n"
const origMsg = origHeader + "\r\n" + origBody

func failedNotice() Notice {
	return Notice{
		Kind:         Failed,
		ReportingMTA: "node1.lifeline.example",
		Sender:       "alice@example.org",
		EnvID:        "QQ314159",
		ArrivalDate:  testArrived(),
		Recipients: []RecipientStatus{
			{
				Final: "bob@customer.example", ORCPT: "rfc822;Bob@Customer.example",
				Status: "5.1.1", RemoteMTA: "mx.customer.example",
				Diagnostic: "550 5.1.1 No such user here", LastAttempt: testNow().Add(-time.Minute),
			},
			{
				Final: "carol@customer.example", RemoteMTA: "mx.customer.example",
				Diagnostic: "connection refused", LastAttempt: testNow(),
			},
		},
		Ret:       "FULL",
		Original:  strings.NewReader(origMsg),
		Now:       testNow(),
		MessageID: "dsn-QQ314159@node1.lifeline.example",
	}
}

func TestComposeFailure(t *testing.T) {
	raw, err := Compose(failedNotice())
	if err != nil {
		t.Fatal(err)
	}
	hdr, parts := parse(t, raw)

	for k, want := range map[string]string{
		"From":           "Mail Delivery System <MAILER-DAEMON@node1.lifeline.example>",
		"To":             "<alice@example.org>",
		"Subject":        "Delivery Status Notification (Failure)",
		"Message-Id":     "<dsn-QQ314159@node1.lifeline.example>",
		"Auto-Submitted": "auto-replied",
		"Mime-Version":   "1.0",
		"References":     "<orig-1@example.org>",
	} {
		if got := hdr.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if d, err := hdr.Date(); err != nil || !d.Equal(testNow()) {
		t.Errorf("Date = %v, %v", d, err)
	}
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}

	text := string(parts[0].body)
	if ct := parts[0].header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("first part is %q", ct)
	}
	for _, want := range []string{
		"could not be delivered", "<bob@customer.example>",
		"The server mx.customer.example said: 550 5.1.1 No such user here",
		"<carol@customer.example>", "Reason: connection refused",
		"Subject: Quarterly réport", "Your message is attached.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text part lacks %q:\n%s", want, text)
		}
	}

	if ct := parts[1].header.Get("Content-Type"); ct != "message/delivery-status" {
		t.Fatalf("second part is %q", ct)
	}
	blocks := statusFields(t, parts[1].body)
	if len(blocks) != 3 {
		t.Fatalf("%d blocks in delivery-status, want 3:\n%s", len(blocks), parts[1].body)
	}
	wantFields := []map[string]string{
		{
			"Reporting-Mta":        "dns; node1.lifeline.example",
			"Original-Envelope-Id": "QQ314159",
			"Arrival-Date":         testArrived().Format(time.RFC1123Z),
		},
		{
			"Original-Recipient": "rfc822; Bob@Customer.example",
			"Final-Recipient":    "rfc822; bob@customer.example",
			"Action":             "failed",
			"Status":             "5.1.1",
			"Remote-Mta":         "dns; mx.customer.example",
			"Diagnostic-Code":    "smtp; 550 5.1.1 No such user here",
			"Last-Attempt-Date":  testNow().Add(-time.Minute).Format(time.RFC1123Z),
		},
		{
			"Final-Recipient":   "rfc822; carol@customer.example",
			"Action":            "failed",
			"Status":            "5.0.0",
			"Remote-Mta":        "dns; mx.customer.example",
			"Diagnostic-Code":   "X-Lifeline; connection refused",
			"Last-Attempt-Date": testNow().Format(time.RFC1123Z),
		},
	}
	for i, want := range wantFields {
		for k, v := range want {
			if got := blocks[i].Get(k); got != v {
				t.Errorf("block %d %s = %q, want %q", i, k, got, v)
			}
		}
		if len(blocks[i]) != len(want) {
			t.Errorf("block %d has fields %v, want exactly %v", i, blocks[i], want)
		}
	}

	if ct := parts[2].header.Get("Content-Type"); ct != "message/rfc822" {
		t.Fatalf("third part is %q", ct)
	}
	if string(parts[2].body) != origMsg {
		t.Errorf("original changed:\n%q", parts[2].body)
	}
}

func TestComposeDelay(t *testing.T) {
	until := testArrived().Add(720 * time.Hour)
	n := failedNotice()
	n.Kind = Delayed
	n.Recipients = []RecipientStatus{{
		Final: "bob@customer.example", Status: "4.4.1", RemoteMTA: "mx.customer.example",
		Diagnostic: "connection refused", LastAttempt: testNow(), WillRetryUntil: until,
	}}
	raw, err := Compose(n)
	if err != nil {
		t.Fatal(err)
	}
	hdr, parts := parse(t, raw)
	if got := hdr.Get("Subject"); got != "Delivery Status Notification (Delay)" {
		t.Errorf("Subject = %q", got)
	}
	text := strings.Join(strings.Fields(string(parts[0].body)), " ")
	if !strings.Contains(text, "keeps trying until "+until.Format(time.RFC1123Z)) ||
		!strings.Contains(text, "do not need to send it again") {
		t.Errorf("text part does not say how long we keep trying:\n%s", parts[0].body)
	}
	r := statusFields(t, parts[1].body)[1]
	if r.Get("Action") != "delayed" || r.Get("Status") != "4.4.1" || r.Get("Will-Retry-Until") != until.Format(time.RFC1123Z) {
		t.Errorf("recipient block = %v", r)
	}
	// RET=FULL asks for the message in a failure notice only (RFC 3461 §4.3).
	if ct := parts[2].header.Get("Content-Type"); ct != "text/rfc822-headers" || string(parts[2].body) != origHeader {
		t.Errorf("third part %q = %q", ct, parts[2].body)
	}
}

func TestStatusCode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		act  Action
		want string
	}{
		{"5.1.1", ActionFailed, "5.1.1"},
		{"4.4.1", ActionFailed, "5.4.1"}, // retried until the queue lifetime, then failed
		{"4.4.7", ActionFailed, "4.4.7"}, // expired in the queue (RFC 3463 §3.5)
		{"5.1.1", ActionDelayed, "4.1.1"},
		{"", ActionDelayed, "4.0.0"},
		{"garbage", ActionFailed, "5.0.0"},
		{"2.0.0", ActionRelayed, "2.0.0"},
		{"5.1.1000", ActionFailed, "5.0.0"},
	} {
		if got := statusCode(tc.in, tc.act); got != tc.want {
			t.Errorf("statusCode(%q, %s) = %q, want %q", tc.in, tc.act, got, tc.want)
		}
	}
}

func TestComposeSuccess(t *testing.T) {
	n := failedNotice()
	n.Kind = Delivered
	n.Recipients = []RecipientStatus{{Final: "bob@customer.example", RemoteMTA: "mx.customer.example", Diagnostic: "250 2.0.0 queued as X1"}}
	raw, err := Compose(n)
	if err != nil {
		t.Fatal(err)
	}
	hdr, parts := parse(t, raw)
	if got := hdr.Get("Subject"); got != "Delivery Status Notification (Success)" {
		t.Errorf("Subject = %q", got)
	}
	r := statusFields(t, parts[1].body)[1]
	if r.Get("Action") != "delivered" || r.Get("Status") != "2.0.0" || r.Get("Will-Retry-Until") != "" {
		t.Errorf("recipient block = %v", r)
	}
}

func TestComposeHeadersOnly(t *testing.T) {
	for name, mod := range map[string]func(*Notice){
		"RET=HDRS":      func(n *Notice) { n.Ret = "hdrs" },
		"over the size": func(n *Notice) { n.MaxOriginal = int64(len(origMsg) - 1) },
	} {
		n := failedNotice()
		mod(&n)
		raw, err := Compose(n)
		if err != nil {
			t.Fatal(err)
		}
		_, parts := parse(t, raw)
		if ct := parts[2].header.Get("Content-Type"); ct != "text/rfc822-headers" {
			t.Errorf("%s: third part is %q", name, ct)
		}
		if string(parts[2].body) != origHeader {
			t.Errorf("%s: third part = %q, want the headers only", name, parts[2].body)
		}
		if strings.Contains(string(raw), "see attached") {
			t.Errorf("%s: the body leaked into the notice", name)
		}
		if !strings.Contains(string(parts[0].body), "The headers of your message are attached.") {
			t.Errorf("%s: text part does not say only headers are attached", name)
		}
	}

	n := failedNotice()
	n.Original = nil
	raw, err := Compose(n)
	if err != nil {
		t.Fatal(err)
	}
	if _, parts := parse(t, raw); len(parts) != 2 {
		t.Errorf("without an original: %d parts, want 2", len(parts))
	}
}

func TestHeaderInjection(t *testing.T) {
	n := failedNotice()
	n.Sender = "alice@example.org\r\nBcc: victim@example.net"
	n.Recipients[0].Diagnostic = "550 5.1.1 nope\r\nBcc: victim@example.net\r\n\r\nfake body"
	n.Recipients[0].Final = "bob@customer.example\nX-Injected: 1"
	n.Recipients[0].RemoteMTA = "mx.example\r\nX-Injected: 2"
	n.EnvID = "env\rX-Injected: 3"
	raw, err := Compose(n)
	if err != nil {
		t.Fatal(err)
	}
	hdr, parts := parse(t, raw)
	if hdr.Get("Bcc") != "" || hdr.Get("X-Injected") != "" {
		t.Errorf("a header was injected: %v", hdr)
	}
	if to := hdr.Get("To"); strings.ContainsAny(to, "\r\n") || strings.Count(to, "<") != 1 {
		t.Errorf("To = %q", to)
	}
	for i, b := range statusFields(t, parts[1].body) {
		if b.Get("Bcc") != "" || b.Get("X-Injected") != "" {
			t.Errorf("block %d got an injected field: %v", i, b)
		}
	}
	r := statusFields(t, parts[1].body)[1]
	if got := r.Get("Diagnostic-Code"); got != "smtp; 550 5.1.1 nope Bcc: victim@example.net fake body" {
		t.Errorf("Diagnostic-Code = %q", got)
	}
}

func TestComposeLongDiagnosticIsFolded(t *testing.T) {
	n := failedNotice()
	n.Recipients[0].Diagnostic = "550 5.7.1 " + strings.Repeat("blocked ", 60) + strings.Repeat("x", 2000)
	raw, err := Compose(n)
	if err != nil {
		t.Fatal(err)
	}
	_, parts := parse(t, raw) // checks the 998-character limit
	got := statusFields(t, parts[1].body)[1].Get("Diagnostic-Code")
	if !strings.HasPrefix(got, "smtp; 550 5.7.1 blocked blocked") {
		t.Errorf("Diagnostic-Code = %.60q...", got)
	}
}

func TestComposeUTF8Recipient(t *testing.T) {
	n := failedNotice()
	n.Recipients = n.Recipients[:1]
	n.Recipients[0].Final = "jöe@customer.example"
	n.Recipients[0].ORCPT = "utf-8;jöe@customer.example"
	raw, err := Compose(n)
	if err != nil {
		t.Fatal(err)
	}
	_, parts := parse(t, raw)
	if !isASCII(parts[1].body) {
		t.Errorf("delivery-status is not 7-bit:\n%s", parts[1].body)
	}
	r := statusFields(t, parts[1].body)[1]
	if r.Get("Final-Recipient") != `utf-8; j\x{F6}e@customer.example` || r.Get("Original-Recipient") != `utf-8; j\x{F6}e@customer.example` {
		t.Errorf("recipient block = %v", r)
	}
}

func TestComposeIsDeterministic(t *testing.T) {
	a, err := Compose(failedNotice())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Compose(failedNotice())
	if !bytes.Equal(a, b) {
		t.Error("the same notice composed twice differs")
	}
}

func TestComposeRefuses(t *testing.T) {
	for name, mod := range map[string]func(*Notice){
		"null sender":      func(n *Notice) { n.Sender = "" },
		"null sender <>":   func(n *Notice) { n.Sender = "<>" },
		"no recipients":    func(n *Notice) { n.Recipients = nil },
		"no reporting MTA": func(n *Notice) { n.ReportingMTA = "" },
		"no message id":    func(n *Notice) { n.MessageID = "" },
		"no time":          func(n *Notice) { n.Now = time.Time{} },
		"no kind":          func(n *Notice) { n.Kind = 0 },
	} {
		n := failedNotice()
		mod(&n)
		if _, err := Compose(n); err == nil {
			t.Errorf("%s: composed anyway", name)
		}
	}
}

func TestShouldNotify(t *testing.T) {
	for _, tc := range []struct {
		kind   Kind
		notify []string
		want   bool
	}{
		{Failed, nil, true},
		{Delayed, nil, true},
		{Delivered, nil, false},
		{Failed, []string{"NEVER"}, false},
		{Delayed, []string{"NEVER"}, false},
		{Delivered, []string{"never"}, false},
		{Delivered, []string{"SUCCESS"}, true},
		{Failed, []string{"SUCCESS"}, false},
		{Delayed, []string{"failure", "delay"}, true},
		{Failed, []string{"DELAY"}, false},
		{Kind(9), nil, false},
	} {
		if got := ShouldNotify(tc.kind, tc.notify); got != tc.want {
			t.Errorf("ShouldNotify(%d, %v) = %v", tc.kind, tc.notify, got)
		}
	}
	if Needed("", Failed, nil) || Needed("<>", Failed, []string{"FAILURE"}) {
		t.Error("a notice for the null sender")
	}
	if !Needed("alice@example.org", Failed, nil) || Needed("alice@example.org", Failed, []string{"NEVER"}) {
		t.Error("Needed ignores NOTIFY")
	}
}
