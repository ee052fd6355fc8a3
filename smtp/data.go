package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

var (
	errBareLF = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 5, 2},
		Message: "Error: bare <LF> received; lines must end in <CR><LF>"}
	errBareCR = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 5, 2},
		Message: "Error: bare <CR> received; lines must end in <CR><LF>"}
	errTooBig = &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 3, 4},
		Message: "Error: message size exceeds fixed maximum message size"}
	errLoop = &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 4, 6},
		Message: "Error: too many hops, routing loop detected"}
	errLineTooLong = &gosmtp.SMTPError{Code: 500, EnhancedCode: gosmtp.EnhancedCode{5, 5, 2},
		Message: "Error: line too long, closing connection"}
	errConnLost = &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 4, 2},
		Message: "Error: connection lost during DATA"}
)

// Data receives the body of a DATA or BDAT transfer.
//
// What go-smtp hands us (its data.go): for DATA, the body with the
// dot-stuffing undone (RFC 5321 §4.5.2) and the final ".\r\n" removed, line
// endings untouched, so bare CR and bare LF arrive as sent and are refused
// here; for BDAT (RFC 3030, always offered by go-smtp) the chunks verbatim.
// One gap we cannot close: go-smtp's unstuffing swallows a CR that directly
// follows a dot at the start of a line (".\rX" arrives as "X"). The stored
// body then holds no bare CR, so nothing can be smuggled through us, but that
// one form is accepted rather than answered 550.
//
// The body streams into a blob behind our Received: field. On any refusal
// the blob is aborted and the rest of the body is still read, so the session
// stays in step with the client (only a read error ends it).
func (s *session) Data(r io.Reader) error {
	s.mu.Lock()
	tx := s.tx
	s.mu.Unlock()
	if tx == nil || len(tx.Recipients) == 0 {
		_, _ = io.Copy(io.Discard, r)
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 5, 1},
			Message: "Error: no valid recipients"}
	}
	env := *tx
	env.Recipients = append([]Recipient(nil), tx.Recipients...)
	env.ReceivedAt = s.srv.cfg.Now()
	if s.raw != nil {
		s.raw.beginData(time.Now().Add(s.srv.cfg.DataTimeout))
	}

	size, err := s.receive(r, &env)

	code := 250
	var reply *gosmtp.SMTPError
	if err != nil {
		// Queue errors are wrapped in queueError, which hides whatever
		// they carry: they are always 451 (docs/design.md §4).
		if !errors.As(err, &reply) {
			reply = errTempFailure
		}
		code = reply.Code
	}
	attrs := []any{"id", env.ID, "from", env.From, "rcpts", len(env.Recipients),
		"size", size, "code", code, "remote", s.remote.String(), "tls", env.TLS}
	if err != nil {
		s.srv.log.Warn("smtp transaction refused", append(attrs, "err", err.Error())...)
		var to []string
		for _, r := range env.Recipients {
			to = append(to, r.Address)
		}
		s.logRefusal("DATA", env.ID, env.From, to, reply)
	} else {
		s.srv.log.Info("smtp transaction queued", attrs...)
	}
	s.srv.reply(code)

	if s.raw != nil && err != nil && errors.Is(err, s.raw.dataTimeout) {
		// go-smtp would read on after a timeout (issue #196); the conn
		// would refuse, but through TLS it would also add a second 421.
		s.hangUp(reply)
		return reply
	}
	if err != nil {
		return reply
	}
	s.mu.Lock()
	s.errors = 0
	s.mu.Unlock()
	// go-smtp sends a returned SMTPError as is, which is how a 250 gets
	// our queue ID into it (docs/design.md §4).
	return &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0},
		Message: "Ok: queued as " + env.ID}
}

// receive streams the body into a blob and enqueues it. It returns the
// message size (as received, before our Received: field) and the refusal,
// if any.
func (s *session) receive(r io.Reader, env *Envelope) (int64, error) {
	cfg := &s.srv.cfg
	sc := bodyScanner{maxReceived: cfg.MaxReceived, maxSize: cfg.MaxMessageBytes}

	blob, err := cfg.Queue.NewBlob()
	if err != nil {
		return 0, s.drain(r, &sc, queueError{"new blob", err})
	}
	if _, err := io.WriteString(blob, s.receivedField(env)); err != nil {
		_ = blob.Abort()
		return 0, s.drain(r, &sc, queueError{"write blob", err})
	}

	buf := make([]byte, 32<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := sc.scan(buf[:n]); err != nil {
				_ = blob.Abort()
				return sc.size, s.drain(r, &sc, err)
			}
			if _, err := blob.Write(buf[:n]); err != nil {
				_ = blob.Abort()
				return sc.size, s.drain(r, &sc, queueError{"write blob", err})
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			_ = blob.Abort()
			return sc.size, readError(rerr, nil)
		}
	}
	if sc.cr {
		_ = blob.Abort()
		return sc.size, errBareCR
	}
	if sc.col > 0 {
		// Only BDAT can end inside a line (DATA always ends in CRLF).
		// The stored message keeps CRLF line ends throughout.
		if _, err := io.WriteString(blob, "\r\n"); err != nil {
			_ = blob.Abort()
			return sc.size, queueError{"write blob", err}
		}
	}

	hash, size, err := blob.Commit()
	if err != nil {
		return sc.size, queueError{"commit blob", err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.CommitTimeout)
	defer cancel()
	// Only a nil error from Enqueue may become 250 (docs/design.md §1 step 6).
	if err := cfg.Queue.Enqueue(ctx, env, hash, size); err != nil {
		return sc.size, queueError{"enqueue", err}
	}
	return sc.size, nil
}

// queueError is a failure of the Queue. It deliberately has no Unwrap, so
// that nothing the node returns can turn into a reply other than 451.
type queueError struct {
	op  string
	err error
}

func (e queueError) Error() string { return e.op + ": " + e.err.Error() }

// drain reads and discards the rest of the body after a refusal, so the
// client's next command is read as a command (RFC 5321 §4.1.1.4: the reply
// comes after the end of the data). It returns the refusal, or the read
// error that cut the body short.
func (s *session) drain(r io.Reader, sc *bodyScanner, refusal error) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		sc.size += int64(n)
		if err == io.EOF {
			return refusal
		}
		if err != nil {
			return readError(err, refusal)
		}
	}
}

// readError maps a failed read of the body to the reply. refusal is the
// reason the body was already refused, if any.
func readError(err, refusal error) error {
	var se *gosmtp.SMTPError
	switch {
	case errors.Is(err, gosmtp.ErrDataTooLarge):
		// go-smtp's size limit; it drains the rest itself.
		if refusal != nil {
			return refusal
		}
		return errTooBig
	case errors.Is(err, gosmtp.ErrTooLongLine):
		// RFC 5321 §4.5.3.1.10 "500 Line too long"; go-smtp then closes
		// the connection, since the rest of the line is unread.
		return errLineTooLong
	case errors.As(err, &se):
		// The DATA timeout from trackedConn.
		return err
	}
	return errConnLost
}

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
		" with " + withProtocol(env.SMTPUTF8, s.tls != nil) + " id " + env.ID)
	if len(env.Recipients) == 1 {
		b.WriteString("\r\n\tfor <" + env.Recipients[0].Address + ">; ")
	} else {
		b.WriteString(";\r\n\t")
	}
	// RFC 5322 §3.3 date-time.
	b.WriteString(env.ReceivedAt.Format(time.RFC1123Z) + "\r\n")
	return b.String()
}

// withProtocol is the "with" keyword of RFC 3848 (ESMTP, ESMTPS) and
// RFC 6531 §3.7.3 (UTF8SMTP, UTF8SMTPS). go-smtp accepts ESMTP parameters
// after HELO as well, and does not tell us which greeting was used, so we
// always claim ESMTP.
func withProtocol(utf8, tls bool) string {
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
