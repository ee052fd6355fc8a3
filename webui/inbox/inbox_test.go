package inbox_test

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"lifeline/fsm"
	"lifeline/webui/webtest"
)

const password = webtest.Password

func TestLoginSessionAndInboxList(t *testing.T) {
	tn := webtest.SetupTenants(t)
	id := tn.Deliver("ceo@partner.example", "alice@acme.test", webtest.PlainMessage("CEO <ceo@partner.example>", "alice@acme.test", "Contract <signed>", "Call me."))
	b := tn.Browser()
	if code, body := b.Get("/login"); code != 200 || !strings.Contains(body, `<label for="email">Email</label>`) || !strings.Contains(body, `<label for="password">Password</label>`) || !strings.Contains(body, ">Sign in</button>") {
		t.Fatalf("login page: %d\n%s", code, body)
	}
	if r := b.Login("alice@acme.test", "wrong password!", ""); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", r.StatusCode)
	}
	r := b.Login("Alice@Acme.test", password, "")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", r.StatusCode)
	}
	var sess *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == "lifeline_session" {
			sess = c
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie: %+v", sess)
	}
	code, page := b.Get("/mail/alice@acme.test/")
	if code != 200 || !strings.Contains(page, "Contract &lt;signed&gt;") || !strings.Contains(page, "only mail received while acme.test") {
		t.Fatalf("inbox: %d\n%s", code, page)
	}
	if !strings.Contains(page, `class="unread"`) {
		t.Fatal("new message not shown unread")
	}
	code, page = b.Get("/mail/alice@acme.test/m/" + id)
	if code != 200 || !strings.Contains(page, "Call me.") {
		t.Fatalf("read: %d\n%s", code, page)
	}
	if !tn.Node.Store().InboxRead("alice@acme.test", id) {
		t.Fatal("reading did not mark read")
	}
	if code, page = b.Get("/mail/alice@acme.test/?q=contract"); code != 200 || !strings.Contains(page, id) {
		t.Fatalf("search by subject: %d", code)
	}
	if code, page = b.Get("/mail/alice@acme.test/?q=call+me"); code != 200 || !strings.Contains(page, id) {
		t.Fatalf("search by body: %d", code)
	}
	if code, page = b.Get("/mail/alice@acme.test/?q=nothing+like+this"); code != 200 || strings.Contains(page, id) {
		t.Fatalf("search miss: %d", code)
	}
	if code, _ = b.Get("/mail/alice@acme.test/?before=garbage"); code != 400 {
		t.Fatalf("bad cursor: %d", code)
	}
	// Logout ends the session on every node: it is gone from the state.
	if r, _ := b.Post("/logout", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	if code, _ := b.Get("/mail/alice@acme.test/"); code != http.StatusSeeOther {
		t.Fatalf("after logout: %d", code)
	}
	es, _ := tn.API.Audit(context.Background(), "Acme", 10)
	kinds := ""
	for _, e := range es {
		kinds += e.Kind + " "
	}
	if !strings.Contains(kinds, "login ") || !strings.Contains(kinds, "login_failed") {
		t.Fatalf("audit: %s", kinds)
	}
}

const hostileHTML = `From: attacker@evil.example
To: alice@acme.test
Subject: Hostile
Message-ID: <hostile@evil.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/html; charset=utf-8

<html><head><script>document.title='pwned'</script><style>body{background:url(http://127.0.0.1:1/css)}</style>
<meta http-equiv="refresh" content="0;url=http://127.0.0.1:1/refresh"></head>
<body onload="document.title='pwned'">
<p style="color: red; background-image: url(http://127.0.0.1:1/bg)">Hello <b>Alice</b></p>
<img src="http://127.0.0.1:1/pixel.gif" onerror="document.title='pwned'">
<img src="cid:logo@x">
<a href="javascript:alert(1)">click</a><a href="https://example.org/">site</a>
<iframe src="http://127.0.0.1:1/frame"></iframe><object data="http://127.0.0.1:1/o"></object>
<form action="http://127.0.0.1:1/f"><input name=x></form><svg onload="alert(1)"></svg>
</body></html>
--b1
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==
--b1
Content-Type: application/pdf; name="../../etc/pass\"wd.pdf"
Content-Disposition: attachment; filename="../../etc/pass\"wd.pdf"

%PDF-1.4 fake
--b1--
`

func TestHostileHTMLIsSanitised(t *testing.T) {
	tn := webtest.SetupTenants(t)
	id := tn.Deliver("attacker@evil.example", "alice@acme.test", hostileHTML)
	alice := tn.SignIn("alice@acme.test")
	code, page := alice.Get("/mail/alice@acme.test/m/" + id)
	if code != 200 || !strings.Contains(page, `sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"`) || strings.Contains(page, "allow-scripts") {
		t.Fatalf("reading view: %d\n%s", code, page)
	}
	if !strings.Contains(page, "Load remote images") {
		t.Fatal("no offer to load remote images")
	}
	resp, err := alice.Client.Get(tn.Base + "/mail/alice@acme.test/m/" + id + "/frame")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	frame := string(body)
	if i := strings.Index(frame, "<body>"); i >= 0 {
		frame = frame[i:]
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "sandbox") || strings.Contains(csp, "script-src") {
		t.Fatalf("frame CSP: %q", csp)
	}
	for _, bad := range []string{"<script", "onload", "onerror", "javascript:", "127.0.0.1:1", "<iframe", "<object", "<form", "<meta", "url(", "<svg"} {
		if strings.Contains(frame, bad) {
			t.Errorf("sanitised HTML still holds %q:\n%s", bad, frame)
		}
	}
	if !strings.Contains(frame, "<b>Alice</b>") || !strings.Contains(frame, `src="cid/logo@x"`) || !strings.Contains(frame, "color: red") {
		t.Errorf("sanitising lost the harmless parts:\n%s", frame)
	}
	// The cid: image comes from the message itself.
	resp, err = alice.Client.Get(tn.Base + "/mail/alice@acme.test/m/" + id + "/cid/logo@x")
	if err != nil {
		t.Fatal(err)
	}
	img, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(string(img), "\x89PNG") {
		t.Fatalf("cid image: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The attachment downloads with a harmless file name.
	resp, err = alice.Client.Get(tn.Base + "/mail/alice@acme.test/m/" + id + "/part/2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cd := resp.Header.Get("Content-Disposition")
	if resp.StatusCode != 200 || !strings.HasPrefix(cd, "attachment;") || strings.Contains(cd, "/") || strings.Contains(cd, `\"`) {
		t.Fatalf("attachment: %d %q", resp.StatusCode, cd)
	}
	if code, page := alice.Get("/mail/alice@acme.test/"); code != 200 || !strings.Contains(page, "Attachment · ") {
		t.Fatalf("list lacks the attachment marker: %d", code)
	}
}

func TestReplyThreadsAndReachesColleague(t *testing.T) {
	tn := webtest.SetupTenants(t)
	id := tn.Deliver("ceo@partner.example", "alice@acme.test", "From: CEO <ceo@partner.example>\nTo: alice@acme.test, carol@acme.test\nSubject: Budget\nMessage-ID: <m2@partner.example>\nReferences: <m1@partner.example>\nIn-Reply-To: <m1@partner.example>\n\nNumbers please.\n")
	alice := tn.SignIn("alice@acme.test")
	r, _ := alice.Post("/compose", url.Values{"kind": {"replyall"}, "id": {id}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("reply all: %d", r.StatusCode)
	}
	draftID := strings.TrimPrefix(r.Header.Get("Location"), "/drafts/")
	d, ok, _ := tn.Node.Store().Draft("alice@acme.test", draftID)
	if !ok || d.InReplyTo != "m2@partner.example" || d.References != "m1@partner.example m2@partner.example" || d.Subject != "Re: Budget" {
		t.Fatalf("draft: %+v", d)
	}
	if !strings.Contains(d.To, "ceo@partner.example") || !strings.Contains(d.To, "carol@acme.test") || strings.Contains(d.To+d.Cc, "alice@") {
		t.Fatalf("reply-all recipients: to %q cc %q", d.To, d.Cc)
	}
	// Autosave keeps what is typed.
	alice.Get("/drafts/" + draftID)
	r, _ = alice.Post("/drafts/"+draftID+"/autosave", url.Values{"to": {"carol@acme.test"}, "subject": {"Re: Budget"}, "text": {"Here they are."}})
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("autosave: %d", r.StatusCode)
	}
	if d, _, _ = tn.Node.Store().Draft("alice@acme.test", draftID); d.Text != "Here they are." {
		t.Fatalf("autosaved draft: %+v", d)
	}
	// Bad input changes nothing.
	r, _ = alice.Post("/drafts/"+draftID, url.Values{"to": {"not an address"}, "subject": {"Re: Budget"}, "text": {"x"}, "action": {"send"}})
	if r.StatusCode != http.StatusBadRequest {
		t.Fatalf("send to a bad address: %d", r.StatusCode)
	}
	r, _ = alice.Post("/drafts/"+draftID, url.Values{"to": {"carol@acme.test"}, "subject": {"Re: Budget"}, "text": {"Here they are."}, "action": {"send"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %d", r.StatusCode)
	}
	var got string
	webtest.WaitUntil(t, "the reply in carol's inbox", func() bool {
		items, _, _, _ := tn.Node.Store().InboxPage("carol@acme.test", fsm.InboxCursor{}, 10, 0, nil)
		for _, it := range items {
			if it.Subject == "Re: Budget" {
				got = it.ID
				return true
			}
		}
		return false
	})
	m, _, _ := tn.Node.Store().Message(got)
	rc, err := tn.Node.OpenBody(context.Background(), m.BlobHash)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(rc)
	rc.Close()
	for _, want := range []string{"In-Reply-To: <m2@partner.example>", "References: <m1@partner.example> <m2@partner.example>", "From: \"Alice\" <alice@acme.test>", "Message-Id: <"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("sent message lacks %q:\n%s", want, raw)
		}
	}
	if _, ok, _ := tn.Node.Store().Draft("alice@acme.test", draftID); ok {
		t.Fatal("draft kept after sending")
	}
}

func TestNewMessageWithAttachment(t *testing.T) {
	tn := webtest.SetupTenants(t)
	alice := tn.SignIn("alice@acme.test")
	r, _ := alice.Post("/compose", url.Values{"kind": {"new"}})
	draft := r.Header.Get("Location")
	alice.Get(draft)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range map[string]string{"csrf": alice.CSRF, "to": "carol@acme.test", "subject": "Files", "text": "See attached.", "action": "save"} {
		mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("attach", `../evil"name.txt`)
	fw.Write([]byte("attached bytes"))
	mw.Close()
	req, _ := http.NewRequest("POST", tn.Base+draft, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", tn.Base)
	resp, err := alice.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save with a file: %d", resp.StatusCode)
	}
	d, _, _ := tn.Node.Store().Draft("alice@acme.test", strings.TrimPrefix(draft, "/drafts/"))
	if len(d.Attachments) != 1 || strings.ContainsAny(d.Attachments[0].Name, `/"`) {
		t.Fatalf("draft attachments: %+v", d.Attachments)
	}
	if ok, _ := tn.Node.Store().BlobReferenced(d.Attachments[0].BlobHash); !ok {
		t.Fatal("the draft does not hold its attachment's body")
	}
	if r, _ := alice.Post(draft, url.Values{"to": {"carol@acme.test"}, "subject": {"Files"}, "text": {"See attached."}, "action": {"send"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %d", r.StatusCode)
	}
	var id string
	webtest.WaitUntil(t, "the message in carol's inbox", func() bool {
		items, _, _, _ := tn.Node.Store().InboxPage("carol@acme.test", fsm.InboxCursor{}, 10, 0, nil)
		if len(items) == 1 && items[0].Attachment {
			id = items[0].ID
		}
		return id != ""
	})
	carol := tn.SignIn("carol@acme.test")
	code, page := carol.Get("/mail/carol@acme.test/m/" + id)
	if code != 200 || !strings.Contains(page, "evil_name.txt") || !strings.Contains(page, "See attached.") {
		t.Fatalf("carol reads: %d\n%s", code, page)
	}
	resp, err = carol.Client.Get(tn.Base + "/mail/carol@acme.test/m/" + id + "/part/1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "attached bytes" || !strings.Contains(resp.Header.Get("Content-Disposition"), "evil_name.txt") {
		t.Fatalf("download: %q %q", body, resp.Header.Get("Content-Disposition"))
	}
}
