package e2e

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// A session is replicated state: signed in on one node, the user reloads
// the page on another after the first one died and is still signed in.
func TestSessionSurvivesTheLossOfItsNode(t *testing.T) {
	procs := startCluster(t, 3)
	first := procs[0]
	first.MustCLI("admin", "org", "add", "Acme")
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("correct horse battery\n"), 0o600)
	first.MustCLI("admin", "user", "add", "alice@acme.test", "--org", "Acme", "--password-file", pw)

	// The CLI's node may be a follower that applies the new user a moment
	// after the leader committed it.
	kit.Wait(t, 10*time.Second, 50*time.Millisecond, "the user on "+first.ID, func() (bool, error) {
		out, _ := first.CLI("admin", "user", "list")
		return strings.Contains(out, "alice@acme.test"), nil
	})
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	base := "http://" + first.HTTP
	resp, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	req, _ := http.NewRequest("POST", base+"/login", strings.NewReader(url.Values{"email": {"alice@acme.test"}, "password": {"correct horse battery"}, "csrf": {string(tok[1])}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasSuffix(resp.Request.URL.Path, "/mail/alice@acme.test/") {
		t.Fatalf("login: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	var session *http.Cookie
	for _, ck := range jar.Cookies(resp.Request.URL) {
		if ck.Name == "lifeline_session" {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}
	first.Kill()
	// The same cookie, presented to each surviving node.
	for _, p := range procs[1:] {
		kit.Wait(t, 20*time.Second, 50*time.Millisecond, "the inbox on "+p.ID, func() (bool, error) {
			req, _ := http.NewRequest("GET", "http://"+p.HTTP+"/mail/alice@acme.test/", nil)
			req.AddCookie(&http.Cookie{Name: session.Name, Value: session.Value})
			r, err := (&http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
			if err != nil {
				return false, nil
			}
			body, _ := io.ReadAll(r.Body)
			r.Body.Close()
			return r.StatusCode == 200 && strings.Contains(string(body), "waiting for delivery"), nil
		})
	}
}
