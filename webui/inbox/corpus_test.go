package inbox_test

import (
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"lifeline/e2e/kit"
	"lifeline/fsm"
	"lifeline/webui/webtest"
)

// corpora are real-world messages from Debian's packages: Python's email
// tests (libpython3.11-testsuite) and SpamAssassin's samples
// (spamassassin). .ci/run installs both.
var corpora = []struct{ pkg, glob string }{
	{"libpython3.11-testsuite", "/usr/lib/python3.11/test/test_email/data/msg_*.txt"},
	{"spamassassin", "/usr/share/doc/spamassassin/examples/sample-*.txt"},
}

// expectation is what testdata/expected_body.py says Python's email
// package finds in one message.
type expectation struct {
	File, How, Type, Text string
	Subject               string
	Senders               []string
}

// TestRealWorldCorpus sends every message of the corpora through the MX,
// opens each in the Emergency Inbox over HTTP, and checks that the page
// answers 200 and shows the text body Python's email package finds, and
// that a reply quotes it and a forward carries it.
func TestRealWorldCorpus(t *testing.T) {
	var files []string
	for _, c := range corpora {
		names, _ := filepath.Glob(c.glob)
		if len(names) == 0 {
			t.Logf("corpus of %s missing (%s): apt-get install %s", c.pkg, c.glob, c.pkg)
		}
		files = append(files, names...)
	}
	if len(files) == 0 {
		t.Skip("no mail corpus installed: apt-get install libpython3.11-testsuite spamassassin")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: it computes what the reading view must show")
	}
	out, err := exec.Command(py, append([]string{"testdata/expected_body.py"}, files...)...).Output()
	if err != nil {
		t.Fatalf("expected_body.py: %v", err)
	}
	var exps []expectation
	if err := json.Unmarshal(out, &exps); err != nil || len(exps) != len(files) {
		t.Fatalf("expected_body.py printed %d of %d: %v", len(exps), len(files), err)
	}

	tn := webtest.SetupTenants(t)
	alice := tn.SignIn("alice@acme.test")
	checked, shownRaw := 0, 0
	for _, exp := range exps {
		name := filepath.Base(exp.File)
		b, err := os.ReadFile(exp.File)
		if err != nil {
			t.Fatal(err)
		}
		reply, err := kit.Send(tn.Node.SMTPAddr(), "sender@corpus.example", []string{"alice@acme.test"}, smtpData(b))
		if err != nil || !reply.OK() {
			t.Errorf("%s: the MX answered %v, %v", name, reply, err)
			continue
		}
		id := reply.QueueID()
		kit.Wait(t, 20*time.Second, 10*time.Millisecond, name+" in alice's inbox", func() (bool, error) {
			return tn.Node.Store().InboxHas("alice@acme.test", id)
		})
		// The list shows the sender and subject taken at accept time.
		items, _, _, err := tn.Node.Store().InboxPage("alice@acme.test", fsm.InboxCursor{}, 1, 1000, func(it *fsm.InboxItem) bool { return it.ID == id })
		if err != nil || len(items) != 1 {
			t.Fatalf("%s: not listed: %v", name, err)
		}
		if collapse(items[0].Subject) != collapse(exp.Subject) {
			t.Errorf("%s: listed with subject %q, Python reads %q", name, items[0].Subject, exp.Subject)
		}
		for _, a := range exp.Senders {
			if !strings.Contains(items[0].From, a) {
				t.Errorf("%s: listed as from %q, Python reads %s", name, items[0].From, a)
			}
		}
		path := "/mail/alice@acme.test/m/" + id
		code, page := alice.Get(path)
		if code != 200 {
			t.Errorf("%s: reading view answered %d", name, code)
			continue
		}
		body := page[strings.Index(page, `<div id="body">`):]
		body = body[:strings.Index(body, "</div>")]
		got := visible(body)
		if exp.Type == "text/html" {
			for _, src := range frameSrc.FindAllStringSubmatch(body, -1) {
				_, frame, _ := get(t, alice, html.UnescapeString(src[1]))
				got += " " + visible(frame)
			}
		}
		want := collapse(exp.Text)
		if exp.Type == "text/html" {
			want = visible(exp.Text)
		}
		if exp.How == "raw" {
			shownRaw++
			if !strings.Contains(page, `id="raw-note"`) {
				t.Errorf("%s: shown as it arrived without the note", name)
			}
		}
		if want == "" {
			continue // Python finds no text either
		}
		checked++
		if !strings.Contains(got, want) {
			t.Errorf("%s: Python finds (%s, %s)\n%q\nthe page shows\n%q", name, exp.How, exp.Type, want, got)
			continue
		}
		// A reply quotes the text, a forward carries it (as far as a
		// draft holds).
		prefix := want[:min(len(want), 2000)]
		for _, kind := range []string{"reply", "forward"} {
			r, _ := alice.Post("/compose", url.Values{"kind": {kind}, "id": {id}})
			d, ok, _ := tn.Node.Store().Draft("alice@acme.test", strings.TrimPrefix(r.Header.Get("Location"), "/drafts/"))
			if !ok {
				t.Errorf("%s: %s answered %d and made no draft", name, kind, r.StatusCode)
				continue
			}
			text := d.Text
			if kind == "reply" {
				text = unquote(text)
			}
			if !strings.Contains(collapse(text), prefix) {
				t.Errorf("%s: the %s does not hold the text:\n%q", name, kind, d.Text)
			}
		}
	}
	t.Logf("%d messages through the MX, %d with text compared, %d shown as they arrived", len(exps), checked, shownRaw)
}

var frameSrc = regexp.MustCompile(`<iframe class="html"[^>]* src="([^"]+)"`)

// smtpData is a corpus file as DATA carries it: CRLF line endings and
// dot-stuffing (RFC 5321 §4.5.2).
func smtpData(b []byte) string {
	s := strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	s = strings.ReplaceAll(s, "\r\n.", "\r\n..")
	if strings.HasPrefix(s, ".") {
		s = "." + s
	}
	return s
}

// visible is the text a browser shows of an HTML fragment, with white
// space collapsed: tags dropped, entities decoded, nothing of scripts,
// styles or the head.
func visible(src string) string {
	z := html.NewTokenizer(strings.NewReader(src))
	var b strings.Builder
	skip := 0
	for {
		switch z.Next() {
		case html.ErrorToken: // the end, or HTML no browser could read further
			return collapse(b.String())
		case html.StartTagToken:
			if n, _ := z.TagName(); isHidden(string(n)) {
				skip++
			}
			b.WriteString(" ")
		case html.EndTagToken:
			if n, _ := z.TagName(); isHidden(string(n)) && skip > 0 {
				skip--
			}
			b.WriteString(" ")
		case html.TextToken:
			if skip == 0 {
				b.Write(z.Text())
			}
		}
	}
}

func isHidden(tag string) bool {
	return tag == "script" || tag == "style" || tag == "head" || tag == "title"
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// unquote undoes the "> " a reply puts before each quoted line.
func unquote(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ">") {
			lines[i] = strings.TrimPrefix(l[1:], " ")
		}
	}
	return strings.Join(lines, "\n")
}
