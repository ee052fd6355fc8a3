package status_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"lifeline/webui/api"
	"lifeline/webui/apiclient"
	"lifeline/webui/webtest"
)

const token = webtest.Token

func TestStatusPageSignInAndForgedPosts(t *testing.T) {
	_, base := webtest.StartNode(t)
	c := apiclient.New(base, token)
	if _, err := c.AddDomain(context.Background(), api.DomainRequest{Name: "secret-customer.test", Destination: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Cluster status") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("status page: %d %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(origin, tok string) *http.Response {
		req, _ := http.NewRequest("POST", base+"/status/signin", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		r, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r
	}
	if r := post("http://evil.example", token); r.StatusCode != http.StatusForbidden || len(r.Cookies()) != 0 {
		t.Fatalf("cross-site sign-in: %d", r.StatusCode)
	}
	if r := post("", token); r.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in without origin: %d", r.StatusCode)
	}
	if r := post(base, "wrong"); r.StatusCode != http.StatusUnauthorized || len(r.Cookies()) != 0 {
		t.Fatalf("wrong token: %d", r.StatusCode)
	}
	r := post(base, token)
	if r.StatusCode != http.StatusSeeOther || len(r.Cookies()) != 1 {
		t.Fatalf("sign-in: %d", r.StatusCode)
	}
	ck := r.Cookies()[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie flags: %+v", ck)
	}
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.AddCookie(ck)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "Queued messages by domain") || !strings.Contains(string(page), "Sign out") {
		t.Fatal("signed-in status page lacks the per-domain spool")
	}
}
