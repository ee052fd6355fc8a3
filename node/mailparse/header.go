package mailparse

import (
	"bytes"

	"github.com/emersion/go-message/textproto"
)

// maxFields bounds the fields kept of one header; the rest of a header
// that long is read and dropped, so the body still starts where it does.
const maxFields = 2000

// isFieldLine says whether line starts a header field: a name of printable
// ASCII other than the colon (RFC 5322 §3.6.8 ftext), then a colon. White
// space between the name and the colon is allowed as the obsolete syntax
// does (RFC 5322 §4.5.2), since mailers still write it.
func isFieldLine(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:colon], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// readHeader reads a header block leniently. It ends at the blank line
// (consumed), at a delimiter of bounds (left for the caller), or at the
// first line that is neither a field nor a continuation (left as the first
// line of the body: mail whose header runs straight into its text, or that
// has no header at all, is still read). An mbox "From " line (RFC 4155),
// which mail kept in mailboxes starts with and which our own Received
// field may now precede, is skipped wherever it stands in the block; so is
// a continuation with no field before it.
func readHeader(lr *lineReader, bounds []string) textproto.Header {
	var h textproto.Header
	var field []byte
	size := 0
	extend := false // the pieces of an over-long line go to field
	flush := func() {
		if field != nil {
			if h.Len() < maxFields && size <= MaxHeader {
				h.AddRaw(field)
			}
			field = nil
		}
	}
	for {
		line, start, ok := lr.peek()
		if !ok {
			break
		}
		if !start {
			// The rest of a line longer than maxLine: it belongs to the
			// field it continues.
			lr.next()
			if extend && field != nil && size <= MaxHeader {
				field = appendCRLF(bytes.TrimRight(field, "\r\n"), line)
				size += len(line)
			}
			continue
		}
		if isBlank(line) {
			lr.next()
			break
		}
		if i, _ := matchDelimiter(line, bounds); i >= 0 {
			break
		}
		extend = false
		switch {
		case line[0] == ' ' || line[0] == '\t':
			if field != nil && size <= MaxHeader {
				field = appendCRLF(field, line)
				extend = true
			}
		case bytes.HasPrefix(line, []byte("From ")):
			// The mbox separator, not a field (RFC 4155).
		case isFieldLine(line):
			flush()
			field = appendCRLF(nil, line)
			extend = true
		default:
			flush()
			return h
		}
		size += len(line)
		lr.next()
	}
	flush()
	return h
}

// appendCRLF appends line to dst with its ending made CRLF, the form
// go-message's header fields keep.
func appendCRLF(dst, line []byte) []byte {
	content, _ := splitEnding(line)
	dst = append(dst, content...)
	return append(dst, '\r', '\n')
}
