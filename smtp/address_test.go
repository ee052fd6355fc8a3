package smtp

import (
	"errors"
	"testing"

	gosmtp "github.com/emersion/go-smtp"
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
		{"", false, 554, ""},
		{"@", false, 554, ""},
		{"@protected.test", false, 554, ""},
		{"user@", false, 554, ""},
		{"user", false, 554, ""},
		{"user@protected.test..", false, 554, ""},
		{"user@.", false, 554, ""},
		{"user@protected.test.evil", false, 554, ""},
		{"user@evil-protected.test", false, 554, ""},
		{"user%evil@protected.test", false, 554, ""},
		{"evil!user@protected.test", false, 554, ""},
		{"user@evil@protected.test", false, 554, ""},
		{"user@[192.0.2.1]", false, 554, ""},
		{"user@[protected.test]", false, 554, ""},
		{"us er@protected.test", false, 554, ""},
		{"us\"er@protected.test", false, 554, ""},
		{"us(er)@protected.test", false, 554, ""},
		{"us\x00er@protected.test", false, 554, ""},
		{"us\xffer@protected.test", true, 554, ""},
		{"user@protected.test\x00", false, 554, ""},
		{"user@" + string(make([]byte, 300)), false, 554, ""},
	}
	for _, tc := range cases {
		r, err := ParseRecipient(tc.addr, tc.utf8, prot)
		if tc.code == 0 {
			if err != nil || r.Address != tc.wantAddr {
				t.Errorf("%q: got %+v, %v; want %s", tc.addr, r, err, tc.wantAddr)
			}
			continue
		}
		var se *gosmtp.SMTPError
		if !errors.As(err, &se) || se.Code != tc.code {
			t.Errorf("%q: got %+v, %v; want %d", tc.addr, r, err, tc.code)
		}
	}

	_, err := ParseRecipient("u@protected.test", false, func(string) (bool, error) { return false, errors.New("x") })
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 {
		t.Errorf("lookup failure: %v", err)
	}
}
