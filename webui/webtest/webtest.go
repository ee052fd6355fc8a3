// Package webtest is the test kit of the web packages: a real node that
// serves the whole web side on loopback, two organisations with their
// users, and a browser that keeps cookies and sends Origin as browsers do
// on same-site posts.
package webtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"lifeline/e2e/kit"
	"lifeline/fsm"
	"lifeline/node"
	"lifeline/webui"
	"lifeline/webui/api"
	"lifeline/webui/apiclient"
)

// Token is the operator token of every node started here.
const Token = "0123456789abcdef0123456789abcdef"

// Password is the password of every user SetupTenants adds.
const Password = "correct horse battery"

// Web is what a node serves besides /healthz, wired as the CLI wires it.
func Web(n *node.Node, logger *slog.Logger) http.Handler { return webui.New(n, logger) }

// StartNode starts a single-node cluster that serves the web side and
// returns it and its base URL once it takes mail.
func StartNode(t testing.TB) (*node.Node, string) {
	t.Helper()
	return Start(t, node.Config{ID: "w1"})
}

// Start is StartNode with cfg: empty addresses become loopback ports,
// and the data directory, operator token and web side are filled in.
func Start(t testing.TB, cfg node.Config) (*node.Node, string) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	for _, a := range []*string{&cfg.SMTPAddr, &cfg.HTTPAddr, &cfg.RaftAddr} {
		if *a == "" {
			*a = "127.0.0.1:0"
		}
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = Token
	}
	if cfg.Web == nil {
		cfg.Web = Web
	}
	n, err := node.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	WaitUntil(t, "the node to take mail", func() bool { h, _ := n.Store().AdminTokenHash(); return h != "" && n.Healthy() == nil })
	return n, "http://" + n.HTTPAddr()
}

// WaitUntil polls cond until it holds, for at most 20 seconds.
func WaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	kit.Wait(t, 20*time.Second, 20*time.Millisecond, what, func() (bool, error) { return cond(), nil })
}

// ClosedPort is a loopback address nothing listens on: a dead mail
// server.
func ClosedPort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Do sends one API request with the bearer token tok (none if empty) and
// returns the status and the body.
func Do(t testing.TB, method, u, tok, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Tenants is a node with two organisations: Acme (alice, carol, boss the
// org admin, pat the partner) and Other (eve).
type Tenants struct {
	T    *testing.T
	Node *node.Node
	Base string
	API  *apiclient.Client
}

// SetupTenants starts a node and adds the organisations, their domains
// (whose destinations are dead) and users.
func SetupTenants(t *testing.T) *Tenants {
	t.Helper()
	n, base := StartNode(t)
	tn := &Tenants{T: t, Node: n, Base: base, API: apiclient.New(base, Token)}
	ctx := context.Background()
	for _, o := range []string{"Acme", "Other"} {
		if _, err := tn.API.AddOrg(ctx, api.OrgRequest{Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	dead := ClosedPort(t)
	for d, o := range map[string]string{"acme.test": "Acme", "other.test": "Other"} {
		if _, err := tn.API.AddDomain(ctx, api.DomainRequest{Name: d, Destination: dead, Org: o}); err != nil {
			t.Fatal(err)
		}
	}
	users := []api.UserRequest{
		{Email: "alice@acme.test", DisplayName: "Alice", Org: "Acme"},
		{Email: "carol@acme.test", Org: "Acme"},
		{Email: "boss@acme.test", Org: "Acme", Role: "admin"},
		{Email: "eve@other.test", Org: "Other"},
		{Email: "pat@partner.test", Role: "partner", Orgs: []string{"Acme"}},
	}
	for _, u := range users {
		u.Password = Password
		if _, err := tn.API.AddUser(ctx, u); err != nil {
			t.Fatalf("add %s: %v", u.Email, err)
		}
	}
	return tn
}

// Deliver sends a message to the node's MX and waits until it is listed
// in rcpt's inbox; it returns the queue ID.
func (tn *Tenants) Deliver(from, rcpt, msg string) string {
	tn.T.Helper()
	c, err := gosmtp.Dial(tn.Node.SMTPAddr())
	if err != nil {
		tn.T.Fatal(err)
	}
	if err := c.SendMail(from, []string{rcpt}, strings.NewReader(strings.ReplaceAll(msg, "\n", "\r\n"))); err != nil {
		tn.T.Fatal(err)
	}
	c.Quit()
	var id string
	WaitUntil(tn.T, "message in "+rcpt+"'s inbox", func() bool {
		items, _, _, _ := tn.Node.Store().InboxPage(rcpt, fsm.InboxCursor{}, 100, 0, nil)
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

// Browser is a cookie-keeping HTTP client that sends Origin like a
// browser does on same-site posts. CSRF is the form token of the last
// page it got.
type Browser struct {
	T      *testing.T
	Base   string
	Client *http.Client
	CSRF   string
}

// Browser is a new browser with no cookies, which follows no redirects.
func (tn *Tenants) Browser() *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{T: tn.T, Base: tn.Base, Client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// Get fetches path and keeps the page's form token.
func (b *Browser) Get(path string) (int, string) {
	b.T.Helper()
	resp, err := b.Client.Get(b.Base + path)
	if err != nil {
		b.T.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfField.FindStringSubmatch(string(body)); m != nil {
		b.CSRF = m[1]
	}
	return resp.StatusCode, string(body)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// PostOrigin submits form to path with origin as the Origin header (none
// if empty).
func (b *Browser) PostOrigin(origin, path string, form url.Values) (*http.Response, string) {
	b.T.Helper()
	req, _ := http.NewRequest("POST", b.Base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		b.T.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// Post submits a form with the page's CSRF token, as a same-site form.
func (b *Browser) Post(path string, form url.Values) (*http.Response, string) {
	b.T.Helper()
	if form == nil {
		form = url.Values{}
	}
	if form.Get("csrf") == "" {
		form.Set("csrf", b.CSRF)
	}
	return b.PostOrigin(b.Base, path, form)
}

// Login signs in through the sign-in page with a password and, if asked
// for, a code.
func (b *Browser) Login(email, pw, code string) *http.Response {
	b.T.Helper()
	if code, _ := b.Get("/login"); code != 200 {
		b.T.Fatalf("login page: %d", code)
	}
	resp, _ := b.Post("/login", url.Values{"email": {email}, "password": {pw}, "code": {code}})
	if resp.StatusCode == http.StatusSeeOther {
		b.Get("/mail/" + url.PathEscape(email) + "/")
	}
	return resp
}

// SignIn is a browser signed in as email.
func (tn *Tenants) SignIn(email string) *Browser {
	tn.T.Helper()
	b := tn.Browser()
	if r := b.Login(email, Password, ""); r.StatusCode != http.StatusSeeOther {
		tn.T.Fatalf("login %s: %d", email, r.StatusCode)
	}
	if email == "pat@partner.test" {
		b.Get("/admin")
	}
	return b
}

// Operator signs in on the status page, as the operator does in a
// browser.
func (tn *Tenants) Operator() *Browser {
	b := tn.Browser()
	if r, _ := b.PostOrigin(tn.Base, "/status/signin", url.Values{"token": {Token}}); r.StatusCode != http.StatusSeeOther {
		tn.T.Fatalf("operator sign-in: %d", r.StatusCode)
	}
	b.Get("/admin")
	return b
}

// AddAdmin creates an org admin and signs them in.
func (tn *Tenants) AddAdmin(email, org string) *Browser {
	tn.T.Helper()
	if _, err := tn.API.AddUser(context.Background(), api.UserRequest{Email: email, Org: org, Role: "admin", Password: Password}); err != nil {
		tn.T.Fatal(err)
	}
	return tn.SignIn(email)
}

// PlainMessage is a plain-text message as a sending server writes it.
func PlainMessage(from, to, subject, text string) string {
	return fmt.Sprintf("From: %s\nTo: %s\nSubject: %s\nMessage-ID: <%s@sender.example>\nDate: Mon, 2 Feb 2026 10:00:00 +0000\n\n%s\n", from, to, subject, strings.ReplaceAll(subject, " ", "."), text)
}
