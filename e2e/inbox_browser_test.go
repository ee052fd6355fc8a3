package e2e

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"lifeline/e2e/kit"
)

const chromiumPath = "/usr/bin/chromium"

// newBrowser starts Debian's Chromium headless, with a fresh profile and
// nothing that reaches beyond loopback, at a phone's viewport.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skip("browser test skipped: " + chromiumPath + " is missing; install it with: apt-get install -y chromium")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(390, 844),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// artifacts is where screenshots go; kept after the test, and logged.
func artifacts(t *testing.T) string {
	dir := os.Getenv("LIFELINE_ARTIFACTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "lifeline-inbox-screens-"); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(dir, 0o755)
	t.Logf("screenshots in %s", dir)
	return dir
}

func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// spy is a loopback web server that hostile mail points at: any request
// it records is content the inbox let the message fetch.
type spy struct {
	mu   sync.Mutex
	hits []string
	addr string
}

func startSpy(t *testing.T) *spy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &spy{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The browser's own favicon request after the control visit is
		// not the message's doing.
		if r.URL.Path != "/favicon.ico" {
			s.mu.Lock()
			s.hits = append(s.hits, r.URL.Path)
			s.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/javascript")
		w.Write([]byte("document.title='pwned'"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *spy) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.hits...)
}

const demoMail = "From: Carla Client <carla@external.example>\r\nTo: alice@acme.test\r\nSubject: Quarterly numbers\r\nMessage-ID: <q1@external.example>\r\nDate: Mon, 2 Feb 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n" +
	"--mix\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" +
	"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease send the numbers today.\r\n" +
	"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Please send the <b>numbers</b> today.</p>\r\n" +
	"--alt--\r\n" +
	"--mix\r\nContent-Type: text/csv; name=\"q3.csv\"\r\nContent-Disposition: attachment; filename=\"q3.csv\"\r\n\r\nquarter,revenue\r\nq3,100\r\n" +
	"--mix--\r\n"

func hostileMail(spyAddr string) string {
	u := "http://" + spyAddr
	return "From: attacker@evil.example\r\nTo: alice@acme.test\r\nSubject: Hostile offer\r\nMessage-ID: <h1@evil.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
		"<html><head><script>document.title='pwned';parent.document.title='pwned'</script><script src=\"" + u + "/script.js\"></script>" +
		"<link rel=\"stylesheet\" href=\"" + u + "/style.css\"><style>@import url(" + u + "/import.css); body{background:url(" + u + "/bg.png)}</style>" +
		"<meta http-equiv=\"refresh\" content=\"0;url=" + u + "/refresh\"></head>" +
		"<body onload=\"parent.document.title='pwned'\"><p id=\"offer\" style=\"background-image:url(" + u + "/inline.png)\">A hostile offer</p>" +
		"<img src=\"" + u + "/pixel.gif\" onerror=\"parent.document.title='pwned'\"><iframe src=\"" + u + "/frame\"></iframe>" +
		"<video poster=\"" + u + "/poster.png\"></video><object data=\"" + u + "/obj\"></object><img srcset=\"" + u + "/srcset.png 2x\">" +
		"<svg><image href=\"" + u + "/svg.png\"/></svg><form action=\"" + u + "/form\"><button>go</button></form></body></html>\r\n"
}

// The Emergency Inbox in a real browser, against a real node process: sign
// in, read a spooled message, reply to an external sender with a colleague
// in copy, find the reply in the colleague's inbox and the external copy at
// an SMTP sink reached through the transport map; hostile HTML runs nothing
// and fetches nothing; when the organisation's server comes back the spool
// drains and the inbox is empty.
func TestEmergencyInboxInBrowser(t *testing.T) {
	ctx := newBrowser(t)
	shots := artifacts(t)
	dest := kit.FreePort(t)
	extSinkAddr := kit.FreePort(t)
	extSink := kit.StartSink(t, extSinkAddr)
	p := newProc(t, "--transport", "external.example="+extSinkAddr)
	p.Start()
	p.MustCLI("admin", "org", "add", "Acme")
	p.MustCLI("admin", "domain", "add", "acme.test", "--destination", dest, "--org", "Acme")
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("correct horse battery\n"), 0o600)
	p.MustCLI("admin", "user", "add", "alice@acme.test", "--org", "Acme", "--password-file", pwFile, "--name", "Alice Example")
	p.MustCLI("admin", "user", "add", "carol@acme.test", "--org", "Acme", "--password-file", pwFile)

	c := kit.NewClient(t, p.SMTP)
	c.Cmd("EHLO client.example", "250")
	queueID(t, c.Send("carla@external.example", []string{"alice@acme.test"}, demoMail))
	sp := startSpy(t)
	queueID(t, c.Send("attacker@evil.example", []string{"alice@acme.test"}, hostileMail(sp.addr)))

	// Control: the browser can reach the spy, so silence later means the
	// inbox blocked the fetches.
	step(t, ctx, "reach the spy", chromedp.Navigate("http://"+sp.addr+"/control"))
	if hits := sp.requests(); len(hits) != 1 {
		t.Fatalf("the browser cannot reach the spy server: %v", hits)
	}
	sp.mu.Lock()
	sp.hits = nil
	sp.mu.Unlock()

	base := "http://" + p.HTTP
	login := func(email string) {
		t.Helper()
		step(t, ctx, "sign in as "+email,
			chromedp.Navigate(base+"/login"),
			chromedp.WaitVisible(chromedp.CSS("#email")),
			chromedp.SendKeys(chromedp.CSS("#email"), email),
			chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery"),
		)
		if email == "alice@acme.test" {
			shot(t, ctx, shots, "01-login")
		}
		step(t, ctx, "submit sign-in", chromedp.Click(chromedp.CSS("button[type=submit]")), chromedp.WaitVisible(chromedp.CSS("form.search")))
	}
	login("alice@acme.test")
	list := text(t, ctx, "#messages")
	if !strings.Contains(list, "Quarterly numbers") || !strings.Contains(list, "Carla Client") {
		t.Fatalf("inbox does not list the spooled message:\n%s", list)
	}
	if n := text(t, ctx, ".notice"); !strings.Contains(n, "only mail received while acme.test") {
		t.Fatalf("no outage notice: %q", n)
	}
	shot(t, ctx, shots, "02-inbox")

	// Read it: text in a sandboxed frame, the attachment listed.
	step(t, ctx, "open the message", chromedp.Click(chromedp.Search(`//a[contains(., "Quarterly numbers")]`)), chromedp.WaitVisible(chromedp.CSS("iframe.html")))
	if a := text(t, ctx, "#attachments"); !strings.Contains(a, "q3.csv") {
		t.Fatalf("attachment not listed: %q", a)
	}
	frameText, err := chromedp.Run(ctx, chromedp.Evaluate[string](`new Promise(r => { const f = document.querySelector('iframe.html'); const go = () => r(f.contentDocument ? f.contentDocument.body.innerText : ''); if (f.contentDocument && f.contentDocument.readyState === 'complete') go(); else f.addEventListener('load', go); })`, chromedp.EvalAwaitPromise))
	if err != nil || !strings.Contains(frameText, "numbers") {
		t.Fatalf("HTML part not shown: %q %v", frameText, err)
	}
	shot(t, ctx, shots, "03-read")

	// Reply to the external sender, with the colleague in copy.
	step(t, ctx, "reply",
		chromedp.Click(chromedp.Search(`//button[text()="Reply"]`)),
		chromedp.WaitVisible(chromedp.CSS("#compose")),
		chromedp.SendKeys(chromedp.CSS("#cc"), "carol@acme.test"),
		chromedp.SendKeys(chromedp.CSS("#text"), "Numbers attached by tonight.\n"),
	)
	if to, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('to').value`)); !strings.Contains(to, "carla@external.example") {
		t.Fatalf("reply goes to %q", to)
	}
	shot(t, ctx, shots, "04-compose")
	step(t, ctx, "send", chromedp.Click(chromedp.Search(`//button[text()="Send"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))

	// The external copy reaches the sink through the transport map.
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "the reply at the external sink", func() (bool, error) {
		for _, m := range extSink.Messages() {
			if bytes.Contains(m, []byte("Subject: Re: Quarterly numbers")) && bytes.Contains(m, []byte("In-Reply-To: <q1@external.example>")) {
				return true, nil
			}
		}
		return false, nil
	})

	// Hostile HTML: no script runs, nothing remote is fetched.
	step(t, ctx, "open the hostile message",
		chromedp.Navigate(base+"/mail/alice@acme.test/"),
		chromedp.Click(chromedp.Search(`//a[contains(., "Hostile offer")]`)),
		chromedp.WaitVisible(chromedp.CSS("iframe.html")),
	)
	offer, err := chromedp.Run(ctx, chromedp.Evaluate[string](`new Promise(r => { const f = document.querySelector('iframe.html'); const go = () => setTimeout(() => r(f.contentDocument ? f.contentDocument.body.innerText : ''), 500); if (f.contentDocument && f.contentDocument.readyState === 'complete') go(); else f.addEventListener('load', go); })`, chromedp.EvalAwaitPromise))
	if err != nil || !strings.Contains(offer, "A hostile offer") {
		t.Fatalf("hostile message not shown: %q %v", offer, err)
	}
	title, _ := chromedp.Run(ctx, chromedp.Title())
	frameTitle, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('iframe.html').contentDocument.title`))
	if strings.Contains(title, "pwned") || strings.Contains(frameTitle, "pwned") {
		t.Fatalf("a script in the message ran: title %q, frame title %q", title, frameTitle)
	}
	shot(t, ctx, shots, "05-hostile")
	if hits := sp.requests(); len(hits) != 0 {
		t.Fatalf("hostile HTML fetched remote content: %v", hits)
	}

	// The colleague finds the reply in her Emergency Inbox.
	step(t, ctx, "sign out", chromedp.Click(chromedp.Search(`//button[text()="Sign out"]`)), chromedp.WaitVisible(chromedp.CSS("#email")))
	login("carol@acme.test")
	if l := text(t, ctx, "#messages"); !strings.Contains(l, "Re: Quarterly numbers") || !strings.Contains(l, "Alice Example") {
		t.Fatalf("reply not in the colleague's inbox:\n%s", l)
	}
	shot(t, ctx, shots, "06-colleague")
	step(t, ctx, "sign out", chromedp.Click(chromedp.Search(`//button[text()="Sign out"]`)), chromedp.WaitVisible(chromedp.CSS("#email")))

	// The organisation's server comes back; the spool drains; the inbox
	// is empty.
	kit.StartSink(t, dest)
	p.MustCLI("admin", "queue", "flush")
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "the spool to drain", func() (bool, error) {
		return strings.Contains(p.MustCLI("admin", "queue", "list"), "0 messages"), nil
	})
	login("alice@acme.test")
	if e := text(t, ctx, "#empty"); !strings.Contains(e, "no mail waiting") {
		t.Fatalf("inbox not empty after the drain: %q", e)
	}
	shot(t, ctx, shots, "07-drained")
	if hits := sp.requests(); len(hits) != 0 {
		t.Fatalf("hostile HTML fetched remote content: %v", hits)
	}
}
