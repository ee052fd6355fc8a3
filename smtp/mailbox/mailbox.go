// Package mailbox reads and writes the RFC 5321 §4.1.2 form of a mailbox,
// local-part "@" domain, where the local part is a Dot-string or a
// Quoted-string. The MX, the outbound client and the DSN composer share it,
// so an address keeps one exact form from RCPT to storage, delivery and
// notice.
package mailbox

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Limits of RFC 5321 §4.5.3.1.
const (
	MaxLocal  = 64  // §4.5.3.1.1, octets of the local part
	MaxDomain = 255 // §4.5.3.1.2, octets of the domain
	MaxPath   = 256 // §4.5.3.1.3, octets of a path, angle brackets included
)

// Mailbox is one parsed address.
type Mailbox struct {
	// Local is the local part in canonical form: as a Dot-string when its
	// content is one, else as a Quoted-string with only '"' and '\'
	// escaped. RFC 5321 §4.1.2 makes both spellings the same mailbox, and
	// §2.4 makes its case significant, so Local is compared exactly.
	Local string
	// Content is the local part with quotes and escapes undone.
	Content string
	// Quoted: the local part needs the Quoted-string form.
	Quoted bool
	// Domain is as given: a host name, an address literal, or whatever
	// else followed the '@'; the caller judges it.
	Domain string
}

// String is the mailbox in the form it travels in: Local "@" Domain.
func (m Mailbox) String() string { return m.Local + "@" + m.Domain }

// Syntax errors.
var (
	ErrEmpty     = errors.New("empty address")
	ErrNoDomain  = errors.New("address has no domain")
	ErrLocal     = errors.New("local part is neither a dot-string nor a quoted-string")
	ErrQuote     = errors.New("unterminated or malformed quoted-string")
	ErrLocalLen  = errors.New("local part longer than 64 octets")
	ErrDomainLen = errors.New("domain longer than 255 octets")
	ErrUTF8      = errors.New("address is not valid UTF-8")
)

// Parse reads a mailbox (no angle brackets, no source route). UTF-8 is
// accepted in the local part as RFC 6531 §3.3 allows; whether the
// transaction may carry it is the caller's question.
func Parse(s string) (Mailbox, error) {
	var m Mailbox
	if s == "" {
		return m, ErrEmpty
	}
	if !utf8.ValidString(s) {
		return m, ErrUTF8
	}
	var rest string
	given := 0 // octets of the local part as written
	if s[0] == '"' {
		content, n, err := unquote(s)
		if err != nil {
			return m, err
		}
		m.Content, rest, given = content, s[n:], n
	} else {
		at := strings.IndexByte(s, '@')
		if at < 0 {
			return m, ErrNoDomain
		}
		m.Content, rest, given = s[:at], s[at:], at
		if !IsDotString(m.Content) {
			return m, ErrLocal
		}
	}
	if m.Content == "" {
		return m, ErrLocal
	}
	if !strings.HasPrefix(rest, "@") {
		return m, ErrNoDomain
	}
	m.Domain = rest[1:]
	if m.Domain == "" {
		return m, ErrNoDomain
	}
	m.Local, m.Quoted = Quote(m.Content)
	// The limit applies to the local part as sent; the canonical form is
	// never longer.
	if given > MaxLocal {
		return m, ErrLocalLen
	}
	if len(m.Domain) > MaxDomain {
		return m, ErrDomainLen
	}
	return m, nil
}

// unquote reads the Quoted-string at the start of s and returns its
// content and the octets it took.
func unquote(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i + 1, nil
		case c == '\\':
			// quoted-pairSMTP = "\" followed by any ASCII graphic or space.
			if i+1 >= len(s) || s[i+1] < 0x20 || s[i+1] > 0x7e {
				return "", 0, ErrQuote
			}
			i++
			b.WriteByte(s[i])
		case c >= 0x80:
			// RFC 6531 §3.3 adds UTF8-non-ascii to qtextSMTP; the whole
			// string was checked to be valid UTF-8.
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			return "", 0, ErrQuote
		default:
			// qtextSMTP: %d32-33 / %d35-91 / %d93-126
			b.WriteByte(c)
		}
	}
	return "", 0, ErrQuote
}

// Quote returns content as a local part: itself when it is a Dot-string,
// otherwise a Quoted-string. quoted says which. RFC 5321 §4.1.2 asks
// senders not to quote what needs no quoting, so this form is the one
// that is stored and sent on.
func Quote(content string) (local string, quoted bool) {
	if IsDotString(content) {
		return content, false
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(content); i++ {
		if c := content[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(content[i])
	}
	b.WriteByte('"')
	return b.String(), true
}

// IsDotString reports whether s is an RFC 5321 §4.1.2 Dot-string: atoms of
// atext joined by single dots, with RFC 6531 §3.3 UTF-8 allowed in atoms.
func IsDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && c < 0x80 && !IsAtext(c) {
			return false
		}
	}
	return true
}

// IsAtext is RFC 5322 §3.2.3 atext (ASCII only).
func IsAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// SplitPath finds the path at the start of arg, as a MAIL FROM: or RCPT
// TO: argument gives it, and returns what is inside the angle brackets and
// what follows (the ESMTP parameters). Like Postfix, it also takes a path
// without brackets, which then ends at the first space. A '>' or space
// inside a quoted local part does not end the path.
func SplitPath(arg string) (path, rest string, bracketed, ok bool) {
	arg = strings.TrimLeft(arg, " ")
	bracketed = strings.HasPrefix(arg, "<")
	start := 0
	if bracketed {
		start = 1
	}
	inQuote := false
	for i := start; i < len(arg); i++ {
		c := arg[i]
		switch {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case bracketed && c == '>':
			return arg[1:i], arg[i+1:], true, true
		case !bracketed && c == ' ':
			return arg[:i], arg[i:], false, true
		}
	}
	if bracketed || inQuote {
		return "", "", bracketed, false
	}
	return arg, "", false, true
}

// StripRoute drops an RFC 5321 §4.1.2 A-d-l source route ("@a,@b:") from
// the front of a path. §4.1.1.3 and Appendix C tell a server to accept the
// syntax and ignore the route.
func StripRoute(path string) (string, bool) {
	if !strings.HasPrefix(path, "@") {
		return path, true
	}
	i := strings.IndexByte(path, ':')
	if i < 0 {
		return "", false
	}
	for _, hop := range strings.Split(path[:i], ",") {
		if len(hop) < 2 || hop[0] != '@' || strings.ContainsAny(hop[1:], "@\" <>") {
			return "", false
		}
	}
	return path[i+1:], true
}

// Valid reports whether s is a mailbox that can stand between angle
// brackets in a command or a header field: it parses, and its domain has
// no space, control character, bracket or quote that would end the path.
func Valid(s string) bool {
	m, err := Parse(s)
	if err != nil {
		return false
	}
	for i := 0; i < len(m.Domain); i++ {
		if c := m.Domain[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' {
			return false
		}
	}
	return true
}
