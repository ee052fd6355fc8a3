package outbound

import (
	"fmt"
	"strings"
)

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// xtext encodes s per RFC 3461 §4: "!" to "~" stand for themselves except
// "+" and "=", everything else is "+" and two upper-case hex digits.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "+%02X", c)
		}
	}
	return b.String()
}

// utf8AddrXtext encodes an address per RFC 6533 §3 utf-8-addr-xtext,
// which is valid whether or not the server speaks SMTPUTF8: printable
// ASCII except "+", "=" and "\" stands for itself, everything else is
// \x{HEX} of the code point.
func utf8AddrXtext(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '!' && r <= '~' && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\x{%02X}`, r)
		}
	}
	return b.String()
}

// notifyParam validates RFC 3461 §4.1 NOTIFY: NEVER alone, or a set of
// SUCCESS, FAILURE, DELAY. Anything else is dropped rather than sent,
// since a malformed parameter would get the recipient refused.
func notifyParam(notify []string) string {
	if len(notify) == 0 {
		return ""
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range notify {
		n = strings.ToUpper(strings.TrimSpace(n))
		switch n {
		case "NEVER", "SUCCESS", "FAILURE", "DELAY":
		default:
			return ""
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	if seen["NEVER"] && len(out) > 1 {
		return ""
	}
	return strings.Join(out, ",")
}

// orcptParam encodes the RFC 3461 §4.2 ORCPT from its decoded form
// "type;address". A non-ASCII address goes as RFC 6533 "utf-8" type.
func orcptParam(orcpt string) string {
	typ, addr, ok := strings.Cut(orcpt, ";")
	if !ok {
		typ, addr = "rfc822", orcpt
	}
	typ, addr = strings.TrimSpace(typ), strings.TrimSpace(addr)
	if addr == "" || typ == "" || !isPrintableASCII(typ) || strings.ContainsAny(typ, " +=") {
		return ""
	}
	if strings.EqualFold(typ, "utf-8") || !isASCII(addr) {
		return "utf-8;" + utf8AddrXtext(addr)
	}
	return typ + ";" + xtext(addr)
}
