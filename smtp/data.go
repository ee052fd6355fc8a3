package smtp

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"time"
)

var (
	errBareLF      = newReply(550, "5.5.2", "Error: bare <LF> received; lines must end in <CR><LF>")
	errBareCR      = newReply(550, "5.5.2", "Error: bare <CR> received; lines must end in <CR><LF>")
	errTooBig      = newReply(552, "5.3.4", "Error: message size exceeds fixed maximum message size")
	errLoop        = newReply(554, "5.4.6", "Error: too many hops, routing loop detected")
	errLineTooLong = newReply(500, "5.5.2", "Error: line too long, closing connection")
	errConnLost    = newReply(421, "4.4.2", "Error: connection lost during DATA")
)

// beginMessage snapshots the transaction for a DATA or BDAT transfer and
// starts the phase's own deadline (DataTimeout): the per-read timeout alone
// would let a client hold a session forever by trickling.
func (s *session) beginMessage() *Envelope {
	env := *s.tx
	env.Recipients = append([]Recipient(nil), s.tx.Recipients...)
	env.ReceivedAt = s.srv.cfg.Now()
	s.dataUntil = time.Now().Add(s.srv.cfg.DataTimeout)
	return &env
}

// bodySink takes a message body as it streams in, DATA lines or BDAT
// chunks alike: it checks it (bodyScanner) and writes it into a blob behind
// our Received: field. After the first refusal the blob is aborted and the
// rest is only counted, so the session stays in step with the client;
// nothing of a refused message is kept.
type bodySink struct {
	s    *session
	env  *Envelope
	sc   bodyScanner
	blob BlobWriter
	err  error // the first refusal
}

func (s *session) openSink(env *Envelope) *bodySink {
	cfg := &s.srv.cfg
	b := &bodySink{s: s, env: env, sc: bodyScanner{maxReceived: cfg.MaxReceived, maxSize: cfg.MaxMessageBytes}}
	blob, err := cfg.Queue.NewBlob()
	if err != nil {
		b.err = queueError{"new blob", err}
		return b
	}
	if _, err := io.WriteString(blob, s.receivedField(env)); err != nil {
		_ = blob.Abort()
		b.err = queueError{"write blob", err}
		return b
	}
	b.blob = blob
	return b
}

func (b *bodySink) write(p []byte) {
	if b.err != nil {
		b.sc.size += int64(len(p))
		return
	}
	if err := b.sc.scan(p); err != nil {
		b.fail(err)
		return
	}
	if _, err := b.blob.Write(p); err != nil {
		b.fail(queueError{"write blob", err})
	}
}

// fail records the first refusal and drops the blob.
func (b *bodySink) fail(err error) {
	if b.blob != nil {
		_ = b.blob.Abort()
		b.blob = nil
	}
	if b.err == nil {
		b.err = err
	}
}

// finish ends a body that arrived whole: the last checks, the commit of
// the blob and the Enqueue that alone may make a 250.
func (b *bodySink) finish() error {
	if b.err != nil {
		return b.err
	}
	if b.sc.cr {
		b.fail(errBareCR)
		return b.err
	}
	if b.sc.col > 0 {
		// Only BDAT can end inside a line (DATA always ends in CRLF).
		// The stored message keeps CRLF line ends throughout.
		if _, err := io.WriteString(b.blob, "\r\n"); err != nil {
			b.fail(queueError{"write blob", err})
			return b.err
		}
	}
	blob := b.blob
	b.blob = nil
	hash, size, err := blob.Commit()
	if err != nil {
		return queueError{"commit blob", err}
	}
	ctx, cancel := b.s.commitContext()
	defer cancel()
	// Only a nil error from Enqueue may become 250 (docs/design.md §1 step 6).
	if err := b.s.srv.cfg.Queue.Enqueue(ctx, b.env, hash, size); err != nil {
		return queueError{"enqueue", err}
	}
	return nil
}

// endMessage ends a DATA or BDAT transfer: it finishes the body unless the
// input failed (ioErr), logs the outcome and, with the input intact, sends
// the reply. The transaction is over either way (RFC 5321 §4.1.1.4). The
// return value says whether the session goes on.
func (s *session) endMessage(env *Envelope, b *bodySink, ioErr error) bool {
	s.tx, s.rcptTried, s.dataUntil = nil, false, time.Time{}
	var err error
	if ioErr != nil {
		err = s.readReply(ioErr)
	} else {
		err = b.finish()
	}
	reply := newReply(250, "2.0.0", "Ok: queued as "+env.ID)
	if err != nil {
		// Queue errors are wrapped in queueError, which hides whatever
		// they carry: they are always 451 (docs/design.md §4).
		if !errors.As(err, &reply) {
			reply = errTempFailure
		}
	}
	attrs := []any{"id", env.ID, "from", env.From, "rcpts", len(env.Recipients),
		"size", b.sc.size, "code", reply.Code, "remote", s.remote.String(), "tls", env.TLS}
	if err != nil {
		s.srv.log.Warn("smtp transaction refused", append(attrs, "err", err.Error())...)
		var to []string
		for _, r := range env.Recipients {
			to = append(to, r.Address)
		}
		s.logRefusal("DATA", env.ID, env.From, to, reply)
	} else {
		s.srv.log.Info("smtp transaction queued", attrs...)
		s.errors = 0
	}
	if ioErr != nil {
		// readFailed answers, if anyone is left to hear it.
		return false
	}
	s.srv.reply(reply.Code)
	s.send(reply)
	return true
}

// readReply is the refusal a failed read of the body stands for.
func (s *session) readReply(err error) *Reply {
	var ne net.Error
	switch {
	case errors.Is(err, errLineLimit):
		// RFC 5321 §4.5.3.1.10 "500 Line too long"; the rest of the line
		// is unread, so the connection closes.
		return errLineTooLong
	case errors.As(err, &ne) && ne.Timeout():
		return s.dataTimeoutReply()
	}
	return errConnLost
}

// queueError is a failure of the Queue. It deliberately has no Unwrap, so
// that nothing the node returns can turn into a reply other than 451.
type queueError struct {
	op  string
	err error
}

func (e queueError) Error() string { return e.op + ": " + e.err.Error() }

// bodyScanner checks a body as it streams past: bare CR or LF, size, and
// Received: hop count in the header section. Its state carries across
// buffers, so a CRLF split between two reads is still a CRLF.
type bodyScanner struct {
	maxReceived int
	maxSize     int64

	size     int64
	cr       bool // the last byte was a CR
	col      int  // bytes in the current line so far
	body     bool // past the empty line that ends the header section
	name     [len("received:")]byte
	received int
}

func (sc *bodyScanner) scan(p []byte) error {
	sc.size += int64(len(p))
	if sc.size > sc.maxSize {
		return errTooBig
	}
	for _, c := range p {
		if sc.cr {
			sc.cr = false
			if c != '\n' {
				return errBareCR
			}
			// RFC 5322 §2.1: an empty line ends the header section.
			if sc.col == 0 {
				sc.body = true
			}
			sc.col = 0
			continue
		}
		switch c {
		case '\r':
			sc.cr = true
			continue
		case '\n':
			return errBareLF
		}
		if !sc.body && sc.col < len(sc.name) {
			sc.name[sc.col] = lower(c)
			if sc.col == len(sc.name)-1 && string(sc.name[:]) == "received:" {
				// RFC 5321 §6.3: count Received: fields to detect loops.
				sc.received++
				if sc.received > sc.maxReceived {
					return errLoop
				}
			}
		}
		sc.col++
	}
	return nil
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// receivedField is our trace field, RFC 5321 §4.4:
//
//	Received: from HELO ([IP])
//		by HOSTNAME with PROTO id ID
//		for <RCPT>; DATE
//
// The client's name is not looked up (no DNS in the MX), so TCP-info is the
// bare address literal. "for" is given only for a single recipient, so Bcc
// recipients are not disclosed to each other (RFC 5321 §7.2).
func (s *session) receivedField(env *Envelope) string {
	var b strings.Builder
	b.WriteString("Received: from ")
	lit := s.remoteLiteral()
	if h, ok := heloDomain(s.helo); ok {
		b.WriteString(h)
		if lit != "" {
			b.WriteString(" (" + lit + ")")
		}
	} else {
		if lit == "" {
			lit = "unknown"
		}
		b.WriteString(lit + " (" + lit + ")")
		// Keep the odd HELO for the record, as a comment.
		b.WriteString(" (helo=" + commentSafe(s.helo) + ")")
	}
	if s.tls != nil {
		// A comment (CFWS) before "by", as Postfix writes it.
		b.WriteString("\r\n\t(using " + tls.VersionName(s.tls.Version) +
			" with cipher " + tls.CipherSuiteName(s.tls.CipherSuite) + ")")
	}
	b.WriteString("\r\n\tby " + s.srv.cfg.Hostname +
		" with " + withProtocol(s.esmtp, env.SMTPUTF8, s.tls != nil) + " id " + env.ID)
	if len(env.Recipients) == 1 {
		b.WriteString("\r\n\tfor <" + env.Recipients[0].Address + ">; ")
	} else {
		b.WriteString(";\r\n\t")
	}
	// RFC 5322 §3.3 date-time.
	b.WriteString(env.ReceivedAt.Format(time.RFC1123Z) + "\r\n")
	return b.String()
}

// withProtocol is the "with" keyword of RFC 5321 §4.4 (SMTP, ESMTP),
// RFC 3848 (ESMTPS) and RFC 6531 §3.7.3 (UTF8SMTP, UTF8SMTPS). SMTPUTF8
// and STARTTLS are extensions, so they imply EHLO.
func withProtocol(esmtp, utf8, tls bool) string {
	if !esmtp && !utf8 && !tls {
		return "SMTP"
	}
	p := "ESMTP"
	if utf8 {
		p = "UTF8SMTP"
	}
	if tls {
		p += "S"
	}
	return p
}

// heloDomain returns the HELO argument if it is a Domain or an address
// literal as RFC 5321 §4.1.4 asks for, fit to stand in a header field.
func heloDomain(h string) (string, bool) {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") && len(h) <= 64 {
		for _, c := range []byte(h[1 : len(h)-1]) {
			if !isHex(c) && c != '.' && c != ':' && !strings.ContainsRune("IiPpVv6", rune(c)) {
				return "", false
			}
		}
		return h, true
	}
	if d, ok := normaliseDomain(h); ok {
		return d, true
	}
	return "", false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// commentSafe reduces s to RFC 5322 §3.2.2 ctext.
func commentSafe(s string) string {
	const max = 64
	var b strings.Builder
	for i := 0; i < len(s) && i < max; i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '\\' {
			c = '?'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// remoteLiteral is the client's address as an RFC 5321 §4.1.3 address
// literal, or "" when the connection has no IP address.
func (s *session) remoteLiteral() string {
	switch {
	case !s.remote.IsValid():
		return ""
	case s.remote.Is4():
		return "[" + s.remote.String() + "]"
	}
	return "[IPv6:" + s.remote.WithZone("").String() + "]"
}
