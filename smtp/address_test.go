package smtp

import (
	"errors"
	"strings"
	"testing"
)

func protectedSet(domains ...string) func(string) (bool, error) {
	set := map[string]bool{}
	for _, d := range domains {
		set[d] = true
	}
	return func(d string) (bool, error) { return set[d], nil }
}

func TestParseRecipient(t *testing.T) {
	prot := protectedSet("protected.test", "xn--bcher-kva.test", "localhost")
	cases := []struct {
		addr     string
		utf8     bool
		code     int
		wantAddr string
	}{
		{"user@protected.test", false, 0, "user@protected.test"},
		{"User@PROTECTED.Test", false, 0, "User@protected.test"},
		{"user@protected.test.", false, 0, "user@protected.test"},
		{"a.b-c+d_e'f/g=h?i^j`k{l|m}n~o#p$q&r*s@protected.test", false, 0, "a.b-c+d_e'f/g=h?i^j`k{l|m}n~o#p$q&r*s@protected.test"},
		{"user@xn--bcher-kva.test", false, 0, "user@xn--bcher-kva.test"},
		{"user@localhost", false, 0, "user@localhost"},
		{"jörg@protected.test", true, 0, "jörg@protected.test"},
		{"jörg@protected.test", false, 553, ""},
		{"user@bücher.test", true, 554, ""},
		{"", false, 501, ""},
		{"@", false, 501, ""},
		{"@protected.test", false, 501, ""},
		{"user@", false, 501, ""},
		{"user", false, 501, ""},
		{"user@protected.test..", false, 554, ""},
		{"user@.", false, 554, ""},
		{"user@protected.test.evil", false, 554, ""},
		{"user@evil-protected.test", false, 554, ""},
		{"user%evil@protected.test", false, 554, ""},
		{"evil!user@protected.test", false, 554, ""},
		{"user@evil@protected.test", false, 554, ""},
		{"user@[192.0.2.1]", false, 554, ""},
		{"user@[protected.test]", false, 554, ""},
		{"us er@protected.test", false, 501, ""},
		{"us\"er@protected.test", false, 501, ""},
		{"us(er)@protected.test", false, 501, ""},
		{"us\x00er@protected.test", false, 501, ""},
		{"us\xffer@protected.test", true, 501, ""},
		{"user@protected.test\x00", false, 554, ""},
		{"user@" + string(make([]byte, 300)), false, 501, ""},
		// RFC 5321 §4.1.2 quoted strings keep their form; RFC 5321
		// §4.5.3.1.1/.2 limit the parts.
		{`"john smith"@protected.test`, false, 0, `"john smith"@protected.test`},
		{`"john\ smith"@protected.test`, false, 0, `"john smith"@protected.test`},
		{`"john.doe"@protected.test`, false, 0, "john.doe@protected.test"},
		{`"a\"b\\c"@protected.test`, false, 0, `"a\"b\\c"@protected.test`},
		{`"John Smith"@Protected.Test`, false, 0, `"John Smith"@protected.test`},
		{`""@protected.test`, false, 501, ""},
		{`"ab"@protected.test`, false, 501, ""},
		{`"user@evil.test"@protected.test`, false, 554, ""},
		{`"ü x"@protected.test`, false, 553, ""},
		{`"ü x"@protected.test`, true, 0, `"ü x"@protected.test`},
		{strings.Repeat("a", 64) + "@protected.test", false, 0, strings.Repeat("a", 64) + "@protected.test"},
		{strings.Repeat("a", 65) + "@protected.test", false, 501, ""},
		{`"` + strings.Repeat("a b", 20) + `cd"@protected.test`, false, 0, `"` + strings.Repeat("a b", 20) + `cd"@protected.test`},
		{`"` + strings.Repeat("a b", 22) + `"@protected.test`, false, 501, ""},
		{"user@" + strings.Repeat("a.", 127) + "bc", false, 501, ""},
	}
	for _, tc := range cases {
		r, err := ParseRecipient(tc.addr, tc.utf8, prot)
		if tc.code == 0 {
			if err != nil || r.Address != tc.wantAddr {
				t.Errorf("%q: got %+v, %v; want %s", tc.addr, r, err, tc.wantAddr)
			}
			continue
		}
		var se *Reply
		if !errors.As(err, &se) || se.Code != tc.code {
			t.Errorf("%q: got %+v, %v; want %d", tc.addr, r, err, tc.code)
		}
	}

	_, err := ParseRecipient("u@protected.test", false, func(string) (bool, error) { return false, errors.New("x") })
	var se *Reply
	if !errors.As(err, &se) || se.Code != 451 {
		t.Errorf("lookup failure: %v", err)
	}
}
