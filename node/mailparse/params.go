package mailparse

import (
	"bytes"
	"io"
	"mime"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding/charmap"
)

// maxParams bounds the parameters and the RFC 2231 pieces kept of one
// field value.
const maxParams = 100

// parseMediaValue reads a Content-Type or Content-Disposition value
// leniently: the value before the first ";" in lower case, and its
// parameters (RFC 2045 §5.1, RFC 2183 §2) with names in lower case. It
// never fails: a damaged parameter is skipped and the rest still read.
// RFC 2231 continuations (name*0, name*1*) are joined and extended values
// (name*=charset'lang'%xx) decoded from whatever charset they name; Go's
// mime.ParseMediaType knows only us-ascii and utf-8 there and refuses the
// whole value otherwise, which loses the boundary of a multipart/signed
// message written that way.
func parseMediaValue(s string) (string, map[string]string) {
	value, rest, _ := strings.Cut(s, ";")
	value = strings.ToLower(strings.TrimSpace(stripComments(value)))
	params := map[string]string{}
	type piece struct {
		v   string
		ext bool
	}
	pieces := map[string]map[int]piece{}
	count := 0
	for rest != "" && count < maxParams {
		var attr, val string
		attr, val, rest = nextParam(rest)
		if attr == "" {
			continue
		}
		count++
		name, section, star := attr, -1, false
		if i := strings.IndexByte(attr, '*'); i > 0 {
			name = attr[:i]
			suffix := attr[i+1:]
			star = strings.HasSuffix(suffix, "*") || suffix == ""
			suffix = strings.TrimSuffix(suffix, "*")
			section = 0
			if suffix != "" {
				n, err := strconv.Atoi(suffix)
				if err != nil || n < 0 || n >= maxParams {
					continue
				}
				section = n
			}
		}
		if section < 0 {
			if _, seen := params[name]; !seen {
				params[name] = val
			}
			continue
		}
		if pieces[name] == nil {
			pieces[name] = map[int]piece{}
		}
		if _, seen := pieces[name][section]; !seen {
			pieces[name][section] = piece{val, star}
		}
	}
	names := make([]string, 0, len(pieces))
	for name := range pieces {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ps := pieces[name]
		// RFC 2231 §3: the pieces in order from 0; §4: only the first
		// names the charset and language, as charset'language'value.
		var raw []byte
		label := ""
		for i := 0; i < maxParams; i++ {
			p, ok := ps[i]
			if !ok {
				break
			}
			v := p.v
			if i == 0 && p.ext {
				if a := strings.IndexByte(v, '\''); a >= 0 {
					if b := strings.IndexByte(v[a+1:], '\''); b >= 0 {
						label, v = v[:a], v[a+1+b+1:]
					}
				}
			}
			if p.ext {
				raw = append(raw, percentDecode(v)...)
			} else {
				raw = append(raw, v...)
			}
		}
		if _, ok := ps[0]; ok {
			// The RFC 2231 form says more than a plain one beside it.
			params[name] = toUTF8(label, raw)
		}
	}
	return value, params
}

// nextParam reads one "attribute=value" from s, after its leading ";" was
// cut, and returns what follows the next ";". A value is a token or a
// quoted string (RFC 2045 §5.1); an unquoted value with spaces in it, as
// some mailers write file names, is taken whole up to the ";".
func nextParam(s string) (attr, val, rest string) {
	s = strings.TrimLeft(s, " \t\r\n;")
	eq := strings.IndexAny(s, "=;")
	if eq < 0 || s[eq] == ';' {
		if eq < 0 {
			return "", "", ""
		}
		return "", "", s[eq+1:]
	}
	attr = strings.ToLower(strings.TrimSpace(stripComments(s[:eq])))
	s = strings.TrimLeft(s[eq+1:], " \t\r\n")
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		i := 1
		for ; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				b.WriteByte(s[i])
				continue
			}
			if c == '"' {
				break
			}
			b.WriteByte(c)
		}
		val = b.String()
		s = s[min(i+1, len(s)):]
		if j := strings.IndexByte(s, ';'); j >= 0 {
			return attr, val, s[j+1:]
		}
		return attr, val, ""
	}
	if j := strings.IndexByte(s, ';'); j >= 0 {
		val, rest = s[:j], s[j+1:]
	} else {
		val = s
	}
	val = strings.TrimSpace(val)
	// A comment after a token ("us-ascii (Plain text)", RFC 822 CFWS).
	if i := strings.Index(val, " ("); i > 0 && strings.HasSuffix(val, ")") {
		val = strings.TrimSpace(val[:i])
	}
	return attr, val, rest
}

// stripComments drops RFC 822 comments, "(...)" and nested, from a value
// that holds no quoted string.
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// percentDecode undoes the %xx of an RFC 2231 value; a "%" not followed by
// two hex digits stays as it is.
func percentDecode(s string) []byte {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b = append(b, hi<<4|lo)
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return b
}

// isASCIILabel says whether a charset label names US-ASCII (RFC 2046
// §4.1.2 and its IANA aliases, such as the ANSI_X3.4-1968 mutt writes).
func isASCIILabel(label string) bool {
	switch label {
	case "", "us-ascii", "ascii", "ansi_x3.4-1968", "ansi-x3.4-1968", "iso646-us", "us", "iso-ir-6", "cp367", "ibm367", "csascii":
		return true
	}
	return false
}

// toUTF8 decodes b from the charset label names. UTF-8, US-ASCII, a
// missing label and a label nobody knows all keep the bytes when they are
// valid UTF-8 (RFC 6532 mail is, and so is most mail that misnames its
// charset) and read them as Windows-1252 otherwise, as browsers do with
// unlabelled 8-bit text.
func toUTF8(label string, b []byte) string {
	label = strings.ToLower(strings.TrimSpace(label))
	if isASCIILabel(label) || label == "utf-8" || label == "utf8" {
		return cleanUTF8(b)
	}
	r, err := charset.Reader(label, bytes.NewReader(b))
	if err != nil {
		return cleanUTF8(b)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return cleanUTF8(b)
	}
	return cleanUTF8(out)
}

// cleanUTF8 returns b as a string that is valid UTF-8.
func cleanUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out, err := charmap.Windows1252.NewDecoder().Bytes(b)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return string(out)
}

// cleanText is cleanUTF8 for a header value.
func cleanText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return cleanUTF8([]byte(s))
}

// decodeWords decodes RFC 2047 encoded words in a parameter value. RFC
// 2047 §5 does not allow them there, but mailers write file names that
// way and every mail client reads them.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	d := mime.WordDecoder{CharsetReader: func(label string, r io.Reader) (io.Reader, error) {
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		return strings.NewReader(toUTF8(label, b)), nil
	}}
	out, err := d.DecodeHeader(s)
	if err != nil {
		return s
	}
	return out
}
