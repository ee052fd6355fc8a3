package smtp

import (
	"strings"
	"unicode/utf8"

	gosmtp "github.com/emersion/go-smtp"
)

// Address policy for the MX. go-smtp has already parsed the path when we see
// it, and that shapes what we can and cannot tell apart:
//
//   - A source route (<@a,@b:user@c>) is stripped by go-smtp. RFC 5321
//     §4.1.1.3 and Appendix C tell a server to accept the syntax and ignore the
//     route, so we judge only the final mailbox: it is accepted only when its
//     domain is protected, and mail then goes to that domain, never via the
//     route.
//   - A quoted local part reaches us unquoted ("a b"@x arrives as a b@x). We
//     therefore accept only local parts that are a plain RFC 5321 §4.1.2
//     Dot-string; anything that needed quoting is refused like a relay attempt.
//     "john.doe"@x is the same mailbox as john.doe@x and is accepted.
//   - "%", "!" and "@" in the local part are the percent hack, bang paths and
//     nested addresses: routing instructions for some downstream host. We never
//     interpret them and never pass them on (Postfix refuses them for relay in
//     the same way), so they are refused.
//   - The domain must be an ASCII host name (LDH labels). Address literals
//     (user@[127.0.0.1]) are refused: no client is trusted to relay, loopback
//     included. Non-ASCII (U-label) domains are refused too: protected domains
//     are registered in ASCII (A-label) form, and mapping Unicode onto them
//     (IDNA/UTS #46) would add look-alike aliases of protected domains; senders
//     must use the xn-- form.
//   - One trailing dot is the root label of a fully qualified name
//     (protected.com. is protected.com); it is trimmed before the lookup, as
//     Postfix does. Two dots, or empty labels anywhere, are refused.
//   - The domain is matched exactly after lower-casing, so look-alike
//     suffixes and prefixes (evilprotected.com, protected.com.evil.net,
//     sub.protected.com) are different domains and are refused unless they
//     are protected themselves.

// relayDenied is the one answer for every recipient we will not accept as a
// protected mailbox, whatever the trick (docs/design.md §4).
func relayDenied(addr string) *gosmtp.SMTPError {
	return &gosmtp.SMTPError{
		Code:         554,
		EnhancedCode: gosmtp.EnhancedCode{5, 7, 1},
		Message:      "<" + printable(addr) + ">: Relay access denied",
	}
}

// ParseRecipient decides whether addr, a forward-path mailbox as go-smtp
// hands it to Session.Rcpt (source route stripped, quotes removed), may be
// accepted by the MX. smtputf8 tells whether the transaction's MAIL carried
// the SMTPUTF8 parameter. protected is asked about the normalised domain
// (lower case, no trailing dot).
//
// The returned Recipient has Address and Domain set. Errors are
// *gosmtp.SMTPError values ready to send: 554 5.7.1 for anything that is not a
// plain local@protected-domain, 553 5.6.7 for a non-ASCII local part without
// SMTPUTF8, 451 4.3.0 when protected fails.
func ParseRecipient(addr string, smtputf8 bool, protected func(domain string) (bool, error)) (Recipient, error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return Recipient{}, relayDenied(addr)
	}
	local, domain := addr[:at], addr[at+1:]

	domain, ok := normaliseDomain(domain)
	if !ok {
		return Recipient{}, relayDenied(addr)
	}
	if strings.ContainsAny(local, "@%!") {
		return Recipient{}, relayDenied(addr)
	}
	if !utf8.ValidString(local) {
		return Recipient{}, relayDenied(addr)
	}
	if !isASCII(local) && !smtputf8 {
		// RFC 6531 §3.5: a RCPT that needs an ASCII address gets 553 X.6.7.
		return Recipient{}, &gosmtp.SMTPError{
			Code:         553,
			EnhancedCode: gosmtp.EnhancedCode{5, 6, 7},
			Message:      "<" + printable(addr) + ">: Non-ASCII address requires SMTPUTF8",
		}
	}
	if !isDotString(local) {
		return Recipient{}, relayDenied(addr)
	}

	ok, err := protected(domain)
	if err != nil {
		return Recipient{}, errTempFailure
	}
	if !ok {
		return Recipient{}, relayDenied(addr)
	}
	return Recipient{Address: local + "@" + domain, Domain: domain}, nil
}

// normaliseDomain lower-cases d, trims one trailing root dot and checks that
// what remains is an ASCII host name (RFC 5321 §4.1.2 Domain, RFC 1035 §2.3.4
// lengths). Address literals and non-ASCII names fail.
func normaliseDomain(d string) (string, bool) {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return "", false
	}
	d = strings.ToLower(d)
	for label := range strings.SplitSeq(d, ".") {
		if len(label) == 0 || len(label) > 63 {
			return "", false
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return "", false
			}
		}
	}
	return d, true
}

// isDotString reports whether s is an RFC 5321 §4.1.2 Dot-string: atoms of
// atext joined by single dots, with RFC 6531 §3.3 UTF-8 allowed in atoms.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r == '.' || r >= 0x80 || isAtext(byte(r)) {
			continue
		}
		return false
	}
	return true
}

// isAtext is RFC 5322 §3.2.3 atext.
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// checkSender applies the little we require of a reverse path. Senders are
// not a relay risk, and refusing odd but working senders loses mail, so this
// only keeps out what would break a later DSN or a header: control
// characters, invalid UTF-8, and UTF-8 without SMTPUTF8.
func checkSender(from string, smtputf8 bool) error {
	if from == "" {
		return nil // the null reverse-path <>, RFC 5321 §4.5.5
	}
	bad := &gosmtp.SMTPError{
		Code:         553,
		EnhancedCode: gosmtp.EnhancedCode{5, 1, 7},
		Message:      "<" + printable(from) + ">: Sender address rejected: bad syntax",
	}
	at := strings.LastIndexByte(from, '@')
	if at <= 0 || at == len(from)-1 || !utf8.ValidString(from) {
		return bad
	}
	for _, r := range from {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return bad
		}
	}
	if !isASCII(from) && !smtputf8 {
		// RFC 6531 §3.5: a MAIL that needs an ASCII address gets 550 X.6.7.
		return &gosmtp.SMTPError{
			Code:         550,
			EnhancedCode: gosmtp.EnhancedCode{5, 6, 7},
			Message:      "<" + printable(from) + ">: Non-ASCII address requires SMTPUTF8",
		}
	}
	return nil
}

// printable makes client-supplied text safe to echo in a reply line.
func printable(s string) string {
	const max = 256
	var b strings.Builder
	for i, r := range s {
		if i >= max {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			b.WriteByte('?')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
