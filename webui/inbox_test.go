package webui_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"lifeline/fsm"
	"lifeline/node"
	"lifeline/webui"
	"lifeline/webui/apiclient"
	"lifeline/webui/auth"
)

const password = "correct horse battery"

// tenants is a node with two organisations: Acme (alice, carol, boss the
// org admin, pat the partner) and Other (eve).
type tenants struct {
	t    *testing.T
	n    *node.Node
	base string
	api  *apiclient.Client
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func setupTenants(t *testing.T) *tenants {
	t.Helper()
	n, base := startNode(t)
	tn := &tenants{t: t, n: n, base: base, api: apiclient.New(base, token)}
	ctx := context.Background()
	for _, o := range []string{"Acme", "Other"} {
		if _, err := tn.api.AddOrg(ctx, webui.OrgRequest{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	dead := closedPort(t)
	for d, o := range map[string]string{"acme.test": "Acme", "other.test": "Other"} {
		if _, err := tn.api.AddDomain(ctx, webui.DomainRequest{Name: d, Destination: dead, Org: o}); err != nil {
			t.Fatal(err)
		}
	}
	users := []webui.UserRequest{
		{Email: "alice@acme.test", DisplayName: "Alice", Org: "Acme"},
		{Email: "carol@acme.test", Org: "Acme"},
		{Email: "boss@acme.test", Org: "Acme", Role: "admin"},
		{Email: "eve@other.test", Org: "Other"},
		{Email: "pat@partner.test", Role: "partner", Orgs: []string{"Acme"}},
	}
	for _, u := range users {
		u.Password = password
		if _, err := tn.api.AddUser(ctx, u); err != nil {
			t.Fatalf("add %s: %v", u.Email, err)
		}
	}
	return tn
}

// deliver sends a message to the node's MX and waits until it is listed
// in rcpt's inbox; it returns the queue ID.
func (tn *tenants) deliver(from, rcpt, msg string) string {
	tn.t.Helper()
	c, err := gosmtp.Dial(tn.n.SMTPAddr())
	if err != nil {
		tn.t.Fatal(err)
	}
	if err := c.SendMail(from, []string{rcpt}, strings.NewReader(strings.ReplaceAll(msg, "\n", "\r\n"))); err != nil {
		tn.t.Fatal(err)
	}
	c.Quit()
	var id string
	waitUntil(tn.t, "message in "+rcpt+"'s inbox", func() bool {
		items, _, _, _ := tn.n.Store().InboxPage(rcpt, fsm.InboxCursor{}, 100, 0, nil)
		for _, it := range items {
			if strings.Contains(msg, it.Subject) && it.Subject != "" {
				id = it.ID
				return true
			}
		}
		return false
	})
	return id
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// browser is a cookie-keeping HTTP client that sends Origin like a
// browser does on same-site posts.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func (tn *tenants) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: tn.t, base: tn.base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	resp, err := b.c.Get(b.base + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfField.FindStringSubmatch(string(body)); m != nil {
		b.csrf = m[1]
	}
	return resp.StatusCode, string(body)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) postOrigin(origin, path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// post submits a form with the page's CSRF token, as a same-site form.
func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if form.Get("csrf") == "" {
		form.Set("csrf", b.csrf)
	}
	return b.postOrigin(b.base, path, form)
}

func (b *browser) login(email, pw, code string) *http.Response {
	b.t.Helper()
	if code, _ := b.get("/login"); code != 200 {
		b.t.Fatalf("login page: %d", code)
	}
	resp, _ := b.post("/login", url.Values{"email": {email}, "password": {pw}, "code": {code}})
	if resp.StatusCode == http.StatusSeeOther {
		b.get("/mail/" + url.PathEscape(email) + "/")
	}
	return resp
}

func (tn *tenants) signIn(email string) *browser {
	tn.t.Helper()
	b := tn.browser()
	if r := b.login(email, password, ""); r.StatusCode != http.StatusSeeOther {
		tn.t.Fatalf("login %s: %d", email, r.StatusCode)
	}
	if email == "pat@partner.test" {
		b.get("/admin")
	}
	return b
}

func plainMessage(from, to, subject, text string) string {
	return fmt.Sprintf("From: %s\nTo: %s\nSubject: %s\nMessage-ID: <%s@sender.example>\nDate: Mon, 2 Feb 2026 10:00:00 +0000\n\n%s\n", from, to, subject, strings.ReplaceAll(subject, " ", "."), text)
}

func TestLoginSessionAndInboxList(t *testing.T) {
	tn := setupTenants(t)
	id := tn.deliver("ceo@partner.example", "alice@acme.test", plainMessage("CEO <ceo@partner.example>", "alice@acme.test", "Contract <signed>", "Call me."))
	b := tn.browser()
	if code, body := b.get("/login"); code != 200 || !strings.Contains(body, `<label for="email">Email</label>`) || !strings.Contains(body, `<label for="password">Password</label>`) || !strings.Contains(body, ">Sign in</button>") {
		t.Fatalf("login page: %d\n%s", code, body)
	}
	if r := b.login("alice@acme.test", "wrong password!", ""); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", r.StatusCode)
	}
	r := b.login("Alice@Acme.test", password, "")
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
	code, page := b.get("/mail/alice@acme.test/")
	if code != 200 || !strings.Contains(page, "Contract &lt;signed&gt;") || !strings.Contains(page, "only mail received while acme.test") {
		t.Fatalf("inbox: %d\n%s", code, page)
	}
	if !strings.Contains(page, `class="unread"`) {
		t.Fatal("new message not shown unread")
	}
	code, page = b.get("/mail/alice@acme.test/m/" + id)
	if code != 200 || !strings.Contains(page, "Call me.") {
		t.Fatalf("read: %d\n%s", code, page)
	}
	if !tn.n.Store().InboxRead("alice@acme.test", id) {
		t.Fatal("reading did not mark read")
	}
	if code, page = b.get("/mail/alice@acme.test/?q=contract"); code != 200 || !strings.Contains(page, id) {
		t.Fatalf("search by subject: %d", code)
	}
	if code, page = b.get("/mail/alice@acme.test/?q=call+me"); code != 200 || !strings.Contains(page, id) {
		t.Fatalf("search by body: %d", code)
	}
	if code, page = b.get("/mail/alice@acme.test/?q=nothing+like+this"); code != 200 || strings.Contains(page, id) {
		t.Fatalf("search miss: %d", code)
	}
	if code, _ = b.get("/mail/alice@acme.test/?before=garbage"); code != 400 {
		t.Fatalf("bad cursor: %d", code)
	}
	// Logout ends the session on every node: it is gone from the state.
	if r, _ := b.post("/logout", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	if code, _ := b.get("/mail/alice@acme.test/"); code != http.StatusSeeOther {
		t.Fatalf("after logout: %d", code)
	}
	es, _ := tn.api.Audit(context.Background(), "Acme", 10)
	kinds := ""
	for _, e := range es {
		kinds += e.Kind + " "
	}
	if !strings.Contains(kinds, "login ") || !strings.Contains(kinds, "login_failed") {
		t.Fatalf("audit: %s", kinds)
	}
}

// Every page and endpoint that takes an ID answers 404 for one that
// belongs to another tenant, another user, or (for inboxes) a partner.
func TestTenantIsolation(t *testing.T) {
	tn := setupTenants(t)
	aliceMsg := tn.deliver("x@example.net", "alice@acme.test", plainMessage("x@example.net", "alice@acme.test", "For alice only", "secret"))
	eveMsg := tn.deliver("y@example.net", "eve@other.test", plainMessage("y@example.net", "eve@other.test", "For eve only", "secret"))
	alice, eve, boss, pat := tn.signIn("alice@acme.test"), tn.signIn("eve@other.test"), tn.signIn("boss@acme.test"), tn.signIn("pat@partner.test")

	// A draft of alice's.
	r, _ := alice.post("/compose", url.Values{"kind": {"new"}})
	draft := strings.TrimPrefix(r.Header.Get("Location"), "/drafts/")
	if r.StatusCode != http.StatusSeeOther || draft == "" {
		t.Fatalf("compose: %d", r.StatusCode)
	}

	msgPaths := func(owner, id string) []string {
		m := "/mail/" + owner + "/m/" + id
		return []string{m, m + "/frame", m + "/part/0", m + "/cid/x"}
	}
	type probe struct {
		who  *browser
		name string
		path string
	}
	var probes []probe
	// Eve (other tenant): nothing of Acme.
	probes = append(probes, probe{eve, "eve", "/mail/alice@acme.test/"}, probe{eve, "eve", "/drafts/" + draft}, probe{eve, "eve", "/admin/orgs/Acme"}, probe{eve, "eve", "/admin"})
	for _, p := range msgPaths("alice@acme.test", aliceMsg) {
		probes = append(probes, probe{eve, "eve", p})
	}
	// Eve's own inbox with alice's message ID.
	for _, p := range msgPaths("eve@other.test", aliceMsg) {
		probes = append(probes, probe{eve, "eve", p})
	}
	// Alice: another user's inbox in her own org, other tenant's IDs.
	probes = append(probes, probe{alice, "alice", "/mail/carol@acme.test/"}, probe{alice, "alice", "/mail/eve@other.test/"}, probe{alice, "alice", "/admin/orgs/Acme"})
	for _, p := range append(msgPaths("eve@other.test", eveMsg), msgPaths("alice@acme.test", eveMsg)...) {
		probes = append(probes, probe{alice, "alice", p})
	}
	// The org admin: any inbox of Acme, nothing of Other.
	probes = append(probes, probe{boss, "boss", "/mail/eve@other.test/"}, probe{boss, "boss", "/admin/orgs/Other"}, probe{boss, "boss", "/drafts/" + draft})
	for _, p := range msgPaths("eve@other.test", eveMsg) {
		probes = append(probes, probe{boss, "boss", p})
	}
	// The partner manages Acme but reads no one's mail.
	probes = append(probes, probe{pat, "pat", "/mail/alice@acme.test/"}, probe{pat, "pat", "/mail/pat@partner.test/"}, probe{pat, "pat", "/admin/orgs/Other"}, probe{pat, "pat", "/drafts/" + draft})
	for _, p := range msgPaths("alice@acme.test", aliceMsg) {
		probes = append(probes, probe{pat, "pat", p})
	}
	for _, p := range probes {
		if code, body := p.who.get(p.path); code != http.StatusNotFound {
			t.Errorf("%s GET %s: %d, want 404", p.name, p.path, code)
		} else if strings.Contains(body, "secret") || strings.Contains(body, "only") {
			t.Errorf("%s GET %s: 404 page leaks content", p.name, p.path)
		}
	}
	// Posts with another tenant's IDs: same answer, nothing changes.
	posts := []probe{
		{eve, "eve", "/drafts/" + draft},
		{eve, "eve", "/drafts/" + draft + "/autosave"},
		{eve, "eve", "/mail/alice@acme.test/m/" + aliceMsg + "/unread"},
		{boss, "boss", "/mail/alice@acme.test/m/" + aliceMsg + "/unread"},
		{pat, "pat", "/compose"},
		{eve, "eve", "/admin/orgs/Acme/totp"},
		{alice, "alice", "/admin/orgs/Acme/totp"},
	}
	for _, p := range posts {
		p.who.get("/mail") // fresh token
		r, _ := p.who.post(p.path, url.Values{"kind": {"reply"}, "id": {aliceMsg}, "action": {"discard"}, "require": {"on"}})
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("%s POST %s: %d, want 404", p.name, p.path, r.StatusCode)
		}
	}
	// Replying to another tenant's message.
	r, _ = eve.post("/compose", url.Values{"kind": {"reply"}, "id": {aliceMsg}})
	if r.StatusCode != http.StatusNotFound {
		t.Errorf("eve replies to alice's message: %d", r.StatusCode)
	}
	if _, ok, _ := tn.n.Store().Draft("alice@acme.test", draft); !ok {
		t.Fatal("another tenant's post removed the draft")
	}
	if o, _, _ := tn.n.Store().Org("Acme"); o.RequireTOTP {
		t.Fatal("a user changed the org's settings")
	}

	// What the roles may do: boss opens alice's inbox (audited); pat
	// manages Acme.
	if code, body := boss.get("/mail/alice@acme.test/"); code != 200 || !strings.Contains(body, "For alice only") {
		t.Fatalf("org admin opening a user's inbox: %d", code)
	}
	if code, _ := boss.get("/mail/alice@acme.test/m/" + aliceMsg); code != 200 {
		t.Fatalf("org admin reading a user's message: %d", code)
	}
	if tn.n.Store().InboxRead("alice@acme.test", aliceMsg) {
		t.Fatal("an admin's look marked the user's message read")
	}
	if code, body := pat.get("/admin/orgs/Acme"); code != 200 || !strings.Contains(body, "alice@acme.test") || strings.Contains(body, `href="/mail/alice`) {
		t.Fatalf("partner's org page: %d", code)
	}
	if code, body := boss.get("/admin/orgs/Acme"); code != 200 || !strings.Contains(body, `href="/mail/alice@acme.test/"`) || !strings.Contains(body, "open_inbox") {
		t.Fatalf("org admin's org page: %d\n%s", code, body)
	}
	es, _ := tn.api.Audit(context.Background(), "Acme", 50)
	found := false
	for _, e := range es {
		if e.Kind == fsm.AuditOpenInbox && e.Actor == "boss@acme.test" && e.Target == "alice@acme.test" {
			found = true
		}
	}
	if !found {
		t.Fatal("opening someone else's inbox was not audited")
	}

	// The JSON API is the operator's: no token, no answer, whoever asks.
	for _, p := range []string{"/api/v1/orgs", "/api/v1/users", "/api/v1/users/alice@acme.test", "/api/v1/audit", "/api/v1/orgs/Acme"} {
		resp, err := alice.c.Get(tn.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("signed-in user GET %s: %d, want 401", p, resp.StatusCode)
		}
	}
	if _, err := tn.api.SetUser(context.Background(), "nobody@acme.test", webui.UserPatch{}); err == nil || err.(*apiclient.Error).Status != 404 {
		t.Errorf("patching an unknown user: %v", err)
	}
}

func TestCrossSitePostsAreRefused(t *testing.T) {
	tn := setupTenants(t)
	alice := tn.signIn("alice@acme.test")
	before, _ := tn.n.Store().Drafts("alice@acme.test")
	for _, origin := range []string{"http://evil.example", "null", ""} {
		r, _ := alice.postOrigin(origin, "/compose", url.Values{"kind": {"new"}, "csrf": {alice.csrf}})
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("compose from origin %q: %d, want 403", origin, r.StatusCode)
		}
	}
	// Same origin but without the session's token (a forged form that
	// somehow got the Origin right): also 403.
	for _, tok := range []string{"", "forged", auth.CSRFToken("another-session")} {
		r, _ := alice.postOrigin(tn.base, "/compose", url.Values{"kind": {"new"}, "csrf": {tok}})
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("compose with token %q: %d, want 403", tok, r.StatusCode)
		}
	}
	if r, _ := alice.postOrigin("http://evil.example", "/logout", url.Values{"csrf": {alice.csrf}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site logout: %d", r.StatusCode)
	}
	after, _ := tn.n.Store().Drafts("alice@acme.test")
	if len(after) != len(before) {
		t.Fatal("a refused post created a draft")
	}
	// Login itself: a cross-site sign-in (login CSRF) is refused too.
	b := tn.browser()
	b.get("/login")
	if r, _ := b.postOrigin("http://evil.example", "/login", url.Values{"email": {"alice@acme.test"}, "password": {password}, "csrf": {b.csrf}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site login: %d", r.StatusCode)
	}
	if r, _ := b.postOrigin(tn.base, "/login", url.Values{"email": {"alice@acme.test"}, "password": {password}, "csrf": {"x"}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("login without the form token: %d", r.StatusCode)
	}
}

func TestTOTPEnrolAndCodesWorkOnce(t *testing.T) {
	tn := setupTenants(t)
	yes := true
	if _, err := tn.api.SetOrg(context.Background(), webui.OrgRequest{Name: "Acme", RequireTOTP: &yes}); err != nil {
		t.Fatal(err)
	}
	alice := tn.signIn("alice@acme.test")
	// The org requires a second factor: every page leads to enrolment.
	if code, _ := alice.get("/mail/alice@acme.test/"); code != http.StatusSeeOther {
		t.Fatalf("inbox before enrolment: %d", code)
	}
	code, page := alice.get("/account/totp")
	m := regexp.MustCompile(`name="secret" value="([A-Z2-7]+)"`).FindStringSubmatch(page)
	if code != 200 || m == nil || !strings.Contains(page, "data:image/png;base64,") {
		t.Fatalf("enrolment page: %d\n%s", code, page)
	}
	secret := m[1]
	now := tn.n.Now()
	if r, _ := alice.post("/account/totp", url.Values{"secret": {secret}, "code": {"000000"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("wrong enrolment code: %d", r.StatusCode)
	}
	enrolCode, _ := auth.TOTPCode(secret, now)
	if r, _ := alice.post("/account/totp", url.Values{"secret": {secret}, "code": {enrolCode}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("enrolment: %d", r.StatusCode)
	}
	if code, _ := alice.get("/mail/alice@acme.test/"); code != 200 {
		t.Fatalf("inbox after enrolment: %d", code)
	}

	b := tn.browser()
	r := b.login("alice@acme.test", password, "")
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login without code: %d", r.StatusCode)
	}
	if _, page := b.get("/login"); strings.Contains(page, `for="code"`) {
		t.Fatal("code field shown before it is asked for")
	}
	// The code that enrolled is used up.
	if r := b.login("alice@acme.test", password, enrolCode); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with the enrolment code: %d", r.StatusCode)
	}
	// The next step's code (allowed as clock skew) works once.
	next, _ := auth.TOTPCode(secret, now.Add(auth.TOTPPeriod*time.Second))
	if r := b.login("alice@acme.test", password, next); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login with a fresh code: %d", r.StatusCode)
	}
	b2 := tn.browser()
	r = b2.login("alice@acme.test", password, next)
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reused code: %d, want 401", r.StatusCode)
	}
}

func TestFailedLoginsAreRateLimited(t *testing.T) {
	tn := setupTenants(t)
	b := tn.browser()
	for i := 0; i < 5; i++ {
		if r := b.login("carol@acme.test", "not the password", ""); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, r.StatusCode)
		}
	}
	// Per account: even the right password waits now, on any node.
	r := b.login("carol@acme.test", password, "")
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("after 5 failures: %d", r.StatusCode)
	}
	// Other accounts from the same address still work, until the address
	// has failed too often (20 per 15 minutes).
	if r := tn.browser().login("alice@acme.test", password, ""); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("another account: %d", r.StatusCode)
	}
	for i := 0; i < 15; i++ {
		tn.browser().login(fmt.Sprintf("nobody%d@acme.test", i), "x", "")
	}
	if r := tn.browser().login("alice@acme.test", password, ""); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("address over its limit: %d", r.StatusCode)
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
	tn := setupTenants(t)
	id := tn.deliver("attacker@evil.example", "alice@acme.test", hostileHTML)
	alice := tn.signIn("alice@acme.test")
	code, page := alice.get("/mail/alice@acme.test/m/" + id)
	if code != 200 || !strings.Contains(page, `sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"`) || strings.Contains(page, "allow-scripts") {
		t.Fatalf("reading view: %d\n%s", code, page)
	}
	if !strings.Contains(page, "Load remote images") {
		t.Fatal("no offer to load remote images")
	}
	resp, err := alice.c.Get(tn.base + "/mail/alice@acme.test/m/" + id + "/frame")
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
	resp, err = alice.c.Get(tn.base + "/mail/alice@acme.test/m/" + id + "/cid/logo@x")
	if err != nil {
		t.Fatal(err)
	}
	img, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(string(img), "\x89PNG") {
		t.Fatalf("cid image: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The attachment downloads with a harmless file name.
	resp, err = alice.c.Get(tn.base + "/mail/alice@acme.test/m/" + id + "/part/2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cd := resp.Header.Get("Content-Disposition")
	if resp.StatusCode != 200 || !strings.HasPrefix(cd, "attachment;") || strings.Contains(cd, "/") || strings.Contains(cd, `\"`) {
		t.Fatalf("attachment: %d %q", resp.StatusCode, cd)
	}
	if code, page := alice.get("/mail/alice@acme.test/"); code != 200 || !strings.Contains(page, "Attachment · ") {
		t.Fatalf("list lacks the attachment marker: %d", code)
	}
}

func TestReplyThreadsAndReachesColleague(t *testing.T) {
	tn := setupTenants(t)
	id := tn.deliver("ceo@partner.example", "alice@acme.test", "From: CEO <ceo@partner.example>\nTo: alice@acme.test, carol@acme.test\nSubject: Budget\nMessage-ID: <m2@partner.example>\nReferences: <m1@partner.example>\nIn-Reply-To: <m1@partner.example>\n\nNumbers please.\n")
	alice := tn.signIn("alice@acme.test")
	r, _ := alice.post("/compose", url.Values{"kind": {"replyall"}, "id": {id}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("reply all: %d", r.StatusCode)
	}
	draftID := strings.TrimPrefix(r.Header.Get("Location"), "/drafts/")
	d, ok, _ := tn.n.Store().Draft("alice@acme.test", draftID)
	if !ok || d.InReplyTo != "m2@partner.example" || d.References != "m1@partner.example m2@partner.example" || d.Subject != "Re: Budget" {
		t.Fatalf("draft: %+v", d)
	}
	if !strings.Contains(d.To, "ceo@partner.example") || !strings.Contains(d.To, "carol@acme.test") || strings.Contains(d.To+d.Cc, "alice@") {
		t.Fatalf("reply-all recipients: to %q cc %q", d.To, d.Cc)
	}
	// Autosave keeps what is typed.
	alice.get("/drafts/" + draftID)
	r, _ = alice.post("/drafts/"+draftID+"/autosave", url.Values{"to": {"carol@acme.test"}, "subject": {"Re: Budget"}, "text": {"Here they are."}})
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("autosave: %d", r.StatusCode)
	}
	if d, _, _ = tn.n.Store().Draft("alice@acme.test", draftID); d.Text != "Here they are." {
		t.Fatalf("autosaved draft: %+v", d)
	}
	// Bad input changes nothing.
	r, _ = alice.post("/drafts/"+draftID, url.Values{"to": {"not an address"}, "subject": {"Re: Budget"}, "text": {"x"}, "action": {"send"}})
	if r.StatusCode != http.StatusBadRequest {
		t.Fatalf("send to a bad address: %d", r.StatusCode)
	}
	r, _ = alice.post("/drafts/"+draftID, url.Values{"to": {"carol@acme.test"}, "subject": {"Re: Budget"}, "text": {"Here they are."}, "action": {"send"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %d", r.StatusCode)
	}
	var got string
	waitUntil(t, "the reply in carol's inbox", func() bool {
		items, _, _, _ := tn.n.Store().InboxPage("carol@acme.test", fsm.InboxCursor{}, 10, 0, nil)
		for _, it := range items {
			if it.Subject == "Re: Budget" {
				got = it.ID
				return true
			}
		}
		return false
	})
	m, _, _ := tn.n.Store().Message(got)
	rc, err := tn.n.OpenBody(context.Background(), m.BlobHash)
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
	if _, ok, _ := tn.n.Store().Draft("alice@acme.test", draftID); ok {
		t.Fatal("draft kept after sending")
	}
}

func TestNewMessageWithAttachment(t *testing.T) {
	tn := setupTenants(t)
	alice := tn.signIn("alice@acme.test")
	r, _ := alice.post("/compose", url.Values{"kind": {"new"}})
	draft := r.Header.Get("Location")
	alice.get(draft)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range map[string]string{"csrf": alice.csrf, "to": "carol@acme.test", "subject": "Files", "text": "See attached.", "action": "save"} {
		mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("attach", `../evil"name.txt`)
	fw.Write([]byte("attached bytes"))
	mw.Close()
	req, _ := http.NewRequest("POST", tn.base+draft, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", tn.base)
	resp, err := alice.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save with a file: %d", resp.StatusCode)
	}
	d, _, _ := tn.n.Store().Draft("alice@acme.test", strings.TrimPrefix(draft, "/drafts/"))
	if len(d.Attachments) != 1 || strings.ContainsAny(d.Attachments[0].Name, `/"`) {
		t.Fatalf("draft attachments: %+v", d.Attachments)
	}
	if ok, _ := tn.n.Store().BlobReferenced(d.Attachments[0].BlobHash); !ok {
		t.Fatal("the draft does not hold its attachment's body")
	}
	if r, _ := alice.post(draft, url.Values{"to": {"carol@acme.test"}, "subject": {"Files"}, "text": {"See attached."}, "action": {"send"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %d", r.StatusCode)
	}
	var id string
	waitUntil(t, "the message in carol's inbox", func() bool {
		items, _, _, _ := tn.n.Store().InboxPage("carol@acme.test", fsm.InboxCursor{}, 10, 0, nil)
		if len(items) == 1 && items[0].Attachment {
			id = items[0].ID
		}
		return id != ""
	})
	carol := tn.signIn("carol@acme.test")
	code, page := carol.get("/mail/carol@acme.test/m/" + id)
	if code != 200 || !strings.Contains(page, "evil_name.txt") || !strings.Contains(page, "See attached.") {
		t.Fatalf("carol reads: %d\n%s", code, page)
	}
	resp, err = carol.c.Get(tn.base + "/mail/carol@acme.test/m/" + id + "/part/1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "attached bytes" || !strings.Contains(resp.Header.Get("Content-Disposition"), "evil_name.txt") {
		t.Fatalf("download: %q %q", body, resp.Header.Get("Content-Disposition"))
	}
}
