package mailbox

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in, local, content string
		quoted             bool
		err                error
	}{
		{in: "user@x.example", local: "user", content: "user"},
		{in: `"john smith"@x.example`, local: `"john smith"`, content: "john smith", quoted: true},
		{in: `"john\ smith"@x.example`, local: `"john smith"`, content: "john smith", quoted: true},
		{in: `"john.doe"@x.example`, local: "john.doe", content: "john.doe"},
		{in: `"a\"b\\c"@x.example`, local: `"a\"b\\c"`, content: `a"b\c`, quoted: true},
		{in: `"a@b"@x.example`, local: `"a@b"`, content: "a@b", quoted: true},
		{in: `"ü b"@x.example`, local: `"ü b"`, content: "ü b", quoted: true},
		{in: "", err: ErrEmpty},
		{in: "user", err: ErrNoDomain},
		{in: "user@", err: ErrNoDomain},
		{in: `"user"`, err: ErrNoDomain},
		{in: `"user"x@y`, err: ErrNoDomain},
		{in: "us er@x", err: ErrLocal},
		{in: ".user@x", err: ErrLocal},
		{in: `""@x`, err: ErrLocal},
		{in: `"unterminated@x`, err: ErrQuote},
		{in: "\"a\x00\"@x", err: ErrQuote},
		{in: "\"a\\\x01\"@x", err: ErrQuote},
		{in: "u\xff@x", err: ErrUTF8},
		{in: strings.Repeat("a", 65) + "@x", err: ErrLocalLen},
		{in: `"` + strings.Repeat("a", 63) + `"@x`, err: ErrLocalLen}, // 65 octets as sent
		{in: "a@" + strings.Repeat("b", 256), err: ErrDomainLen},
	}
	for _, tc := range cases {
		m, err := Parse(tc.in)
		if err != tc.err {
			t.Errorf("%q: error %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && (m.Local != tc.local || m.Content != tc.content || m.Quoted != tc.quoted || m.Domain != "x.example") {
			t.Errorf("%q: %+v", tc.in, m)
		}
	}
}

func TestSplitPath(t *testing.T) {
	cases := []struct{ in, path, rest string }{
		{"<a@b> SIZE=1", "a@b", " SIZE=1"},
		{` <"x>y"@b> NOTIFY=NEVER`, `"x>y"@b`, " NOTIFY=NEVER"},
		{"a@b SIZE=1", "a@b", " SIZE=1"},
		{`"a b"@c`, `"a b"@c`, ""},
		{"<>", "", ""},
	}
	for _, tc := range cases {
		path, rest, _, ok := SplitPath(tc.in)
		if !ok || path != tc.path || rest != tc.rest {
			t.Errorf("%q: %q %q %v", tc.in, path, rest, ok)
		}
	}
	for _, bad := range []string{"<a@b", `<"a@b>`, `"a b@c`} {
		if _, _, _, ok := SplitPath(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzMailbox holds that whatever parses comes back from its canonical
// form as the same mailbox, and that the canonical form is valid.
func FuzzMailbox(f *testing.F) {
	for _, s := range []string{"user@x", `"a b"@x`, `"a\"b"@x`, `"a\\b"@x`, `"x.y"@z`, `"@"@x`, "ü@x", `"\ "@x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(m.String())
		if err != nil || again != m {
			t.Fatalf("%q parsed as %+v; its form %q reads back as %+v, %v", s, m, m.String(), again, err)
		}
		if q, _ := Quote(m.Content); q != m.Local {
			t.Fatalf("%q: local %q, quote gives %q", s, m.Local, q)
		}
	})
}
