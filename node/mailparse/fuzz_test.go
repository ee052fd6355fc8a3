package mailparse

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// corpusGlobs are the real-world messages that Debian ships: Python's
// email tests (libpython3.11-testsuite) and SpamAssassin's samples
// (spamassassin). The corpus test of the Emergency Inbox reads the same.
var corpusGlobs = []string{
	"/usr/lib/python3.*/test/test_email/data/msg_*.txt",
	"/usr/share/doc/spamassassin/examples/sample-*.txt",
}

// FuzzParse feeds the reading view's parser arbitrary bytes: whatever they
// are, Parse returns a message and no error, every section and every part
// it names can be opened, and the summary taken at accept time never
// fails either.
func FuzzParse(f *testing.F) {
	for _, g := range corpusGlobs {
		names, _ := filepath.Glob(g)
		for _, name := range names {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n")))
			}
		}
	}
	for _, s := range []string{
		"",
		"no header at all",
		"From x\nSubject: mbox\n\nbody",
		"Content-Type: multipart/mixed; boundary=a\n\n--a\n--a\nContent-Type: multipart/alternative; boundary=a\n\n--a--\n--a--",
		"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nQ29udGVudC1UeXBlOiBtdWx0aXBhcnQvbWl4ZWQ7IGJvdW5kYXJ5PWINCg0KLS1i",
		"Content-Type: text/plain; charset*0*=utf-8''%E2; charset*1*=%82\nContent-Transfer-Encoding: quoted-printable\n\n=E2=82=AC=\n=",
		"Content-Type: text/html\n\n<p>a<pre>b</pre><script>c",
	} {
		f.Add([]byte(crlf(s)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(bytes.NewReader(b))
		if err != nil || m == nil {
			t.Fatalf("Parse: %v", err)
		}
		for i, p := range m.Parts {
			if p.Index != i {
				t.Fatalf("part %d numbered %d", i, p.Index)
			}
		}
		for _, s := range m.Sections {
			if s.Kind != SectionMessage && (s.Part < 0 || s.Part >= len(m.Parts)) {
				t.Fatalf("section names part %d of %d", s.Part, len(m.Parts))
			}
			if s.Kind == SectionMessage && s.Header == nil {
				t.Fatal("message section without a header")
			}
		}
		if len(m.Parts) > 0 {
			last := len(m.Parts) - 1
			err := OpenPart(bytes.NewReader(b), last, func(p Part, r io.Reader) error {
				if p.Index != last || p.ContentType != m.Parts[last].ContentType {
					t.Fatalf("OpenPart %d gives %+v, Parse %+v", last, p, m.Parts[last])
				}
				_, err := io.Copy(io.Discard, r)
				return err
			})
			if err != nil {
				t.Fatalf("OpenPart %d: %v", last, err)
			}
		}
		// What the page shows is text: valid UTF-8 whatever came in.
		for _, v := range []string{m.Text, m.From, m.To, m.Subject} {
			if !utf8.ValidString(v) {
				t.Fatalf("not UTF-8: %q", v)
			}
		}
		Summarize(bytes.NewReader(b))
	})
}
