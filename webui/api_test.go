package webui_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"lifeline/node"
	"lifeline/webui"
	"lifeline/webui/apiclient"
)

const token = "0123456789abcdef0123456789abcdef"

func web(n *node.Node, logger *slog.Logger) http.Handler { return webui.New(n, logger) }

func startNode(t *testing.T) (*node.Node, string) {
	t.Helper()
	n, err := node.Start(node.Config{ID: "w1", DataDir: t.TempDir(), SMTPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", AdminToken: token, Web: web})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	base := "http://" + n.HTTPAddr()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if h, _ := n.Store().AdminTokenHash(); h != "" && n.Healthy() == nil {
			return n, base
		}
		if time.Now().After(deadline) {
			t.Fatal("node not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func do(t *testing.T, method, u, tok, body string) (int, string) {
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

func TestAPIRequiresTheOperatorToken(t *testing.T) {
	_, base := startNode(t)
	for _, tok := range []string{"", "wrong", token + "x", strings.ToUpper(token)} {
		for _, ep := range []string{"/api/v1/status", "/api/v1/domains", "/api/v1/queue", "/metrics"} {
			if code, _ := do(t, "GET", base+ep, tok, ""); code != http.StatusUnauthorized {
				t.Errorf("GET %s with token %q: %d, want 401", ep, tok, code)
			}
		}
		if code, _ := do(t, "POST", base+"/api/v1/domains", tok, `{"name":"x.test","destination":"127.0.0.1:25"}`); code != http.StatusUnauthorized {
			t.Errorf("POST with token %q: %d", tok, code)
		}
	}
	if code, _ := do(t, "GET", base+"/healthz", "", ""); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
}

func TestDomainValidationChangesNothing(t *testing.T) {
	n, base := startNode(t)
	bad := []string{
		`{"name":"not a domain","destination":"127.0.0.1:25"}`,
		`{"name":"localhost","destination":"127.0.0.1:25"}`,
		`{"name":"a..b.test","destination":"127.0.0.1:25"}`,
		`{"name":"-a.test","destination":"127.0.0.1:25"}`,
		`{"name":"<script>.test","destination":"127.0.0.1:25"}`,
		`{"name":"ok.test","destination":"127.0.0.1"}`,
		`{"name":"ok.test","destination":"127.0.0.1:0"}`,
		`{"name":"ok.test","destination":"127.0.0.1:70000"}`,
		`{"name":"ok.test","destination":"user@host:25"}`,
		`{"name":"ok.test","destination":"127.0.0.1:25","extra":1}`,
		`{"name":"ok.test","destination":"127.0.0.1:25"`,
		`[]`,
		`{"name":"` + strings.Repeat("a", 300) + `.test","destination":"127.0.0.1:25"}`,
	}
	for _, b := range bad {
		code, body := do(t, "POST", base+"/api/v1/domains", token, b)
		if code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
			t.Errorf("POST %s: %d %s, want 400 with an error", b, code, body)
		}
	}
	big := `{"name":"ok.test","destination":"127.0.0.1:25","org":"` + strings.Repeat("x", 2<<20) + `"}`
	if code, _ := do(t, "POST", base+"/api/v1/domains", token, big); code != http.StatusBadRequest {
		t.Errorf("2 MiB body: %d, want 400", code)
	}
	if ds, _ := n.Store().Domains(); len(ds) != 0 {
		t.Fatalf("refused requests changed the state: %+v", ds)
	}

	c := apiclient.New(base, token)
	ctx := context.Background()
	if _, err := c.AddDomain(ctx, webui.DomainRequest{Name: "Example.TEST.", Destination: "127.0.0.1:2525"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddDomain(ctx, webui.DomainRequest{Name: "example.test", Destination: "127.0.0.1:2525"}); err == nil || err.(*apiclient.Error).Status != http.StatusConflict {
		t.Fatalf("adding a domain twice: %v", err)
	}
	if _, err := c.SetDomain(ctx, webui.DomainRequest{Name: "missing.test", Destination: "127.0.0.1:1"}); err == nil || err.(*apiclient.Error).Status != http.StatusNotFound {
		t.Fatalf("setting an unknown domain: %v", err)
	}
	d, err := c.SetDomain(ctx, webui.DomainRequest{Name: "example.test", Destination: "127.0.0.1:2626"})
	if err != nil || d.Destination != "127.0.0.1:2626" || d.Name != "example.test" {
		t.Fatalf("set: %+v %v", d, err)
	}
	if err := c.RemoveDomain(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveDomain(ctx, "example.test"); err == nil {
		t.Fatal("removing a removed domain succeeded")
	}
}

func TestQueueOpsOnUnknownIDs(t *testing.T) {
	_, base := startNode(t)
	for _, ep := range []string{"/api/v1/queue/NOPE/hold", "/api/v1/queue/NOPE/release", "/api/v1/queue/NOPE/retry"} {
		if code, _ := do(t, "POST", base+ep, token, ""); code != http.StatusNotFound {
			t.Errorf("POST %s: %d, want 404", ep, code)
		}
	}
	if code, _ := do(t, "DELETE", base+"/api/v1/queue/NOPE", token, ""); code != http.StatusNotFound {
		t.Errorf("DELETE unknown message: %d", code)
	}
	if code, _ := do(t, "GET", base+"/api/v1/queue?limit=0", token, ""); code != http.StatusBadRequest {
		t.Errorf("limit=0: %d", code)
	}
	if code, _ := do(t, "POST", base+"/api/v1/queue/flush", token, ""); code != http.StatusOK {
		t.Errorf("flush of an empty queue: %d", code)
	}
}

func TestStatusPageSignInAndForgedPosts(t *testing.T) {
	_, base := startNode(t)
	c := apiclient.New(base, token)
	if _, err := c.AddDomain(context.Background(), webui.DomainRequest{Name: "secret-customer.test", Destination: "127.0.0.1:1"}); err != nil {
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

func TestMetricsAndStatusJSON(t *testing.T) {
	_, base := startNode(t)
	code, body := do(t, "GET", base+"/metrics", token, "")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, m := range []string{"lifeline_raft_state{state=\"Leader\"} 1", "lifeline_raft_commit_seconds_bucket", "lifeline_queue_messages_total 0", "lifeline_raft_voters 1"} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	code, body = do(t, "GET", base+"/api/v1/status", token, "")
	var st webui.StatusReport
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || !st.Healthy || st.Cluster.State != "Leader" {
		t.Fatalf("status: %d %s", code, body)
	}
}
