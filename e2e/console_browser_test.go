package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"lifeline/e2e/kit"
)

// The admin console in a real browser against a real node: an org admin
// adds a domain, tests a dead destination (red, with the error) and a
// live loopback SMTP sink (green), the operator approves the domain,
// and the admin creates users from a CSV file and sends welcome emails,
// one batch at import and one selected user, which arrive at the sink.
func TestAdminConsoleInBrowser(t *testing.T) {
	ctx := newBrowser(t)
	shots := artifacts(t)
	live := kit.FreePort(t)
	sink := kit.StartSink(t, live)
	dead := kit.FreePort(t)
	p := newProc(t)
	p.Start()
	p.MustCLI("admin", "org", "add", "Acme")
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("correct horse battery\n"), 0o600)
	p.MustCLI("admin", "user", "add", "boss@acme.test", "--org", "Acme", "--role", "admin", "--password-file", pwFile)
	base := "http://" + p.HTTP

	step(t, ctx, "sign in",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#email")),
		chromedp.SendKeys(chromedp.CSS("#email"), "boss@acme.test"),
		chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery"),
		chromedp.Click(chromedp.CSS("button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("form.search")),
	)
	step(t, ctx, "open Company settings > Domains",
		chromedp.Click(chromedp.Search(`//a[text()="Admin"]`)),
		chromedp.WaitVisible(chromedp.CSS("nav.console")),
		chromedp.Click(chromedp.Search(`//nav[@class="console"]/a[text()="Domains"]`)),
		chromedp.WaitVisible(chromedp.CSS("#add-domain")),
	)
	step(t, ctx, "add the domain with a dead destination",
		chromedp.SendKeys(chromedp.CSS("#new-domain"), "acme.test"),
		chromedp.SendKeys(chromedp.CSS("#new-dests"), dead),
		chromedp.Click(chromedp.Search(`//button[text()="Add domain"]`)),
	)
	waitText(t, ctx, ".flash", "Domain requested")
	if s := text(t, ctx, `[id="domain-acme.test"] .state`); !strings.Contains(s, "Waiting for approval") {
		t.Fatalf("requested domain state: %q", s)
	}
	step(t, ctx, "test the dead destination",
		chromedp.Click(chromedp.CSS(`button[aria-label="Test `+dead+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(".test-result")),
	)
	res := text(t, ctx, ".test-result")
	cls, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('.test-result').className`))
	if !strings.Contains(cls, "fail") || !strings.Contains(res, "connection refused") {
		t.Fatalf("dead destination: class %q, text %q", cls, res)
	}
	red, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector('.test-result')).backgroundColor`))
	shot(t, ctx, shots, "console-01-dead-destination")

	step(t, ctx, "point the domain at the live sink",
		chromedp.SetValue(chromedp.CSS(`[id="dests-acme.test"]`), live+" 10"),
		chromedp.Click(chromedp.Search(`//button[text()="Save destinations"]`)),
	)
	waitText(t, ctx, ".flash", "Destinations saved")
	step(t, ctx, "test the live destination",
		chromedp.Click(chromedp.CSS(`button[aria-label="Test `+live+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(".test-result")),
	)
	res = text(t, ctx, ".test-result")
	cls, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('.test-result').className`))
	green, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector('.test-result')).backgroundColor`))
	if !strings.Contains(cls, "ok") || !strings.Contains(res, "answers") || !strings.Contains(res, "220") || green == red {
		t.Fatalf("live destination: class %q, text %q, colours %s / %s", cls, res, green, red)
	}
	shot(t, ctx, shots, "console-02-live-destination")

	// The operator approves the domain; its mail is accepted from now on.
	p.MustCLI("admin", "domain", "approve", "acme.test")

	csvPath := filepath.Join(t.TempDir(), "users.csv")
	os.WriteFile(csvPath, []byte("email,name,role,groups\nann@acme.test,Ann Able,user,sales\nben@acme.test,Ben Baker,admin,board;sales\n"), 0o600)
	step(t, ctx, "import users from CSV with welcome emails",
		chromedp.Click(chromedp.Search(`//nav[@class="console"]/a[text()="Users"]`)),
		chromedp.WaitVisible(chromedp.CSS("#import-users")),
		chromedp.SetUploadFiles(chromedp.CSS("#csv"), []string{csvPath}),
		chromedp.Click(chromedp.CSS(`#import-users input[name=welcome]`)),
		chromedp.Click(chromedp.Search(`//button[text()="Import"]`)),
	)
	waitText(t, ctx, ".flash", "imported")
	if f := text(t, ctx, ".flash"); !strings.Contains(f, "imported 2 users") || !strings.Contains(f, "2 welcome emails queued") {
		t.Fatalf("import: %q", f)
	}
	if u := text(t, ctx, "#users"); !strings.Contains(u, "ann@acme.test") || !strings.Contains(u, "no password yet") {
		t.Fatalf("users list: %q", u)
	}
	shot(t, ctx, shots, "console-03-users")
	step(t, ctx, "send one selected user a welcome email",
		chromedp.Click(chromedp.CSS(`input[aria-label="Select ann@acme.test"]`)),
		chromedp.Click(chromedp.Search(`//button[text()="Send welcome email to selected"]`)),
	)
	waitText(t, ctx, ".flash", "1 welcome email queued")
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "the welcome emails at the sink", func() (bool, error) {
		n := map[string]int{}
		for _, m := range sink.Messages() {
			for _, u := range []string{"ann@acme.test", "ben@acme.test"} {
				if bytes.Contains(m, []byte("<"+u+">")) && bytes.Contains(m, []byte(base+"/welcome/")) {
					n[u]++
				}
			}
		}
		return n["ann@acme.test"] == 2 && n["ben@acme.test"] == 1, nil
	})

	// The message log shows the welcome emails' deliveries; the audit log
	// shows who did all this.
	step(t, ctx, "message log",
		chromedp.Navigate(base+"/admin/orgs/Acme/log?recipient=ann@acme.test&status=delivered"),
		chromedp.WaitVisible(chromedp.CSS("#log")),
	)
	if l := text(t, ctx, "#log"); !strings.Contains(l, "ann@acme.test") || !strings.Contains(l, "delivered") {
		t.Fatalf("message log: %q", l)
	}
	shot(t, ctx, shots, "console-05-log")
	step(t, ctx, "audit log", chromedp.Navigate(base+"/admin/orgs/Acme/audit"), chromedp.WaitVisible(chromedp.CSS("#audit")))
	if a := text(t, ctx, "#audit"); !strings.Contains(a, "user_import") || !strings.Contains(a, "domain_approve") || !strings.Contains(a, "password_link_sent") {
		t.Fatalf("audit log: %q", a)
	}
	shot(t, ctx, shots, "console-06-audit")
	step(t, ctx, "alerts", chromedp.Navigate(base+"/admin/orgs/Acme/alerts"), chromedp.WaitVisible(chromedp.CSS("#alerts")))
	shot(t, ctx, shots, "console-07-alerts")

	// The link from the email sets a password, and the user signs in.
	var link string
	for _, m := range sink.Messages() {
		if bytes.Contains(m, []byte("<ben@acme.test>")) {
			i := bytes.Index(m, []byte(base+"/welcome/"))
			link = strings.Fields(string(m[i:]))[0]
		}
	}
	step(t, ctx, "choose a password through the link",
		chromedp.Click(chromedp.Search(`//button[text()="Sign out"]`)),
		chromedp.WaitVisible(chromedp.CSS("#email")),
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS("#password2")),
		chromedp.SendKeys(chromedp.CSS("#password"), "ben's long password"),
		chromedp.SendKeys(chromedp.CSS("#password2"), "ben's long password"),
		chromedp.Click(chromedp.Search(`//button[text()="Set password"]`)),
		chromedp.WaitVisible(chromedp.CSS("#email")),
		chromedp.SendKeys(chromedp.CSS("#email"), "ben@acme.test"),
		chromedp.SendKeys(chromedp.CSS("#password"), "ben's long password"),
		chromedp.Click(chromedp.CSS("button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("form.search")),
	)
	shot(t, ctx, shots, "console-04-welcomed-user")
}

// waitText waits until the element sel shows want: after a form post the
// old page's element may still be there until the new page loads.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	got := ""
	err := kit.WaitErr(t, 15*time.Second, 50*time.Millisecond, func() string { return sel + " to show " + want }, func() (bool, error) {
		got, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`(function(){ const e = document.querySelector(`+strconv.Quote(sel)+`); return e ? e.textContent : ""; })()`))
		return strings.Contains(got, want), nil
	})
	if err != nil {
		t.Fatalf("%s never showed %q; last %q", sel, want, got)
	}
}
