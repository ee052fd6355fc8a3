package smtp

import (
	"errors"
	"strings"
	"unicode/utf8"

	"lifeline/smtp/mailbox"
)

// Address policy for the MX. The engine (conn.go, params.go) hands us the
// forward path as the client wrote it, source route already dropped:
//
//   - A source route (<@a,@b:user@c>) is ignored: RFC 5321 §4.1.1.3 and
//     Appendix C tell a server to accept the syntax and ignore the route, so
//     we judge only the final mailbox: it is accepted only when its domain
//     is protected, and mail then goes to that domain, never via the route.
//   - The local part is a Dot-string or a Quoted-string (RFC 5321 §4.1.2).
//     A quoted one keeps its quotes through storage, delivery and notices,
//     in the canonical form of mailbox.Quote: "john.doe"@x is john.doe@x,
//     "john smith"@x stays quoted. Its case is kept (§2.4).
//   - "%", "!" and "@" in the local part, quoted or not, are the percent
//     hack, bang paths and nested addresses: routing instructions for some
//     downstream host. We never interpret them and never pass them on
//     (Postfix's allow_untrusted_routing = no refuses them in the same
//     way), so they are refused like any relay attempt.
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
func relayDenied(addr string) *Reply {
	return newReply(554, "5.7.1", "<"+printable(addr)+">: Relay access denied")
}

// ParseRecipient decides whether addr, a mailbox as written in a RCPT
// command (no angle brackets, no source route), may be accepted by the MX.
// smtputf8 tells whether the transaction's MAIL carried the SMTPUTF8
// parameter. protected is asked about the normalised domain (lower case,
// no trailing dot).
//
// The returned Recipient has Address (canonical local part, "@", the
// normalised domain) and Domain set. Errors are *Reply values ready to
// send: 501 5.1.3 for a mailbox that is not RFC 5321 syntax or exceeds its
// lengths (§4.5.3.1.1 local part 64 octets, §4.5.3.1.2 domain 255; §4.5.3.1.10
// names 501 for a path too long), 554 5.7.1 for anything that is not a
// mailbox of a protected domain, 553 5.6.7 for a non-ASCII local part
// without SMTPUTF8, 451 4.3.0 when protected fails.
func ParseRecipient(addr string, smtputf8 bool, protected func(domain string) (bool, error)) (Recipient, error) {
	m, err := mailbox.Parse(addr)
	switch {
	case errors.Is(err, mailbox.ErrNoDomain) || errors.Is(err, mailbox.ErrEmpty):
		return Recipient{}, newReply(501, "5.1.3", "<"+printable(addr)+">: Recipient address lacks a domain")
	case err != nil:
		return Recipient{}, newReply(501, "5.1.3", "<"+printable(addr)+">: Bad recipient address syntax: "+err.Error())
	}
	domain, ok := normaliseDomain(m.Domain)
	if !ok {
		return Recipient{}, relayDenied(addr)
	}
	if strings.ContainsAny(m.Content, "@%!") {
		return Recipient{}, relayDenied(addr)
	}
	if !isASCII(m.Content) && !smtputf8 {
		// RFC 6531 §3.5: a RCPT that needs an ASCII address gets 553 X.6.7.
		return Recipient{}, newReply(553, "5.6.7", "<"+printable(addr)+">: Non-ASCII address requires SMTPUTF8")
	}
	for _, r := range m.Content {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return Recipient{}, newReply(501, "5.1.3", "<"+printable(addr)+">: Bad recipient address syntax")
		}
	}

	ok, perr := protected(domain)
	if perr != nil {
		return Recipient{}, errTempFailure
	}
	if !ok {
		return Recipient{}, relayDenied(addr)
	}
	return Recipient{Address: m.Local + "@" + domain, Domain: domain}, nil
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

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// checkSender applies the little we require of a reverse path, which the
// engine has already parsed (params.go). Senders are not a relay risk, and
// refusing odd but working senders loses mail, so this only keeps out what
// would break a later DSN or a header: control characters, a domain that
// could not stand in a path, and UTF-8 without SMTPUTF8.
func checkSender(from string, smtputf8 bool) *Reply {
	if from == "" {
		return nil // the null reverse-path <>, RFC 5321 §4.5.5
	}
	bad := newReply(553, "5.1.7", "<"+printable(from)+">: Sender address rejected: bad syntax")
	if !mailbox.Valid(from) {
		return bad
	}
	for _, r := range from {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return bad
		}
	}
	if !isASCII(from) && !smtputf8 {
		// RFC 6531 §3.5: a MAIL that needs an ASCII address gets 550 X.6.7.
		return newReply(550, "5.6.7", "<"+printable(from)+">: Non-ASCII address requires SMTPUTF8")
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
