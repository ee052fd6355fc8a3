package dsn

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	"lifeline/smtp/mailbox"
)

// DefaultMaxOriginal is how much of the original a notice returns when
// Notice.MaxOriginal is zero; larger originals come back as headers only.
const DefaultMaxOriginal = 1 << 20

// Notice is everything a DSN says. Compose reads nothing else, not even the
// clock, so the same Notice always gives the same bytes.
type Notice struct {
	Kind Kind
	// ReportingMTA is this node's host name: Reporting-MTA and the
	// MAILER-DAEMON address in From.
	ReportingMTA string
	// Sender is the original envelope sender, who receives the notice.
	Sender      string
	EnvID       string // RFC 3461 ENVID, xtext-decoded; "" if none
	ArrivalDate time.Time
	Recipients  []RecipientStatus
	// Ret is the RFC 3461 §4.3 RET: "FULL", "HDRS" or "".
	Ret string
	// Original is the message as received; nil leaves out the third part.
	Original io.Reader
	// MaxOriginal caps the size of an original returned in full; 0 means
	// DefaultMaxOriginal.
	MaxOriginal int64
	Now         time.Time
	// MessageID for the notice, with or without angle brackets; the
	// caller derives it deterministically (from the queue ID, say).
	MessageID string
}

// Composed is a notice ready to spool, with what its transport needs.
type Composed struct {
	Data []byte
	// SMTPUTF8: the notice must travel with SMTPUTF8 (RFC 6531): its
	// recipient, the original sender, has a UTF-8 address, so its header
	// and report carry UTF-8 as RFC 6532 and RFC 6533 allow.
	SMTPUTF8 bool
	// EightBit: a part is sent 8bit, so the notice needs BODY=8BITMIME
	// (RFC 6152).
	EightBit bool
}

// Compose renders the notice as a complete RFC 5322 message with CRLF line
// endings: an RFC 6522 multipart/report with a text/plain explanation, the
// RFC 3464 message/delivery-status, and the original or its headers.
//
// Everything that came from outside (addresses, a remote server's reply,
// the original's subject) has CR, LF and other controls removed before it
// goes into a header field, so it cannot add fields of its own.
//
// Notices for internationalised mail follow RFC 6533. A sender with a
// UTF-8 address can only be reached over SMTPUTF8, so that notice is
// UTF-8 throughout: message/global-delivery-status with UTF-8 addresses,
// and the original as message/global or message/global-headers when its
// header holds UTF-8 (RFC 6532 §3.7), all 8bit. For a sender with an ASCII
// address the notice stays 7-bit and needs no SMTPUTF8, so no next hop
// refuses it: UTF-8 addresses in the report take the utf-8-addr-xtext form
// (RFC 6533 §3), and an original with a UTF-8 header is still
// message/global or message/global-headers, under quoted-printable, which
// those types allow on a 7-bit path.
func Compose(n Notice) ([]byte, error) {
	c, err := ComposeMessage(n)
	return c.Data, err
}

// ComposeMessage is Compose, also saying how the notice must travel.
func ComposeMessage(n Notice) (Composed, error) {
	var out Composed
	if n.Kind.keyword() == "" {
		return out, fmt.Errorf("dsn: unknown kind %d", n.Kind)
	}
	sender := headerAddr(n.Sender)
	if sender == "" {
		return out, errors.New("dsn: no notice is ever sent to the null sender")
	}
	utf8Sender := !isASCII([]byte(sender))
	out.SMTPUTF8 = utf8Sender
	host := cleanHost(n.ReportingMTA)
	if host == "" {
		return out, errors.New("dsn: ReportingMTA is empty")
	}
	msgID := strings.Trim(cleanAddr(n.MessageID), "<>")
	if msgID == "" {
		return out, errors.New("dsn: MessageID is empty")
	}
	if len(n.Recipients) == 0 {
		return out, errors.New("dsn: no recipients to report on")
	}
	if n.Now.IsZero() {
		return out, errors.New("dsn: Now is zero")
	}

	orig, err := readOriginal(n)
	if err != nil {
		return out, err
	}
	text := humanText(n, host, orig)
	status := deliveryStatus(n, host, utf8Sender)
	// RFC 6522 §3 and RFC 6533 §6.4: report-type names the second part.
	reportType, statusType := "delivery-status", "message/delivery-status"
	if utf8Sender {
		reportType, statusType = "global-delivery-status", "message/global-delivery-status"
	}

	// The boundary is derived, not random, so output is reproducible; it
	// must not occur in any part.
	parts := text + status + string(orig.content)
	boundary := ""
	for i := 0; boundary == "" || strings.Contains(parts, "--"+boundary); i++ {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d", msgID, i))
		boundary = "=_dsn_" + hex.EncodeToString(sum[:12])
	}

	var b bytes.Buffer
	writeField(&b, "From", "Mail Delivery System <MAILER-DAEMON@"+host+">")
	writeField(&b, "To", "<"+sender+">") // RFC 6532 §3.2 allows UTF-8 here
	writeField(&b, "Subject", "Delivery Status Notification ("+map[Kind]string{Delayed: "Delay", Failed: "Failure", Delivered: "Success"}[n.Kind]+")")
	writeField(&b, "Date", n.Now.Format(time.RFC1123Z))
	writeField(&b, "Message-ID", "<"+msgID+">")
	if orig.messageID != "" {
		writeField(&b, "References", orig.messageID)
	}
	// RFC 3834 §5: an automatic reply, so auto-responders stay quiet.
	writeField(&b, "Auto-Submitted", "auto-replied")
	writeField(&b, "MIME-Version", "1.0")
	// RFC 6522 §3: report-type names the machine-readable second part.
	writeField(&b, "Content-Type", mime.FormatMediaType("multipart/report", map[string]string{
		"report-type": reportType,
		"boundary":    boundary,
	}))
	b.WriteString("\r\nThis is a delivery status notification in MIME format.\r\n\r\n")

	mw := multipart.NewWriter(&b)
	if err := mw.SetBoundary(boundary); err != nil {
		return out, err
	}
	w, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"text/plain; charset=utf-8"},
		"Content-Transfer-Encoding": {"quoted-printable"},
		"Content-Description":       {"Notification"},
	})
	if err != nil {
		return out, err
	}
	qp := quotedprintable.NewWriter(w)
	io.WriteString(qp, text)
	if err := qp.Close(); err != nil {
		return out, err
	}

	sh := textproto.MIMEHeader{
		"Content-Type":        {statusType},
		"Content-Description": {"Delivery report"},
	}
	if !isASCII([]byte(status)) {
		// RFC 6533 §6.4: message/global-delivery-status is sent 8bit.
		sh.Set("Content-Transfer-Encoding", "8bit")
		out.EightBit = true
	}
	w, err = mw.CreatePart(sh)
	if err != nil {
		return out, err
	}
	io.WriteString(w, status)

	if orig.content != nil {
		h := textproto.MIMEHeader{
			"Content-Type":        {orig.contentType},
			"Content-Description": {orig.description},
		}
		content := orig.content
		switch {
		case isASCII(content):
		case orig.global && !utf8Sender:
			// RFC 6532 §3.7 and RFC 6533 §6.3: unlike message/rfc822,
			// message/global and message/global-headers may be encoded,
			// which keeps the notice 7-bit for a next hop without
			// SMTPUTF8 or 8BITMIME.
			h.Set("Content-Transfer-Encoding", "quoted-printable")
			var enc bytes.Buffer
			qw := quotedprintable.NewWriter(&enc)
			qw.Write(content)
			if err := qw.Close(); err != nil {
				return out, err
			}
			content = enc.Bytes()
		default:
			// RFC 2046 §5.2.1: message/rfc822 allows 7bit, 8bit or binary
			// only; an 8-bit body is carried as 8bit.
			h.Set("Content-Transfer-Encoding", "8bit")
			out.EightBit = true
		}
		w, err = mw.CreatePart(h)
		if err != nil {
			return out, err
		}
		w.Write(content)
	}
	if err := mw.Close(); err != nil {
		return out, err
	}
	out.Data = b.Bytes()
	return out, nil
}

// original is what the third part carries, and what the text part can
// say about the message.
type original struct {
	content     []byte // CRLF line endings; nil for no third part
	contentType string
	description string
	subject     string
	messageID   string
	// global: the header holds UTF-8 (RFC 6532), so the part is
	// message/global or message/global-headers (RFC 6533 §6.3).
	global bool
}

func readOriginal(n Notice) (original, error) {
	var o original
	if n.Original == nil {
		return o, nil
	}
	limit := n.MaxOriginal
	if limit <= 0 {
		limit = DefaultMaxOriginal
	}
	raw, err := io.ReadAll(io.LimitReader(n.Original, limit+1))
	if err != nil {
		return o, fmt.Errorf("dsn: reading the original: %w", err)
	}
	tooBig := int64(len(raw)) > limit
	raw = crlf(raw)
	header := headerSection(raw)

	if hdr, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(header, '\r', '\n')))).ReadMIMEHeader(); err == nil || len(hdr) > 0 {
		dec := mime.WordDecoder{}
		subj := hdr.Get("Subject")
		if d, err := dec.DecodeHeader(subj); err == nil {
			subj = d
		}
		o.subject = cleanText(subj)
		if id := cleanAddr(hdr.Get("Message-Id")); id != "" {
			o.messageID = "<" + id + ">"
		}
	}

	// RFC 3461 §4.3: RET=FULL asks for the whole message in a failure
	// notice; a notice that reports no failure returns headers only.
	// Without RET the choice is ours: the whole message, so the sender
	// can resend it, unless it is too large.
	failed := false
	for _, r := range n.Recipients {
		failed = failed || r.action(n.Kind) == ActionFailed
	}
	o.global = !isASCII(header)
	if failed && !strings.EqualFold(n.Ret, "HDRS") && !tooBig {
		o.content = raw
		o.contentType = "message/rfc822"
		if o.global {
			o.contentType = "message/global"
		}
		o.description = "Undelivered message"
	} else {
		o.content = header
		o.contentType = "text/rfc822-headers"
		if o.global {
			o.contentType = "message/global-headers"
		}
		o.description = "Headers of the message"
	}
	return o, nil
}

// headerSection returns the header fields of a message, up to and
// including the CRLF of the last field. A message cut short by the size
// limit keeps only its complete lines.
func headerSection(msg []byte) []byte {
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		return []byte{}
	}
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+2]
	}
	if i := bytes.LastIndex(msg, []byte("\r\n")); i >= 0 {
		return msg[:i+2]
	}
	return []byte{}
}

// crlf turns bare LF and bare CR into CRLF: the notice is CRLF throughout,
// whatever the original looked like.
func crlf(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/50)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// deliveryStatus renders the RFC 3464 §2.1 body: per-message fields, then
// one block per recipient, each ending in a blank line.
// global writes message/global-delivery-status (RFC 6533 §6.4): UTF-8
// addresses in their utf-8-addr-unitext form instead of xtext.
func deliveryStatus(n Notice, host string, global bool) string {
	var b bytes.Buffer
	// §2.2
	writeField(&b, "Reporting-MTA", "dns; "+host)
	if env := asciiText(n.EnvID); env != "" {
		writeField(&b, "Original-Envelope-Id", env)
	}
	if !n.ArrivalDate.IsZero() {
		writeField(&b, "Arrival-Date", n.ArrivalDate.Format(time.RFC1123Z))
	}
	// §2.3
	for _, r := range n.Recipients {
		b.WriteString("\r\n")
		act := r.action(n.Kind)
		if o := orcptField(r.ORCPT, global); o != "" {
			writeField(&b, "Original-Recipient", o)
		}
		writeField(&b, "Final-Recipient", typedAddress("rfc822", r.Final, global))
		writeField(&b, "Action", asciiText(string(act)))
		writeField(&b, "Status", statusCode(r.Status, act))
		if h := cleanHost(r.RemoteMTA); h != "" {
			writeField(&b, "Remote-MTA", "dns; "+h)
		}
		if d := asciiText(r.Diagnostic); d != "" {
			typ := "X-Lifeline"
			if isReply(d) {
				typ = "smtp"
			}
			writeField(&b, "Diagnostic-Code", typ+"; "+d)
		}
		if !r.LastAttempt.IsZero() {
			writeField(&b, "Last-Attempt-Date", r.LastAttempt.Format(time.RFC1123Z))
		}
		if act == ActionDelayed && !r.WillRetryUntil.IsZero() {
			writeField(&b, "Will-Retry-Until", r.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
	return b.String()
}

// statusCode keeps a well-formed RFC 3463 code whose class agrees with
// the action (RFC 3464 §2.3.4: delayed is 4, failed is 5, the rest 2),
// corrects the class of one that does not, and otherwise falls back to the
// generic code for the action. Expiry (4.4.7) is kept on a failure.
func statusCode(s string, act Action) string {
	class := "2"
	switch act {
	case ActionDelayed:
		class = "4"
	case ActionFailed:
		class = "5"
	}
	parts := strings.Split(strings.TrimSpace(s), ".")
	ok := len(parts) == 3 && len(parts[0]) == 1 && strings.Contains("245", parts[0])
	for _, p := range parts[min(1, len(parts)):] {
		ok = ok && len(p) >= 1 && len(p) <= 3 && strings.Trim(p, "0123456789") == ""
	}
	if !ok {
		return class + ".0.0"
	}
	// A message that expired in the queue failed after persistent
	// transient errors; RFC 3463 §3.5 reports that as 4.4.7, so a failed
	// recipient keeps a class-4 code rather than one we would invent.
	if act == ActionFailed && strings.TrimSpace(s) == "4.4.7" {
		return "4.4.7"
	}
	return class + "." + parts[1] + "." + parts[2]
}

// isReply: starts with an SMTP reply code, so it is a server's words.
func isReply(s string) bool {
	return len(s) >= 3 && s[0] >= '2' && s[0] <= '5' &&
		strings.Trim(s[:3], "0123456789") == "" && (len(s) == 3 || s[3] == ' ')
}

// orcptField renders ORCPT "type;address" as RFC 3464 §2.3.1 wants it.
func orcptField(orcpt string, global bool) string {
	typ, addr, ok := strings.Cut(orcpt, ";")
	if !ok {
		typ, addr = "rfc822", orcpt
	}
	typ = asciiText(typ)
	if typ == "" || strings.ContainsAny(typ, " ;") {
		return ""
	}
	return typedAddress(typ, addr, global)
}

// typedAddress renders "type; address". An address in UTF-8 is of the
// RFC 6533 §3 "utf-8" type: as utf-8-addr-xtext, which keeps
// message/delivery-status 7-bit, or with global as utf-8-addr-unitext, in
// which only ASCII specials are encoded.
func typedAddress(typ, addr string, global bool) string {
	addr = reportAddr(addr)
	if addr == "" {
		return ""
	}
	if !isASCII([]byte(addr)) || strings.EqualFold(typ, "utf-8") {
		var b strings.Builder
		for _, r := range addr {
			switch {
			case r >= '!' && r <= '~' && r != '+' && r != '=' && r != '\\':
				b.WriteRune(r)
			case global && r >= 0x80:
				b.WriteRune(r)
			default:
				fmt.Fprintf(&b, `\x{%02X}`, r)
			}
		}
		return "utf-8; " + b.String()
	}
	return typ + "; " + addr
}

// reportAddr is an address as a report shows it: exactly, when it is an
// RFC 5321 mailbox (a quoted local part keeps its spaces and quotes), else
// cleaned like any other outside text.
func reportAddr(s string) string {
	s = strings.TrimSpace(s)
	if mailbox.Valid(s) {
		return s
	}
	return cleanText(s)
}

// headerAddr is an address fit to stand between the angle brackets of a
// header field: exactly, when it is an RFC 5321 mailbox (RFC 5322 §3.4.1
// addr-spec takes the same quoted local part), else cleaned so it cannot
// escape the brackets.
func headerAddr(s string) string {
	s = strings.Trim(strings.TrimSpace(s), "<>")
	if mailbox.Valid(s) {
		return s
	}
	return cleanAddr(s)
}

// writeField writes "Name: value" CRLF, folding at spaces so lines stay
// near 78 characters (RFC 5322 §2.1.1); value must already be clean.
func writeField(b *bytes.Buffer, name, value string) {
	line := name + ":"
	col := len(line)
	b.WriteString(line)
	var words []string
	for _, w := range strings.Split(value, " ") {
		// A field line may not pass 998 characters (RFC 5322 §2.1.1); a
		// word that long can only come from a hostile server and is cut.
		for len(w) > 900 {
			words = append(words, w[:900])
			w = w[900:]
		}
		words = append(words, w)
	}
	for i, word := range words {
		if i > 0 && col+1+len(word) > 78 && col > len(name)+1 {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteByte(' ')
		b.WriteString(word)
		col += 1 + len(word)
	}
	b.WriteString("\r\n")
}

// cleanText makes s safe for a header field or a line of text: CR, LF and
// every other control character become spaces (a CR or LF would end the
// field and start one of the sender's choosing), runs of space collapse,
// and invalid UTF-8 becomes U+FFFD.
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// asciiText is cleanText for message/delivery-status, which is US-ASCII.
func asciiText(s string) string {
	return strings.Map(func(r rune) rune {
		if r > '~' {
			return '?'
		}
		return r
	}, cleanText(s))
}

// cleanAddr is cleanText for an address: no spaces, no angle brackets of
// its own, so it cannot escape the ones we put around it.
func cleanAddr(s string) string {
	s = strings.Trim(strings.TrimSpace(s), "<>")
	return strings.Map(func(r rune) rune {
		if r == '<' || r == '>' || r == ' ' {
			return -1
		}
		return r
	}, cleanText(s))
}

// cleanHost keeps what a host name or address literal may contain.
func cleanHost(s string) string {
	return strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && (r == '.' || r == '-' || r == ':' || r == '[' || r == ']' || r == '_' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return -1
	}, strings.TrimSuffix(strings.TrimSpace(s), "."))
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
