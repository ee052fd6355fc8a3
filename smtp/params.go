package smtp

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"lifeline/smtp/mailbox"
)

// Parsing of MAIL FROM: and RCPT TO: arguments: the path (RFC 5321
// §4.1.2) and the ESMTP parameters (§4.1.2 Mail-parameters,
// Rcpt-parameters).

// pathReply is a path we cannot read: RFC 5321 §4.5.3.1.10 and Postfix
// answer 501, with RFC 3463's X.1.7 (sender) or X.1.3 (recipient).
func pathReply(status, what string, err error) *Reply {
	return newReply(501, status, "Error: bad "+what+" address syntax: "+err.Error())
}

// parseReversePath reads "<>" or a path. It returns the sender with its
// local part in canonical form (mailbox.Quote) and the parameters.
func parseReversePath(arg string) (string, string, *Reply) {
	path, rest, _, ok := mailbox.SplitPath(arg)
	if !ok {
		return "", "", newReply(501, "5.1.7", "Syntax: MAIL FROM:<address>")
	}
	if path == "" {
		return "", rest, nil // the null reverse-path, RFC 5321 §4.5.5
	}
	if len(path)+2 > mailbox.MaxPath {
		// RFC 5321 §4.5.3.1.3: a path is at most 256 octets.
		return "", "", newReply(501, "5.1.7", "Error: sender path too long")
	}
	p, ok := mailbox.StripRoute(path)
	if !ok {
		return "", "", pathReply("5.1.7", "sender", errBadRoute)
	}
	m, err := mailbox.Parse(p)
	if err != nil {
		return "", "", pathReply("5.1.7", "sender", err)
	}
	return m.String(), rest, nil
}

// parseForwardPath reads the path of a RCPT, strips a source route and
// returns the mailbox as written (ParseRecipient judges it), or
// "postmaster" for the bare <Postmaster>.
func parseForwardPath(arg string) (string, string, *Reply) {
	path, rest, _, ok := mailbox.SplitPath(arg)
	if !ok || path == "" {
		return "", "", newReply(501, "5.1.3", "Syntax: RCPT TO:<address>")
	}
	if len(path)+2 > mailbox.MaxPath {
		// RFC 5321 §4.5.3.1.3: a path is at most 256 octets.
		return "", "", newReply(501, "5.1.3", "Error: recipient path too long")
	}
	if isPostmaster(path) {
		return path, rest, nil
	}
	p, ok := mailbox.StripRoute(path)
	if !ok {
		return "", "", pathReply("5.1.3", "recipient", errBadRoute)
	}
	return p, rest, nil
}

var errBadRoute = errors.New("malformed source route")

// params splits ESMTP parameters: keyword ["=" value], separated by
// spaces; keywords are case-insensitive (RFC 5321 §4.1.2 esmtp-param).
func params(s string) (map[string]string, *Reply) {
	out := map[string]string{}
	for _, f := range strings.Fields(s) {
		k, v, hasValue := strings.Cut(f, "=")
		k = strings.ToUpper(k)
		if !validKeyword(k) || (hasValue && !validValue(v)) {
			return nil, newReply(501, "5.5.4", "Error: malformed parameter "+printable(f))
		}
		if _, dup := out[k]; dup {
			return nil, newReply(501, "5.5.4", "Error: parameter "+k+" given twice")
		}
		out[k] = v
	}
	return out, nil
}

// validKeyword is RFC 5321 esmtp-keyword: (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
func validKeyword(k string) bool {
	if k == "" || k[0] == '-' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validValue is RFC 5321 esmtp-value, %d33-60 / %d62-126, with RFC 6531
// §3.3 UTF-8 allowed.
func validValue(v string) bool {
	if v == "" || !utf8.ValidString(v) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 33 || c == '=' || c == 0x7f {
			return false
		}
	}
	return true
}

// unsupported is RFC 5321 §4.1.1.11: a parameter we do not recognise or
// implement gets 555.
func unsupported(k string) *Reply {
	return newReply(555, "5.5.4", "Error: unsupported parameter "+printable(k))
}

func badValue(k string) *Reply {
	return newReply(501, "5.5.4", "Error: malformed "+k+" parameter")
}

type mailOptions struct {
	size  int64
	body  string // "7BIT", "8BITMIME" or ""
	utf8  bool
	ret   string // "FULL", "HDRS" or ""
	envID string
}

func parseMailParams(s string) (mailOptions, *Reply) {
	var o mailOptions
	ps, err := params(s)
	if err != nil {
		return o, err
	}
	for k, v := range ps {
		switch k {
		case "SIZE": // RFC 1870 §3
			n, perr := strconv.ParseUint(v, 10, 63)
			if perr != nil {
				if ne, ok := perr.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && strings.Trim(v, "0123456789") == "" {
					return o, errTooBig // a size past 2^63 is past any limit
				}
				return o, badValue(k)
			}
			o.size = int64(n)
		case "BODY": // RFC 6152 §2
			switch v = strings.ToUpper(v); v {
			case "7BIT", "8BITMIME":
				o.body = v
			case "BINARYMIME":
				return o, unsupported("BODY=BINARYMIME")
			default:
				return o, badValue(k)
			}
		case "SMTPUTF8": // RFC 6531 §3.4: no value
			if v != "" {
				return o, badValue(k)
			}
			o.utf8 = true
		case "RET": // RFC 3461 §4.3
			switch v = strings.ToUpper(v); v {
			case "FULL", "HDRS":
				o.ret = v
			default:
				return o, badValue(k)
			}
		case "ENVID": // RFC 3461 §4.4: xtext of printable ASCII, at most 100
			d, ok := decodeXtext(v)
			if !ok || d == "" || len(d) > 100 || !isPrintableASCII(d) {
				return o, badValue(k)
			}
			o.envID = d
		default:
			// AUTH= included: the MX offers no AUTH (RFC 4954 §5).
			return o, unsupported(k)
		}
	}
	return o, nil
}

type rcptOptions struct {
	notify []string
	orcpt  string // "TYPE;address", decoded
}

func parseRcptParams(s string) (rcptOptions, *Reply) {
	var o rcptOptions
	ps, err := params(s)
	if err != nil {
		return o, err
	}
	for k, v := range ps {
		switch k {
		case "NOTIFY": // RFC 3461 §4.1
			seen := map[string]bool{}
			for _, n := range strings.Split(strings.ToUpper(v), ",") {
				switch n {
				case "NEVER", "SUCCESS", "FAILURE", "DELAY":
				default:
					return o, newReply(501, "5.5.4", "Error: malformed NOTIFY parameter")
				}
				if seen[n] {
					return o, newReply(501, "5.5.4", "Error: malformed NOTIFY parameter")
				}
				seen[n] = true
				o.notify = append(o.notify, n)
			}
			// NEVER must stand alone.
			if seen["NEVER"] && len(seen) > 1 {
				return o, newReply(501, "5.5.4", "Error: malformed NOTIFY parameter")
			}
		case "ORCPT": // RFC 3461 §4.2: addr-type ";" xtext
			typ, addr, ok := strings.Cut(v, ";")
			typ = strings.ToUpper(typ)
			var d string
			switch typ {
			case "RFC822":
				d, ok = decodeXtext(addr)
				ok = ok && isPrintableASCII(d)
			case "UTF-8":
				// RFC 6533 §3: utf-8-addr-xtext or utf-8-addr-unitext.
				d, ok = decodeUTF8AddrText(addr)
			default:
				ok = false
			}
			if !ok || d == "" {
				return o, newReply(501, "5.5.4", "Error: malformed ORCPT parameter")
			}
			o.orcpt = typ + ";" + d
		default:
			return o, unsupported(k)
		}
	}
	return o, nil
}

// decodeXtext undoes RFC 3461 §4 xtext: "+" and two hex digits stand for
// an octet; other characters are themselves (xchar: graphic ASCII but "+"
// and "=").
func decodeXtext(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", false
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			b.WriteByte(byte(v))
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// decodeUTF8AddrText undoes RFC 6533 §3 utf-8-addr-xtext and
// utf-8-addr-unitext: "\x{HEX}" stands for a code point; other graphic
// ASCII but "+", "=" and "\" stands for itself, and so (unitext) does
// UTF-8.
func decodeUTF8AddrText(s string) (string, bool) {
	if !utf8.ValidString(s) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			rest, ok := strings.CutPrefix(s[i:], `\x{`)
			end := strings.IndexByte(rest, '}')
			if !ok || end < 1 || end > 6 {
				return "", false
			}
			v, err := strconv.ParseUint(rest[:end], 16, 32)
			if err != nil || !utf8.ValidRune(rune(v)) {
				return "", false
			}
			b.WriteRune(rune(v))
			i += len(`\x{`) + end
		case c >= 0x80:
			b.WriteByte(c)
		case c < '!' || c > '~' || c == '+' || c == '=':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
