package webui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"lifeline/fsm"
	"lifeline/webui/api"
	"lifeline/webui/apiclient"
	"lifeline/webui/webtest"
)

// Every page and endpoint that takes an ID answers 404 for one that
// belongs to another tenant, another user, or (for inboxes) a partner.
func TestTenantIsolation(t *testing.T) {
	tn := webtest.SetupTenants(t)
	aliceMsg := tn.Deliver("x@example.net", "alice@acme.test", webtest.PlainMessage("x@example.net", "alice@acme.test", "For alice only", "secret"))
	eveMsg := tn.Deliver("y@example.net", "eve@other.test", webtest.PlainMessage("y@example.net", "eve@other.test", "For eve only", "secret"))
	alice, eve, boss, pat := tn.SignIn("alice@acme.test"), tn.SignIn("eve@other.test"), tn.SignIn("boss@acme.test"), tn.SignIn("pat@partner.test")

	// A draft of alice's.
	r, _ := alice.Post("/compose", url.Values{"kind": {"new"}})
	draft := strings.TrimPrefix(r.Header.Get("Location"), "/drafts/")
	if r.StatusCode != http.StatusSeeOther || draft == "" {
		t.Fatalf("compose: %d", r.StatusCode)
	}

	msgPaths := func(owner, id string) []string {
		m := "/mail/" + owner + "/m/" + id
		return []string{m, m + "/frame", m + "/part/0", m + "/cid/x", m + "/raw"}
	}
	type probe struct {
		who  *webtest.Browser
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
		if code, body := p.who.Get(p.path); code != http.StatusNotFound {
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
		p.who.Get("/mail") // fresh token
		r, _ := p.who.Post(p.path, url.Values{"kind": {"reply"}, "id": {aliceMsg}, "action": {"discard"}, "require": {"on"}})
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("%s POST %s: %d, want 404", p.name, p.path, r.StatusCode)
		}
	}
	// Replying to another tenant's message.
	r, _ = eve.Post("/compose", url.Values{"kind": {"reply"}, "id": {aliceMsg}})
	if r.StatusCode != http.StatusNotFound {
		t.Errorf("eve replies to alice's message: %d", r.StatusCode)
	}
	if _, ok, _ := tn.Node.Store().Draft("alice@acme.test", draft); !ok {
		t.Fatal("another tenant's post removed the draft")
	}
	if o, _, _ := tn.Node.Store().Org("Acme"); o.RequireTOTP {
		t.Fatal("a user changed the org's settings")
	}

	// What the roles may do: boss opens alice's inbox (audited); pat
	// manages Acme.
	if code, body := boss.Get("/mail/alice@acme.test/"); code != 200 || !strings.Contains(body, "For alice only") {
		t.Fatalf("org admin opening a user's inbox: %d", code)
	}
	if code, _ := boss.Get("/mail/alice@acme.test/m/" + aliceMsg); code != 200 {
		t.Fatalf("org admin reading a user's message: %d", code)
	}
	if tn.Node.Store().InboxRead("alice@acme.test", aliceMsg) {
		t.Fatal("an admin's look marked the user's message read")
	}
	if code, body := pat.Get("/admin/orgs/Acme"); code != 200 || !strings.Contains(body, "alice@acme.test") || strings.Contains(body, `href="/mail/alice`) {
		t.Fatalf("partner's org page: %d", code)
	}
	if code, body := boss.Get("/admin/orgs/Acme"); code != 200 || !strings.Contains(body, `href="/mail/alice@acme.test/"`) || !strings.Contains(body, "open_inbox") {
		t.Fatalf("org admin's org page: %d\n%s", code, body)
	}
	es, _ := tn.API.Audit(context.Background(), "Acme", 50)
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
		resp, err := alice.Client.Get(tn.Base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("signed-in user GET %s: %d, want 401", p, resp.StatusCode)
		}
	}
	if _, err := tn.API.SetUser(context.Background(), "nobody@acme.test", api.UserPatch{}); err == nil || err.(*apiclient.Error).Status != 404 {
		t.Errorf("patching an unknown user: %v", err)
	}
}
