package inbox_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"lifeline/webui/webtest"
)

// get fetches path and returns the status, the body and the response.
func get(t *testing.T, b *webtest.Browser, path string) (int, string, *http.Response) {
	t.Helper()
	resp, err := b.Client.Get(b.Base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp
}

func TestMailWithAMalformedHeaderOpens(t *testing.T) {
	tn := webtest.SetupTenants(t)
	// An mbox "From " line kept at the top, and a header line without a
	// colon after valid fields: the list shows sender and subject, and
	// the message opens with its text.
	id := tn.Deliver("mailer-daemon@ext.example", "alice@acme.test", "From MAILER-DAEMON Mon Jun  1 10:00:00 2026\n"+
		"From: Mail System <postmaster@ext.example>\nTo: alice@acme.test\nSubject: Undeliverable: offer\n"+
		"this line is not a field\nand the text goes on.\n")
	alice := tn.SignIn("alice@acme.test")
	code, list := alice.Get("/mail/alice@acme.test/")
	if code != 200 || !strings.Contains(list, "Mail System &lt;postmaster@ext.example&gt;") || !strings.Contains(list, "Undeliverable: offer") {
		t.Fatalf("list: %d\n%s", code, list)
	}
	code, page := alice.Get("/mail/alice@acme.test/m/" + id)
	if code != 200 || !strings.Contains(page, "this line is not a field\nand the text goes on.") || strings.Contains(page, `id="raw-note"`) {
		t.Fatalf("read: %d\n%s", code, page)
	}
}

func TestUnrecoverableStructureShowsTheRawTextWithANote(t *testing.T) {
	tn := webtest.SetupTenants(t)
	msg := "From: carla@ext.example\nTo: alice@acme.test\nSubject: Broken report\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/report; report-type=delivery-status;\n\tbo\n\n" +
		"This is a MIME-encapsulated message\n\n--lost.boundary\n\nYour message could not be delivered.\n--lost.boundary--\n"
	id := tn.Deliver("carla@ext.example", "alice@acme.test", msg)
	alice := tn.SignIn("alice@acme.test")
	code, page := alice.Get("/mail/alice@acme.test/m/" + id)
	if code != 200 || !strings.Contains(page, `id="raw-note"`) || !strings.Contains(page, "--lost.boundary\n\nYour message could not be delivered.") {
		t.Fatalf("read: %d\n%s", code, page)
	}
	// The original downloads as it was stored, never shown by the browser.
	code, raw, resp := get(t, alice, "/mail/alice@acme.test/m/"+id+"/raw")
	if code != 200 || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;") || resp.Header.Get("Content-Type") != "application/octet-stream" ||
		!strings.HasPrefix(raw, "Received: ") || !strings.Contains(raw, "Subject: Broken report\r\n") {
		t.Fatalf("raw: %d %q %q\n%s", code, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"), raw)
	}
	// A reply quotes the text that was shown.
	r, _ := alice.Post("/compose", url.Values{"kind": {"reply"}, "id": {id}})
	d, ok, _ := tn.Node.Store().Draft("alice@acme.test", strings.TrimPrefix(r.Header.Get("Location"), "/drafts/"))
	if !ok || !strings.Contains(d.Text, "> Your message could not be delivered.") || d.To != "carla@ext.example" {
		t.Fatalf("reply: %d %+v", r.StatusCode, d)
	}
}

const twoHTMLParts = `From: Shop <news@shop.example>
To: alice@acme.test
Subject: Two offers
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: text/html; charset=utf-8

<p>First <b>offer</b></p>
--m
Content-Type: application/pdf; name="terms.pdf"
Content-Disposition: attachment; filename="terms.pdf"

%PDF-1.4
--m
Content-Type: text/html; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

<p>Second offer, gr=FC=DFe</p>
--m--
`

func TestEveryHTMLSectionHasItsFrame(t *testing.T) {
	tn := webtest.SetupTenants(t)
	id := tn.Deliver("news@shop.example", "alice@acme.test", twoHTMLParts)
	alice := tn.SignIn("alice@acme.test")
	base := "/mail/alice@acme.test/m/" + id
	code, page := alice.Get(base)
	if code != 200 || !strings.Contains(page, `src="`+base+`/frame?part=0"`) || !strings.Contains(page, `src="`+base+`/frame?part=2"`) || !strings.Contains(page, "terms.pdf") {
		t.Fatalf("read: %d\n%s", code, page)
	}
	for path, want := range map[string]string{base + "/frame": "First <b>offer</b>", base + "/frame?part=0": "First <b>offer</b>", base + "/frame?part=2": "Second offer, grüße"} {
		if code, body, _ := get(t, alice, path); code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: %d\n%s", path, code, body)
		}
	}
	// The PDF is no HTML section; a part number that is no number is
	// refused.
	if code, _, _ := get(t, alice, base+"/frame?part=1"); code != http.StatusNotFound {
		t.Errorf("frame of the PDF: %d", code)
	}
	if code, _, _ := get(t, alice, base+"/frame?part=x"); code != http.StatusBadRequest {
		t.Errorf("frame?part=x: %d", code)
	}
	// Replying to HTML-only mail quotes its text; a forward carries it.
	for kind, want := range map[string]string{"reply": "> First offer\n>\n> Second offer, grüße", "forward": "First offer\n\nSecond offer, grüße"} {
		r, _ := alice.Post("/compose", url.Values{"kind": {kind}, "id": {id}})
		d, ok, _ := tn.Node.Store().Draft("alice@acme.test", strings.TrimPrefix(r.Header.Get("Location"), "/drafts/"))
		if !ok || !strings.Contains(d.Text, want) {
			t.Errorf("%s: %d %q", kind, r.StatusCode, d.Text)
		}
	}
}
