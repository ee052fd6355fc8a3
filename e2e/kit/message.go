package kit

import (
	"strconv"
	"strings"
	"time"
)

// filler is the body text; no line starts with a dot, so nothing needs
// dot-stuffing and the bytes on the wire are exactly the message.
const filler = "The quick brown fox jumps over the lazy dog while the spool keeps it safe. "

// AppendMessage appends an RFC 5322 message of exactly size bytes (when
// size exceeds the headers), every line ending in CRLF, from sender to
// rcpt, unique per n.
func AppendMessage(buf []byte, sender, rcpt string, n int64, size int) []byte {
	start := len(buf)
	domain := sender[strings.LastIndexByte(sender, '@')+1:]
	buf = append(buf, "From: <"+sender+">\r\n"...)
	buf = append(buf, "To: <"+rcpt+">\r\n"...)
	buf = append(buf, "Subject: Lifeline load message "...)
	buf = strconv.AppendInt(buf, n, 10)
	buf = append(buf, "\r\nDate: "...)
	buf = time.Now().AppendFormat(buf, time.RFC1123Z)
	buf = append(buf, "\r\nMessage-ID: <load."...)
	buf = strconv.AppendInt(buf, n, 10)
	buf = append(buf, "@"+domain+">\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"...)
	for {
		left := size - (len(buf) - start) - 2 // room for this line's CRLF
		if left <= 0 {
			// Headers alone exceed size: one short body line keeps the
			// message valid.
			return append(buf, "x\r\n"...)
		}
		if left <= len(filler) {
			buf = append(buf, filler[:left]...)
			return append(buf, "\r\n"...)
		}
		// Avoid leaving a remainder too small for a line of its own.
		take := len(filler)
		if left-take-2 < 1 {
			take = left - 3
		}
		buf = append(buf, filler[:take]...)
		buf = append(buf, "\r\n"...)
	}
}
