package mailparse

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// crlf writes a test message as the MX stores it.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func parse(t *testing.T, msg string) *Message {
	t.Helper()
	m, err := Parse(strings.NewReader(crlf(msg)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

// shown is the text of every section, as the reading view shows it.
func shown(m *Message) string {
	var b strings.Builder
	for _, s := range m.Sections {
		b.WriteString(s.Text + s.HTML)
	}
	return b.String()
}

func files(m *Message) []string {
	var out []string
	for _, p := range m.Parts {
		if p.IsAttachment() {
			out = append(out, p.ContentType+" "+p.Filename)
		}
	}
	return out
}

func TestHeaderEndsAtTheFirstLineThatIsNoField(t *testing.T) {
	m := parse(t, `Received: from a.example by mx.example; Mon, 1 Jun 2026 10:00:00 +0000
From: Carla <carla@ext.example>
To: alice@acme.test
Subject: Quarterly
 figures
this line has no colon and starts the body
Second line: looks like a field, but the body has begun
`)
	if m.From != "Carla <carla@ext.example>" || m.Subject != "Quarterly figures" || m.To != "alice@acme.test" {
		t.Fatalf("header: from %q subject %q to %q", m.From, m.Subject, m.To)
	}
	want := "this line has no colon and starts the body\nSecond line: looks like a field, but the body has begun\n"
	if len(m.Sections) != 1 || m.Sections[0].Text != want || m.Raw {
		t.Fatalf("sections: %+v", m.Sections)
	}
	s := Summarize(strings.NewReader(crlf("From: Carla <carla@ext.example>\nSubject: Quarterly\nno colon here\n\nbody\n")))
	if s.From != "Carla <carla@ext.example>" || s.Subject != "Quarterly" {
		t.Fatalf("summary: %+v", s)
	}
}

func TestMessageWithoutHeaderIsItsText(t *testing.T) {
	m := parse(t, "Dear all,\n\tthe meeting moved.\n")
	if m.From != "" || m.Subject != "" || shown(m) != "Dear all,\n\tthe meeting moved.\n" {
		t.Fatalf("got from %q subject %q text %q", m.From, m.Subject, shown(m))
	}
}

func TestMboxFromLineIsSkipped(t *testing.T) {
	for name, msg := range map[string]string{
		"first":              "From MAILER-DAEMON Mon Jun  1 10:00:00 2026\nFrom: Mail System <postmaster@ext.example>\nSubject: Undelivered\n\nSorry.\n",
		"after our Received": "Received: from a by b; Mon, 1 Jun 2026 10:00:00 +0000\nFrom someone@ext.example Mon Jun  1 10:00:00 2026\nFrom: Mail System <postmaster@ext.example>\nSubject: Undelivered\n\nSorry.\n",
	} {
		m := parse(t, msg)
		if m.From != "Mail System <postmaster@ext.example>" || m.Subject != "Undelivered" || shown(m) != "Sorry.\n" {
			t.Errorf("%s: from %q subject %q text %q", name, m.From, m.Subject, shown(m))
		}
		s := Summarize(strings.NewReader(crlf(msg)))
		if s.Subject != "Undelivered" || !strings.Contains(s.From, "postmaster@ext.example") {
			t.Errorf("%s: summary %+v", name, s)
		}
	}
}

func TestRFC2231Parameters(t *testing.T) {
	m := parse(t, `From: a@ext.example
Subject: signed
Content-Type: multipart/signed; micalg*=ansi-x3.4-1968''pgp-sha256;
	protocol*=ansi-x3.4-1968''application%2Fpgp-signature;
	boundary*="ansi-x3.4-1968''Zq%3Dsep"

--Zq=sep
Content-Type: text/plain; charset*=ansi-x3.4-1968''us-ascii

the signed text

--Zq=sep
Content-Type: application/pgp-signature
Content-Disposition: attachment;
 filename*0*=iso-8859-1''Unterschrift%20f%FC;
 filename*1="r Q3.asc"

SIG
--Zq=sep--
`)
	if shown(m) != "the signed text\n" {
		t.Fatalf("text: %q (%+v)", shown(m), m.Parts)
	}
	if f := files(m); len(f) != 1 || f[0] != "application/pgp-signature Unterschrift für Q3.asc" {
		t.Fatalf("files: %q", f)
	}
}

func TestParameterOddities(t *testing.T) {
	for in, want := range map[string]string{
		`text/plain; charset="utf-8"`:                     "text/plain charset=utf-8",
		`Text/HTML;CHARSET=ISO-8859-1 (Latin 1)`:          "text/html charset=ISO-8859-1",
		`text/plain; name=my report.txt`:                  "text/plain name=my report.txt",
		`text/plain; name="a \"quoted\" name"; charset=x`: `text/plain charset=x name=a "quoted" name`,
		`text/plain; ; =broken; charset=us-ascii;`:        "text/plain charset=us-ascii",
		`application/x; name*=utf-8''%E2%82%AC%zz`:        "application/x name=€%zz",
		`application/x; name*1="b"; name*0="a"`:           "application/x name=ab",
		`application/x; name*0="a"; name*2="c"`:           "application/x name=a",
	} {
		typ, params := parseMediaValue(in)
		got := typ
		for _, k := range []string{"charset", "name"} {
			if v, ok := params[k]; ok {
				got += " " + k + "=" + v
			}
		}
		if got != want {
			t.Errorf("%s: got %q, want %q", in, got, want)
		}
	}
}

func TestPartHeaderWithoutBlankLine(t *testing.T) {
	m := parse(t, `From: a@ext.example
Subject: no blank line
Content-Type: multipart/mixed; boundary=XX

--XX
Content-Type: text/plain
Here is the text, straight after its header.
--XX
Content-Type: application/pdf; name=q3.pdf
Content-Transfer-Encoding: base64
JVBERi0xLjQK
--XX--
`)
	if shown(m) != "Here is the text, straight after its header.\n" {
		t.Fatalf("text: %q", shown(m))
	}
	if f := files(m); len(f) != 1 || f[0] != "application/pdf q3.pdf" {
		t.Fatalf("files: %q", f)
	}
	var got []byte
	if err := OpenPart(strings.NewReader(crlf(`From: a@ext.example
Content-Type: multipart/mixed; boundary=XX

--XX
Content-Type: text/plain
Here is the text, straight after its header.
--XX
Content-Type: application/pdf; name=q3.pdf
Content-Transfer-Encoding: base64
JVBERi0xLjQK
--XX--
`)), 1, func(p Part, r io.Reader) error { got, _ = io.ReadAll(r); return nil }); err != nil || string(got) != "%PDF-1.4\n" {
		t.Fatalf("download: %q, %v", got, err)
	}
}

func TestNestedPartsSharingABoundary(t *testing.T) {
	m := parse(t, `From: a@ext.example
Subject: shared
Content-Type: multipart/mixed; boundary="same"

preamble, not shown
--same
Content-Type: multipart/alternative; boundary="same"

--same
Content-Type: text/plain

The plain version.
--same
Content-Type: text/html

<p>The <b>HTML</b> version.</p>
--same--

--same
Content-Type: image/gif; name=logo.gif
Content-Disposition: attachment
Content-Transfer-Encoding: base64

R0lGODlhAQABAAAAACw=
--same--
epilogue, not shown
`)
	if len(m.Sections) != 1 || !m.Sections[0].IsHTML() || m.Sections[0].HTML != "<p>The <b>HTML</b> version.</p>" || m.Sections[0].Text != "The plain version.\n" {
		t.Fatalf("sections: %+v", m.Sections)
	}
	if f := files(m); len(f) != 1 || f[0] != "image/gif logo.gif" {
		t.Fatalf("files: %q", f)
	}
	if m.Text != "The plain version.\n" {
		t.Fatalf("text for replies: %q", m.Text)
	}
}

func TestAlternativeShowsTheLastPartItCan(t *testing.T) {
	// RFC 2046 §5.1.4: the last alternative that can be shown, skipping
	// one that cannot (a calendar attachment) or is empty.
	m := parse(t, `From: a@ext.example
Content-Type: multipart/alternative; boundary=b

--b
Content-Type: text/plain

plain
--b
Content-Type: multipart/related; boundary=r

--r
Content-Type: text/html

<img src="cid:logo@ext"> rich
--r
Content-Type: image/png
Content-ID: <logo@ext>

PNG
--r--
--b
Content-Type: application/ms-tnef

TNEF
--b
Content-Type: text/plain

--b--
`)
	if len(m.Sections) != 1 || !m.Sections[0].IsHTML() || !strings.Contains(m.Sections[0].HTML, "rich") || m.Sections[0].Text != "plain\n" {
		t.Fatalf("sections: %+v", m.Sections)
	}
	// The image the HTML shows is not a file; the TNEF blob is.
	if f := files(m); len(f) != 1 || f[0] != "application/ms-tnef " {
		t.Fatalf("files: %q", f)
	}
}

func TestTextPartsShownInline(t *testing.T) {
	m := parse(t, `From: a@ext.example
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 with a soft=
 break and =3D sign, a lone = and =zz.  
--b
Content-Type: text/plain; charset=iso-8859-1
Content-Disposition: inline; filename="notes.txt"
Content-Transfer-Encoding: base64

Tm90aXplbiBm/HIgZGllIFNpdHp1bmc=
--b
Content-Type: text/x-diff

-old
+new
--b
Content-Type: text/plain
Content-Disposition: attachment; filename="log.txt"

only a download
--b--
`)
	want := []string{"Café with a soft break and = sign, a lone = and =zz.\n", "Notizen für die Sitzung\n", "-old\n+new\n"}
	if len(m.Sections) != len(want) {
		t.Fatalf("sections: %+v", m.Sections)
	}
	for i, w := range want {
		if m.Sections[i].Text != w {
			t.Errorf("section %d: %q, want %q", i, m.Sections[i].Text, w)
		}
	}
	if f := files(m); strings.Join(f, ",") != "text/plain notes.txt,text/plain log.txt" {
		t.Fatalf("files: %q", f)
	}
}

func TestUnrecoverableStructureIsShownRaw(t *testing.T) {
	for name, msg := range map[string]string{
		"boundary never comes": "From: a@ext.example\nContent-Type: multipart/mixed; boundary=\"expected\"\n\n--other\nContent-Type: text/plain\n\nhello\n--other--\n",
		"no boundary":          "From: a@ext.example\nContent-Type: multipart/alternative;\n\nhello there\n",
	} {
		m := parse(t, msg)
		if !m.Raw || len(m.Sections) != 1 || !m.Sections[0].Raw || !strings.Contains(m.Sections[0].Text, "hello") {
			t.Errorf("%s: %+v", name, m.Sections)
		}
		if len(files(m)) != 0 {
			t.Errorf("%s: files %q", name, files(m))
		}
	}
}

func TestEnclosedMessagesAreShown(t *testing.T) {
	m := parse(t, `From: list@ext.example
Subject: digest
Content-Type: multipart/digest; boundary=d

--d

From: bob@ext.example
Subject: first
Date: Mon, 1 Jun 2026 10:00:00 +0000

one
--d
Content-Type: message/rfc822
Content-Transfer-Encoding: base64

U3ViamVjdDogc2Vjb25kDQoNCnR3bw0K
--d--
`)
	var got []string
	for _, s := range m.Sections {
		if s.IsMessage() {
			got = append(got, "msg:"+s.Header.Subject)
		} else {
			got = append(got, s.Text)
		}
	}
	if strings.Join(got, "|") != "msg:first|one\n|msg:second|two\n" {
		t.Fatalf("sections: %q", got)
	}
	if !strings.Contains(m.Text, "Subject: first\n") || !strings.Contains(m.Text, "two") {
		t.Fatalf("text: %q", m.Text)
	}
}

func TestHTMLOnlyIsQuotedAsText(t *testing.T) {
	m := parse(t, "From: a@ext.example\nContent-Type: text/html\n\n<html><head><style>p{color:red}</style><title>T</title></head><body><p>Hello <b>Alice</b>,</p><p>the   numbers:</p><pre>1  2\n3  4</pre><script>x()</script></body></html>\n")
	if m.HTML == "" || m.Text != "Hello Alice,\n\nthe numbers:\n\n1  2\n3  4\n" {
		t.Fatalf("text: %q", m.Text)
	}
}

func TestCharsetsAndDamagedEncodings(t *testing.T) {
	m := parse(t, "From: =?iso-8859-1?q?J=F6rg?= <j@ext.example>\nSubject: =?utf-8?B?R3LDvMOfZQ==?=\nContent-Type: text/plain; charset=unknown-8bit\nContent-Transfer-Encoding: base64\n\nR3L8\n!!!w59lIGF1cyBL9mxu\n")
	if m.From != "Jörg <j@ext.example>" || m.Subject != "Grüße" {
		t.Fatalf("header: %q %q", m.From, m.Subject)
	}
	// Not UTF-8 and no known charset: read as Windows-1252.
	if shown(m) != "Grü\u00c3\u0178e aus Köln\n" {
		t.Fatalf("text: %q", shown(m))
	}
	m = parse(t, "From: x@ext.example\nSubject: Gr\xfc\xdfe\nContent-Type: text/plain; charset=koi8-r\n\n\xf0\xd2\xc9\xd7\xc5\xd4\n")
	if m.Subject != "Grüße" || shown(m) != "Привет\n" {
		t.Fatalf("8-bit header %q, koi8-r text %q", m.Subject, shown(m))
	}
}

func TestPartNumbersAgreeWithOpenPart(t *testing.T) {
	raw := crlf(`From: a@ext.example
Content-Type: multipart/mixed; boundary=o

--o
Content-Type: text/plain

body
--o
Content-Type: message/rfc822

Subject: inner
Content-Type: multipart/mixed; boundary=i

--i
Content-Type: application/octet-stream; name=a.bin

AAA
--i
Content-Type: application/octet-stream; name=b.bin

BBB
--i--
--o
Content-Type: application/octet-stream; name=c.bin

CCC
--o--
`)
	m, err := Parse(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	names := map[int]string{}
	for _, p := range m.Parts {
		names[p.Index] = p.Filename
	}
	for i, want := range map[int]string{1: "a.bin", 2: "b.bin", 3: "c.bin"} {
		if names[i] != want {
			t.Fatalf("part %d is %q, want %q: %+v", i, names[i], want, m.Parts)
		}
		var body []byte
		err := OpenPart(strings.NewReader(raw), i, func(p Part, r io.Reader) error {
			if p.Filename != want {
				t.Errorf("OpenPart %d gives %q", i, p.Filename)
			}
			body, _ = io.ReadAll(r)
			return nil
		})
		if err != nil || string(body) != strings.ToUpper(want[:1])+strings.ToUpper(want[:1])+strings.ToUpper(want[:1]) {
			t.Errorf("part %d: %q, %v", i, body, err)
		}
	}
	if err := OpenPart(strings.NewReader(raw), 4, func(Part, io.Reader) error { return nil }); err != ErrNoPart {
		t.Fatalf("part 4: %v", err)
	}
}

func TestLimitsHoldAgainstHostileNesting(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("From: a@ext.example\r\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=n%d\r\n\r\n--n%d\r\n", i, i)
	}
	b.WriteString("\r\ndeep\r\n")
	m, err := Parse(&b)
	if err != nil || len(m.Parts) != 1 {
		t.Fatalf("deep nesting: %v, %d parts", err, len(m.Parts))
	}
	b.Reset()
	b.WriteString("Content-Type: multipart/mixed; boundary=p\r\n\r\n")
	for i := 0; i < maxParts+50; i++ {
		b.WriteString("--p\r\nContent-Type: application/x-y\r\n\r\nz\r\n")
	}
	m, err = Parse(&b)
	if err != nil || len(m.Parts) != maxParts || !m.Truncated {
		t.Fatalf("many parts: %v, %d parts, truncated %v", err, len(m.Parts), m.Truncated)
	}
}

// failingReader fails after its bytes, as a body fetched from a peer can.
type failingReader struct{ r io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, io.ErrClosedPipe
	}
	return n, err
}

func TestReadErrorsAreErrors(t *testing.T) {
	if _, err := Parse(&failingReader{strings.NewReader("Subject: x\r\n\r\nbody\r\n")}); err == nil {
		t.Fatal("a failed read gave no error")
	}
}

func TestBlankLinesAroundTextAreDropped(t *testing.T) {
	m := parse(t, "Subject: x\n\n\n \n  indented first line\nmore\n\n\t\n")
	if len(m.Sections) != 1 || m.Sections[0].Text != "  indented first line\nmore\n" {
		t.Fatalf("sections: %+v", m.Sections)
	}
}
