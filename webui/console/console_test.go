package console_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"lifeline/fsm"
	"lifeline/webui/api"
	"lifeline/webui/webtest"
)

const password = webtest.Password
const token = webtest.Token

// fakeMX is a loopback SMTP server that greets, answers EHLO and says
// goodbye: enough for a destination test.
func fakeMX(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				io.WriteString(c, "220 mx.customer.test ESMTP ready\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch strings.ToUpper(strings.Fields(line + " x")[0]) {
					case "EHLO":
						io.WriteString(c, "250-mx.customer.test hello\r\n250 8BITMIME\r\n")
					case "QUIT":
						io.WriteString(c, "221 bye\r\n")
						return
					default:
						io.WriteString(c, "502 no\r\n")
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

func mustStatus(t *testing.T, what string, got, want int, body string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: %d, want %d\n%s", what, got, want, body)
	}
}

func TestConsoleDomainsRequestTestApprove(t *testing.T) {
	tn := webtest.SetupTenants(t)
	boss := tn.SignIn("boss@acme.test")
	code, page := boss.Get("/admin/orgs/Acme/domains")
	mustStatus(t, "domains page", code, 200, page)
	if !strings.Contains(page, "acme.test") || !strings.Contains(page, "Spooling") && !strings.Contains(page, "Delivering") {
		t.Fatalf("domains page lacks the domain and its state:\n%s", page)
	}
	dead := webtest.ClosedPort(t)
	r, body := boss.Post("/admin/orgs/Acme/domains", url.Values{"name": {"New.Acme.test"}, "destinations": {dead}})
	mustStatus(t, "request a domain", r.StatusCode, http.StatusSeeOther, body)
	if _, ok, _ := tn.Node.Store().Domain("new.acme.test"); ok {
		t.Fatal("an org admin's domain is protected before the operator approved it")
	}
	_, page = boss.Get("/admin/orgs/Acme/domains")
	if !strings.Contains(page, "Waiting for approval") {
		t.Fatalf("request not shown as waiting:\n%s", page)
	}
	// The test of a dead destination: red, with the error.
	r, page = boss.Post("/admin/orgs/Acme/domains/new.acme.test/test", url.Values{"dest": {dead}})
	mustStatus(t, "test", r.StatusCode, 200, page)
	if !strings.Contains(page, `class="fail test-result"`) || !strings.Contains(page, "connection refused") {
		t.Fatalf("dead destination not shown red with the error:\n%s", page)
	}
	// Only the domain's own destinations are tested.
	r, _ = boss.Post("/admin/orgs/Acme/domains/new.acme.test/test", url.Values{"dest": {"127.0.0.1:22"}})
	mustStatus(t, "test of another address", r.StatusCode, 400, "")

	live := fakeMX(t)
	r, body = boss.Post("/admin/orgs/Acme/domains/new.acme.test", url.Values{"destinations": {dead + " 20\n" + live + " 10"}})
	mustStatus(t, "set destinations", r.StatusCode, http.StatusSeeOther, body)
	r, page = boss.Post("/admin/orgs/Acme/domains/new.acme.test/test", url.Values{"dest": {live}})
	if !strings.Contains(page, `class="ok test-result"`) || !strings.Contains(page, "220 mx.customer.test ESMTP ready") {
		t.Fatalf("live destination not shown green with its greeting:\n%s", page)
	}

	// The operator approves; the domain is protected, most preferred first.
	op := tn.Operator()
	code, page = op.Get("/admin")
	if code != 200 || !strings.Contains(page, "Approve new.acme.test") {
		t.Fatalf("operator console: %d\n%s", code, page)
	}
	r, body = op.Post("/admin/domains/new.acme.test/approve", nil)
	mustStatus(t, "approve", r.StatusCode, http.StatusSeeOther, body)
	d, ok, _ := tn.Node.Store().Domain("new.acme.test")
	if !ok || d.Org != "Acme" || d.Destination != live || len(d.Targets()) != 2 {
		t.Fatalf("approved domain: %+v", d)
	}

	// Another organisation's domain: 404 for seeing, changing, testing.
	for _, p := range []string{"/admin/orgs/Other/domains", "/admin/orgs/Other"} {
		if code, _ := boss.Get(p); code != 404 {
			t.Errorf("boss GET %s: %d, want 404", p, code)
		}
	}
	for _, p := range []string{"/admin/orgs/Acme/domains/other.test/test", "/admin/orgs/Acme/domains/other.test", "/admin/orgs/Other/domains/other.test/test", "/admin/orgs/Other/domains"} {
		r, _ := boss.Post(p, url.Values{"dest": {dead}, "destinations": {live}, "name": {"x.other.test"}})
		if r.StatusCode != 404 {
			t.Errorf("boss POST %s: %d, want 404", p, r.StatusCode)
		}
	}
	if d, _, _ := tn.Node.Store().Domain("other.test"); d.Destination == live {
		t.Fatal("boss changed another organisation's domain")
	}
	// Another organisation cannot claim a domain that is taken.
	eveAdmin := tn.AddAdmin("evan@other.test", "Other")
	r, body = eveAdmin.Post("/admin/orgs/Other/domains", url.Values{"name": {"acme.test"}, "destinations": {live}})
	if r.StatusCode != 400 || !strings.Contains(body, fsm.ErrDomainUnavailable) {
		t.Fatalf("claiming a taken domain: %d\n%s", r.StatusCode, body)
	}
	// A forged cross-site post: 403, nothing changes.
	r, _ = boss.PostOrigin("http://evil.example", "/admin/orgs/Acme/domains", url.Values{"csrf": {boss.CSRF}, "name": {"forged.acme.test"}, "destinations": {live}})
	mustStatus(t, "cross-site post", r.StatusCode, 403, "")
	r, _ = boss.Post("/admin/orgs/Acme/domains", url.Values{"csrf": {"wrong"}, "name": {"forged.acme.test"}, "destinations": {live}})
	mustStatus(t, "post without the form token", r.StatusCode, 403, "")
	if _, ok, _ := tn.Node.Store().DomainRequestOf("forged.acme.test"); ok {
		t.Fatal("a forged post changed state")
	}

	// Everything above is in the audit log, chained.
	es, _ := tn.API.Audit(context.Background(), "Acme", 100)
	kinds := map[string]bool{}
	for _, e := range es {
		kinds[e.Kind] = true
	}
	for _, k := range []string{"domain_request", "domain_set", "domain_approve"} {
		if !kinds[k] {
			t.Errorf("audit log lacks %s: %v", k, kinds)
		}
	}
	code, body = webtest.Do(t, "GET", tn.Base+"/api/v1/audit/verify", token, "")
	if code != 200 || !strings.Contains(body, `"ok": true`) {
		t.Fatalf("audit verify: %d %s", code, body)
	}

	// The JSON API: several destinations, and the test.
	code, body = webtest.Do(t, "PUT", tn.Base+"/api/v1/domains/acme.test", token, `{"destinations":[{"addr":"`+live+`","pref":5},{"addr":"`+dead+`","pref":9}]}`)
	mustStatus(t, "API set destinations", code, 200, body)
	if d, _, _ := tn.Node.Store().Domain("acme.test"); d.Org != "Acme" || d.Destination != live {
		t.Fatalf("API change lost the org or the order: %+v", d)
	}
	code, body = webtest.Do(t, "POST", tn.Base+"/api/v1/domains/acme.test/test", token, "")
	var rep api.DomainTestReport
	json.Unmarshal([]byte(body), &rep)
	if code != 200 || rep.OK || len(rep.Tests) != 2 || !rep.Tests[0].OK || rep.Tests[1].OK {
		t.Fatalf("API test: %d %s", code, body)
	}
}

func postMultipart(b *webtest.Browser, path, field, name string, data []byte, extra url.Values) (*http.Response, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("csrf", b.CSRF)
	for k, vs := range extra {
		for _, v := range vs {
			mw.WriteField(k, v)
		}
	}
	fw, _ := mw.CreateFormFile(field, name)
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", b.Base+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", b.Base)
	resp, err := b.Client.Do(req)
	if err != nil {
		b.T.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

var welcomeLink = regexp.MustCompile(`http://[^/\s]+/welcome/[A-Za-z0-9_-]+`)

func TestConsoleUsersImportAndWelcome(t *testing.T) {
	tn := webtest.SetupTenants(t)
	boss := tn.SignIn("boss@acme.test")
	boss.Get("/admin/orgs/Acme/users")
	bad := "email,name,role,groups\nann@acme.test,Ann,user,sales\nnot-an-address,Bob,user,\ncarol@acme.test,Carol,king,\nann@acme.test,Ann again,user,\nalice@acme.test,,user,\n"
	r, body := postMultipart(boss, "/admin/orgs/Acme/users/import", "csv", "users.csv", []byte(bad), nil)
	if r.StatusCode != 400 || !strings.Contains(body, "Nothing was imported") {
		t.Fatalf("bad file: %d\n%s", r.StatusCode, body)
	}
	for _, want := range []string{"<td>3</td>", "not a valid email address", "<td>4</td>", "role must be user or admin", "<td>5</td>", "listed twice", "exists already"} {
		if !strings.Contains(body, want) {
			t.Errorf("import report lacks %q", want)
		}
	}
	if _, ok, _ := tn.Node.Store().User("ann@acme.test"); ok {
		t.Fatal("a bad file was half imported")
	}
	good := "email,name,role,groups\nann@acme.test,Ann Able,user,sales;board\nben@acme.test,Ben,admin,\n"
	r, body = postMultipart(boss, "/admin/orgs/Acme/users/import", "csv", "users.csv", []byte(good), url.Values{"welcome": {"on"}})
	mustStatus(t, "import", r.StatusCode, http.StatusSeeOther, body)
	ann, ok, _ := tn.Node.Store().User("ann@acme.test")
	if !ok || ann.PasswordSet() || len(ann.Groups) != 2 || ann.DisplayName != "Ann Able" {
		t.Fatalf("imported user: %+v", ann)
	}
	// The welcome email is in the spool, with a link.
	var link string
	webtest.WaitUntil(t, "the welcome email in the queue", func() bool {
		msgs, _, _ := tn.Node.Store().Messages(fsm.MessageFilter{Recipient: "ann@acme.test"}, "", 10)
		for _, m := range msgs {
			rc, err := tn.Node.OpenBody(context.Background(), m.BlobHash)
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if l := welcomeLink.FindString(string(b)); l != "" {
				link = l
				return true
			}
		}
		return false
	})
	path := strings.TrimPrefix(link, tn.Base)
	anon := tn.Browser()
	code, page := anon.Get(path)
	if code != 200 || !strings.Contains(page, "ann@acme.test") {
		t.Fatalf("welcome page: %d\n%s", code, page)
	}
	r, _ = anon.PostOrigin(tn.Base, path, url.Values{"password": {"short"}, "password2": {"short"}})
	mustStatus(t, "weak password", r.StatusCode, 400, "")
	r, _ = anon.PostOrigin(tn.Base, path, url.Values{"password": {"ann's new password"}, "password2": {"ann's new password"}})
	mustStatus(t, "set password", r.StatusCode, http.StatusSeeOther, "")
	if r := anon.Login("ann@acme.test", "ann's new password", ""); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login with the chosen password: %d", r.StatusCode)
	}
	if code, _ := tn.Browser().Get(path); code != 404 {
		t.Fatalf("a used link still works: %d", code)
	}

	// Groups decide who may use the Emergency Inbox.
	r, body = boss.Post("/admin/orgs/Acme/access", url.Values{"access": {"groups"}, "groups": {"board"}})
	mustStatus(t, "inbox access", r.StatusCode, http.StatusSeeOther, body)
	if code, _ := anon.Get("/mail/ann@acme.test/"); code != 200 {
		t.Fatalf("board member denied the inbox: %d", code)
	}
	alice := tn.SignIn("alice@acme.test")
	if code, _ := alice.Get("/mail/alice@acme.test/"); code != 403 {
		t.Fatalf("user outside the groups reached the inbox: %d", code)
	}

	// Edit, disable and delete; another org's users are 404.
	r, body = boss.Post("/admin/orgs/Acme/users/ben@acme.test", url.Values{"name": {"Ben B"}, "role": {"user"}, "groups": {"board"}, "disabled": {"on"}})
	mustStatus(t, "edit", r.StatusCode, http.StatusSeeOther, body)
	if u, _, _ := tn.Node.Store().User("ben@acme.test"); !u.Disabled || u.Role != fsm.RoleUser || u.DisplayName != "Ben B" {
		t.Fatalf("edited: %+v", u)
	}
	r, _ = boss.Post("/admin/orgs/Acme/users/ben@acme.test/delete", nil)
	mustStatus(t, "delete", r.StatusCode, http.StatusSeeOther, "")
	if _, ok, _ := tn.Node.Store().User("ben@acme.test"); ok {
		t.Fatal("user not deleted")
	}
	for _, p := range []string{"/admin/orgs/Acme/users/eve@other.test", "/admin/orgs/Other/users", "/admin/orgs/Other/users/eve@other.test"} {
		if code, _ := boss.Get(p); code != 404 {
			t.Errorf("boss GET %s: %d, want 404", p, code)
		}
	}
	for _, p := range []string{"/admin/orgs/Acme/users/eve@other.test/delete", "/admin/orgs/Acme/users/eve@other.test/reset", "/admin/orgs/Other/users/welcome"} {
		r, _ := boss.Post(p, url.Values{"email": {"eve@other.test"}})
		if r.StatusCode != 404 {
			t.Errorf("boss POST %s: %d, want 404", p, r.StatusCode)
		}
	}
	r, _ = boss.Post("/admin/orgs/Acme/users/welcome", url.Values{"email": {"eve@other.test"}})
	mustStatus(t, "welcome to another org's user", r.StatusCode, 404, "")
	if _, ok, _ := tn.Node.Store().User("eve@other.test"); !ok {
		t.Fatal("another org's user was deleted")
	}
	// The API sets groups and the two-step requirement.
	code, body = webtest.Do(t, "PATCH", tn.Base+"/api/v1/users/alice@acme.test", token, `{"groups":["board"],"require_totp":true}`)
	mustStatus(t, "API groups", code, 200, body)
	if u, _, _ := tn.Node.Store().User("alice@acme.test"); len(u.Groups) != 1 || !u.RequireTOTP {
		t.Fatalf("API groups: %+v", u)
	}
	// The partner manages Acme's users, not Other's.
	pat := tn.SignIn("pat@partner.test")
	if code, _ := pat.Get("/admin/orgs/Acme/users"); code != 200 {
		t.Fatalf("partner's users page: %d", code)
	}
	if code, _ := pat.Get("/admin/orgs/Other/users"); code != 404 {
		t.Fatalf("partner sees another org's users: %d", code)
	}
}

func TestConsoleLogQueueAuditTenants(t *testing.T) {
	tn := webtest.SetupTenants(t)
	acmeID := tn.Deliver("carla@sender.example", "alice@acme.test", webtest.PlainMessage("carla@sender.example", "alice@acme.test", "For Acme", "hello"))
	otherID := tn.Deliver("olga@sender.example", "eve@other.test", webtest.PlainMessage("olga@sender.example", "eve@other.test", "For Other", "hello"))
	boss := tn.SignIn("boss@acme.test")

	code, page := boss.Get("/admin/orgs/Acme/log")
	mustStatus(t, "log page", code, 200, page)
	if !strings.Contains(page, acmeID) || strings.Contains(page, otherID) {
		t.Fatalf("Acme's log shows %v its own and %v Other's message", strings.Contains(page, acmeID), strings.Contains(page, otherID))
	}
	if code, page = boss.Get("/admin/orgs/Acme/log?id=" + otherID); code != 200 || strings.Contains(page, otherID+"</a>") {
		t.Fatalf("searching another org's queue ID found it: %d", code)
	}
	code, csvBody := boss.Get("/admin/orgs/Acme/log.csv?recipient=alice@acme.test")
	if code != 200 || !strings.Contains(csvBody, acmeID) || strings.Contains(csvBody, otherID) || !strings.HasPrefix(csvBody, "time,node,kind") {
		t.Fatalf("CSV export: %d\n%s", code, csvBody)
	}
	code, page = boss.Get("/admin/orgs/Acme/queue")
	if code != 200 || !strings.Contains(page, acmeID) || strings.Contains(page, otherID) {
		t.Fatalf("queue page: %d", code)
	}
	if code, page = boss.Get("/admin/orgs/Acme/queue/" + acmeID); code != 200 || !strings.Contains(page, "alice@acme.test") {
		t.Fatalf("queue message: %d\n%s", code, page)
	}
	for _, p := range []string{"/admin/orgs/Acme/queue/" + otherID, "/admin/orgs/Other/queue", "/admin/orgs/Other/log", "/admin/orgs/Other/log.csv", "/admin/orgs/Other/audit", "/admin/orgs/Other/audit.csv", "/admin/log", "/admin/audit", "/admin/orgs/Other/alerts"} {
		if code, _ := boss.Get(p); code != 404 {
			t.Errorf("boss GET %s: %d, want 404", p, code)
		}
	}
	for _, op := range []string{"hold", "delete", "retry"} {
		if r, _ := boss.Post("/admin/orgs/Acme/queue/"+otherID+"/"+op, nil); r.StatusCode != 404 {
			t.Errorf("boss %s of another org's message: %d", op, r.StatusCode)
		}
	}
	if m, ok, _ := tn.Node.Store().Message(otherID); !ok || m.Held {
		t.Fatal("another org's message was changed")
	}
	r, body := boss.Post("/admin/orgs/Acme/queue/"+acmeID+"/hold", nil)
	mustStatus(t, "hold", r.StatusCode, http.StatusSeeOther, body)
	if m, _, _ := tn.Node.Store().Message(acmeID); !m.Held {
		t.Fatal("hold did nothing")
	}
	r, _ = boss.Post("/admin/orgs/Acme/queue/"+acmeID+"/release", nil)
	mustStatus(t, "release", r.StatusCode, http.StatusSeeOther, "")

	code, page = boss.Get("/admin/orgs/Acme/audit?kind=queue_hold")
	if code != 200 || !strings.Contains(page, "queue_hold") || !strings.Contains(page, acmeID) {
		t.Fatalf("audit page: %d\n%s", code, page)
	}
	code, page = boss.Get("/admin/orgs/Acme/audit")
	if strings.Contains(page, "eve@other.test") {
		t.Fatal("Acme's audit log shows Other's entries")
	}
	code, csvBody = boss.Get("/admin/orgs/Acme/audit.csv")
	if code != 200 || !strings.HasPrefix(csvBody, "time,seq,kind") || !strings.Contains(csvBody, "queue_release") {
		t.Fatalf("audit CSV: %d\n%s", code, csvBody)
	}
	// The partner sees Acme's, not Other's; the operator sees everything.
	pat := tn.SignIn("pat@partner.test")
	if code, page := pat.Get("/admin/orgs/Acme/queue"); code != 200 || !strings.Contains(page, acmeID) {
		t.Fatalf("partner's queue: %d", code)
	}
	if code, _ := pat.Get("/admin/orgs/Other/queue"); code != 404 {
		t.Fatalf("partner sees another org's queue: %d", code)
	}
	op := tn.Operator()
	if code, page := op.Get("/admin/log"); code != 200 || !strings.Contains(page, acmeID) || !strings.Contains(page, otherID) {
		t.Fatalf("operator's log: %d", code)
	}
	if code, page := op.Get("/admin/audit"); code != 200 || !strings.Contains(page, "Hash chain intact") {
		t.Fatalf("operator's audit: %d\n%s", code, page)
	}

	// Alerts: settings are validated and saved.
	r, body = boss.Post("/admin/orgs/Acme/alerts", url.Values{"enabled": {"on"}, "to": {"both"}, "via": {"both"}, "repeat": {"4h"},
		"admin_email": {"ops@contacts.example"}, "admin_mobile": {"+447700900001"}, "tech_email": {"tech@contacts.example"}})
	if r.StatusCode != 400 || !strings.Contains(body, "mobile") {
		t.Fatalf("alerts without the tech contact's mobile: %d", r.StatusCode)
	}
	r, body = boss.Post("/admin/orgs/Acme/alerts", url.Values{"enabled": {"on"}, "to": {"both"}, "via": {"both"}, "repeat": {"4h"},
		"admin_email": {"ops@contacts.example"}, "admin_mobile": {"+447700900001"}, "tech_email": {"tech@contacts.example"}, "tech_mobile": {"+447700900002"}})
	mustStatus(t, "alerts", r.StatusCode, http.StatusSeeOther, body)
	set, _ := tn.Node.Store().OrgSettingsOf("Acme")
	if !set.Alerts.Enabled || set.Alerts.Tech.Mobile != "+447700900002" || set.Alerts.RepeatEvery != int64(4*3600e9) {
		t.Fatalf("alerts saved: %+v", set.Alerts)
	}
}
