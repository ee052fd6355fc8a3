package dsn

import (
	"bytes"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// A quoted local part keeps its exact form in the notice's To: field and
// in the report (RFC 5321 §4.1.2, RFC 5322 §3.4.1): no space dropped, no
// quote removed.
func TestComposeQuotedAddresses(t *testing.T) {
	n := failedNotice()
	n.Sender = `"quoted local"@ext.example`
	n.Recipients = n.Recipients[:1]
	n.Recipients[0].Final = `"john smith"@customer.example`
	n.Recipients[0].ORCPT = `rfc822;"john smith"@customer.example`
	c, err := ComposeMessage(n)
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTPUTF8 || c.EightBit {
		t.Errorf("an ASCII notice needs SMTPUTF8 %v, 8BITMIME %v", c.SMTPUTF8, c.EightBit)
	}
	h, parts := parse(t, c.Data)
	if got := h.Get("To"); got != `<"quoted local"@ext.example>` {
		t.Errorf("To: %q", got)
	}
	r := statusFields(t, parts[1].body)[1]
	if r.Get("Final-Recipient") != `rfc822; "john smith"@customer.example` || r.Get("Original-Recipient") != `rfc822; "john smith"@customer.example` {
		t.Errorf("recipient block = %v", r)
	}
	text, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(parts[0].body)))
	if !strings.Contains(string(text), `<"john smith"@customer.example>`) {
		t.Errorf("text part:\n%s", text)
	}
}

const utf8Original = "From: Jörg <jörg@example.org>\r\n" +
	"To: bob@customer.example\r\n" +
	"Subject: Grüße\r\n" +
	"Message-ID: <orig-2@example.org>\r\n" +
	"\r\n" +
	"Hallo Bob, schöne Grüße.\r\n"

// A sender with a UTF-8 address is reached only over SMTPUTF8, so the
// notice is RFC 6533's: message/global-delivery-status with unitext
// addresses, the original as message/global, 8bit, a UTF-8 To: field.
func TestComposeUTF8Sender(t *testing.T) {
	n := failedNotice()
	n.Sender = "jörg@example.org"
	n.Recipients = n.Recipients[:1]
	n.Recipients[0].Final = "björn@customer.example"
	n.Recipients[0].ORCPT = "utf-8;björn@customer.example"
	n.Original = strings.NewReader(utf8Original)
	c, err := ComposeMessage(n)
	if err != nil {
		t.Fatal(err)
	}
	if !c.SMTPUTF8 || !c.EightBit {
		t.Errorf("SMTPUTF8 %v, 8BITMIME %v; want both", c.SMTPUTF8, c.EightBit)
	}
	h, parts := parse(t, c.Data)
	_, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if params["report-type"] != "global-delivery-status" {
		t.Errorf("report-type %q", params["report-type"])
	}
	if got := h.Get("To"); got != "<jörg@example.org>" {
		t.Errorf("To: %q", got)
	}
	if ct := parts[1].header.Get("Content-Type"); ct != "message/global-delivery-status" {
		t.Errorf("second part %q", ct)
	}
	r := statusFields(t, parts[1].body)[1]
	if r.Get("Final-Recipient") != "utf-8; björn@customer.example" || r.Get("Original-Recipient") != "utf-8; björn@customer.example" {
		t.Errorf("recipient block = %v", r)
	}
	if ct, cte := parts[2].header.Get("Content-Type"), parts[2].header.Get("Content-Transfer-Encoding"); ct != "message/global" || cte != "8bit" {
		t.Errorf("third part %q %q", ct, cte)
	}
	if !bytes.Equal(parts[2].body, []byte(utf8Original)) {
		t.Errorf("original returned as\n%q", parts[2].body)
	}
}

// A sender with an ASCII address whose message had a UTF-8 header gets a
// 7-bit notice that needs neither SMTPUTF8 nor 8BITMIME, so no next hop
// refuses it: the original is message/global (or message/global-headers)
// under quoted-printable (RFC 6532 §3.7, RFC 6533 §6.3).
func TestComposeUTF8OriginalToASCIISender(t *testing.T) {
	for _, ret := range []string{"FULL", "HDRS"} {
		n := failedNotice()
		n.Ret = ret
		n.Recipients = n.Recipients[:1]
		n.Original = strings.NewReader(utf8Original)
		c, err := ComposeMessage(n)
		if err != nil {
			t.Fatal(err)
		}
		if c.SMTPUTF8 || c.EightBit || !isASCII(c.Data) {
			t.Fatalf("RET=%s: SMTPUTF8 %v, 8BITMIME %v, ASCII %v", ret, c.SMTPUTF8, c.EightBit, isASCII(c.Data))
		}
		_, parts := parse(t, c.Data)
		if ct := parts[1].header.Get("Content-Type"); ct != "message/delivery-status" {
			t.Errorf("second part %q", ct)
		}
		want, wantBody := "message/global", utf8Original
		if ret == "HDRS" {
			want, wantBody = "message/global-headers", utf8Original[:strings.Index(utf8Original, "\r\n\r\n")+2]
		}
		// mime/multipart undoes quoted-printable itself and drops the
		// field, so the raw notice is checked for it.
		if ct := parts[2].header.Get("Content-Type"); ct != want ||
			!bytes.Contains(c.Data, []byte("Content-Transfer-Encoding: quoted-printable\r\nContent-Type: "+want+"\r\n")) {
			t.Errorf("RET=%s: third part %q, not quoted-printable:\n%s", ret, ct, c.Data)
		}
		if string(parts[2].body) != wantBody {
			t.Errorf("RET=%s: original decodes to %q", ret, parts[2].body)
		}
	}
}
