package session_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"lifeline/webui/api"
	"lifeline/webui/session"
	"lifeline/webui/webtest"
)

const password = webtest.Password

func TestCrossSitePostsAreRefused(t *testing.T) {
	tn := webtest.SetupTenants(t)
	alice := tn.SignIn("alice@acme.test")
	before, _ := tn.Node.Store().Drafts("alice@acme.test")
	for _, origin := range []string{"http://evil.example", "null", ""} {
		r, _ := alice.PostOrigin(origin, "/compose", url.Values{"kind": {"new"}, "csrf": {alice.CSRF}})
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("compose from origin %q: %d, want 403", origin, r.StatusCode)
		}
	}
	// Same origin but without the session's token (a forged form that
	// somehow got the Origin right): also 403.
	for _, tok := range []string{"", "forged", session.CSRFToken("another-session")} {
		r, _ := alice.PostOrigin(tn.Base, "/compose", url.Values{"kind": {"new"}, "csrf": {tok}})
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("compose with token %q: %d, want 403", tok, r.StatusCode)
		}
	}
	if r, _ := alice.PostOrigin("http://evil.example", "/logout", url.Values{"csrf": {alice.CSRF}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site logout: %d", r.StatusCode)
	}
	after, _ := tn.Node.Store().Drafts("alice@acme.test")
	if len(after) != len(before) {
		t.Fatal("a refused post created a draft")
	}
	// Login itself: a cross-site sign-in (login CSRF) is refused too.
	b := tn.Browser()
	b.Get("/login")
	if r, _ := b.PostOrigin("http://evil.example", "/login", url.Values{"email": {"alice@acme.test"}, "password": {password}, "csrf": {b.CSRF}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site login: %d", r.StatusCode)
	}
	if r, _ := b.PostOrigin(tn.Base, "/login", url.Values{"email": {"alice@acme.test"}, "password": {password}, "csrf": {"x"}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("login without the form token: %d", r.StatusCode)
	}
}

func TestTOTPEnrolAndCodesWorkOnce(t *testing.T) {
	tn := webtest.SetupTenants(t)
	yes := true
	if _, err := tn.API.SetOrg(context.Background(), api.OrgRequest{Name: "Acme", RequireTOTP: &yes}); err != nil {
		t.Fatal(err)
	}
	alice := tn.SignIn("alice@acme.test")
	// The org requires a second factor: every page leads to enrolment.
	if code, _ := alice.Get("/mail/alice@acme.test/"); code != http.StatusSeeOther {
		t.Fatalf("inbox before enrolment: %d", code)
	}
	code, page := alice.Get("/account/totp")
	m := regexp.MustCompile(`name="secret" value="([A-Z2-7]+)"`).FindStringSubmatch(page)
	if code != 200 || m == nil || !strings.Contains(page, "data:image/png;base64,") {
		t.Fatalf("enrolment page: %d\n%s", code, page)
	}
	secret := m[1]
	now := tn.Node.Now()
	if r, _ := alice.Post("/account/totp", url.Values{"secret": {secret}, "code": {"000000"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("wrong enrolment code: %d", r.StatusCode)
	}
	enrolCode, _ := session.TOTPCode(secret, now)
	if r, _ := alice.Post("/account/totp", url.Values{"secret": {secret}, "code": {enrolCode}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("enrolment: %d", r.StatusCode)
	}
	if code, _ := alice.Get("/mail/alice@acme.test/"); code != 200 {
		t.Fatalf("inbox after enrolment: %d", code)
	}

	b := tn.Browser()
	r := b.Login("alice@acme.test", password, "")
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login without code: %d", r.StatusCode)
	}
	if _, page := b.Get("/login"); strings.Contains(page, `for="code"`) {
		t.Fatal("code field shown before it is asked for")
	}
	// The code that enrolled is used up.
	if r := b.Login("alice@acme.test", password, enrolCode); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with the enrolment code: %d", r.StatusCode)
	}
	// The next step's code (allowed as clock skew) works once.
	next, _ := session.TOTPCode(secret, now.Add(session.TOTPPeriod*time.Second))
	if r := b.Login("alice@acme.test", password, next); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login with a fresh code: %d", r.StatusCode)
	}
	b2 := tn.Browser()
	r = b2.Login("alice@acme.test", password, next)
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reused code: %d, want 401", r.StatusCode)
	}
}

func TestFailedLoginsAreRateLimited(t *testing.T) {
	tn := webtest.SetupTenants(t)
	b := tn.Browser()
	for i := 0; i < 5; i++ {
		if r := b.Login("carol@acme.test", "not the password", ""); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, r.StatusCode)
		}
	}
	// Per account: even the right password waits now, on any node.
	r := b.Login("carol@acme.test", password, "")
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("after 5 failures: %d", r.StatusCode)
	}
	// Other accounts from the same address still work, until the address
	// has failed too often (20 per 15 minutes).
	if r := tn.Browser().Login("alice@acme.test", password, ""); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("another account: %d", r.StatusCode)
	}
	for i := 0; i < 15; i++ {
		tn.Browser().Login(fmt.Sprintf("nobody%d@acme.test", i), "x", "")
	}
	if r := tn.Browser().Login("alice@acme.test", password, ""); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("address over its limit: %d", r.StatusCode)
	}
}
