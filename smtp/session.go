package smtp

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

var errTempFailure = &gosmtp.SMTPError{
	Code:         451,
	EnhancedCode: gosmtp.EnhancedCode{4, 3, 0},
	Message:      "Error: temporary failure, message not queued, try again later",
}

// session is one SMTP session from EHLO (or from the EHLO after STARTTLS)
// to QUIT. go-smtp calls it from the connection's goroutine, except that
// Data runs on a goroutine of its own for BDAT; mu guards what both touch.
type session struct {
	srv    *Server
	conn   *gosmtp.Conn
	raw    *trackedConn // nil only if the listener was not ours
	remote netip.Addr
	helo   string
	tls    *tls.ConnectionState

	mu     sync.Mutex
	tx     *Envelope // nil outside a transaction
	errors int       // refused MAIL/RCPT since the last accepted message
}

func (s *Server) newSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	sess := &session{srv: s, conn: c, helo: c.Hostname()}
	nc := c.Conn()
	if st, ok := c.TLSConnectionState(); ok {
		sess.tls = &st
	}
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sess.raw, _ = nc.(*trackedConn)
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		sess.remote = ap.Addr().Unmap()
	}
	return sess, nil
}

func (s *session) Reset() {
	s.mu.Lock()
	s.tx = nil
	s.mu.Unlock()
	if s.raw != nil {
		s.raw.endData()
	}
}

func (s *session) Logout() error {
	s.Reset()
	return nil
}

// Mail starts a transaction. The queue ID is chosen here so that DATA can
// put it into the Received: field (RFC 5321 §4.4 "id").
func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if err := s.mail(from, opts); err != nil {
		s.logRefusal("MAIL", "", from, nil, err)
		return s.refuse(err)
	}
	s.srv.reply(250)
	return nil
}

func (s *session) mail(from string, opts *gosmtp.MailOptions) error {
	s.mu.Lock()
	busy := s.tx != nil
	s.mu.Unlock()
	if busy {
		// RFC 5321 §4.1.1.2: MAIL inside a transaction is out of sequence.
		return &gosmtp.SMTPError{Code: 503, EnhancedCode: gosmtp.EnhancedCode{5, 5, 1},
			Message: "Error: nested MAIL command"}
	}
	if opts == nil {
		opts = &gosmtp.MailOptions{}
	}
	// RFC 1870 §6.2: a declared size over our limit is refused at MAIL.
	if opts.Size > s.srv.cfg.MaxMessageBytes {
		return &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 3, 4},
			Message: "Error: message size exceeds fixed maximum message size"}
	}
	if err := checkSender(from, opts.UTF8); err != nil {
		return err
	}
	// RFC 1870 §6.1: insufficient storage for the declared size (or, with
	// none declared, for any message) is a 452 at MAIL, before the client
	// sends the body; RFC 3463 §3.4 calls it 4.3.1, mail system full.
	if g, ok := s.srv.cfg.Queue.(StorageGauge); ok {
		if err := g.Room(opts.Size); err != nil {
			return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 3, 1},
				Message: "Error: insufficient system storage, try again later"}
		}
	}
	if s.raw != nil {
		s.raw.endData()
	}
	env := &Envelope{
		ID:         s.srv.cfg.NewID(),
		From:       from,
		Ret:        string(opts.Return), // RFC 3461 §4.3, validated by go-smtp
		EnvID:      opts.EnvelopeID,     // RFC 3461 §4.4, xtext-decoded by go-smtp
		Body:       string(opts.Body),   // RFC 6152
		SMTPUTF8:   opts.UTF8,           // RFC 6531 §3.4
		Helo:       s.helo,
		RemoteAddr: s.conn.Conn().RemoteAddr().String(),
		TLS:        s.tls != nil,
	}
	s.mu.Lock()
	s.tx = env
	s.mu.Unlock()
	return nil
}

func (s *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	err := s.rcpt(to, opts)
	if err != nil {
		from := ""
		s.mu.Lock()
		if s.tx != nil {
			from = s.tx.From
		}
		s.mu.Unlock()
		s.logRefusal("RCPT", "", from, []string{to}, err)
		if e, ok := err.(*gosmtp.SMTPError); ok && e.EnhancedCode == (gosmtp.EnhancedCode{5, 7, 1}) {
			s.srv.log.Info("smtp recipient refused", "remote", s.remote.String(),
				"helo", s.helo, "rcpt", to, "code", e.Code)
		}
		return s.refuse(err)
	}
	s.srv.reply(250)
	return nil
}

func (s *session) rcpt(to string, opts *gosmtp.RcptOptions) error {
	s.mu.Lock()
	tx := s.tx
	s.mu.Unlock()
	if tx == nil {
		return &gosmtp.SMTPError{Code: 503, EnhancedCode: gosmtp.EnhancedCode{5, 5, 1},
			Message: "Error: need MAIL command"}
	}
	if opts == nil {
		opts = &gosmtp.RcptOptions{}
	}
	// go-smtp counts too; this also holds if its count and ours drift.
	if len(tx.Recipients) >= s.srv.cfg.MaxRecipients {
		return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 5, 3},
			Message: "Error: too many recipients"}
	}
	rcpt, err := ParseRecipient(to, tx.SMTPUTF8, s.srv.cfg.Queue.Protected)
	if err != nil {
		return err
	}
	// RFC 3461 §4.1: NEVER must stand alone; go-smtp checks this too.
	if err := checkNotify(opts.Notify); err != nil {
		return err
	}
	for _, n := range opts.Notify {
		rcpt.Notify = append(rcpt.Notify, string(n))
	}
	if opts.OriginalRecipient != "" {
		// RFC 3461 §4.2: ORCPT is addr-type ";" xtext, kept decoded.
		rcpt.ORCPT = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx != tx {
		return errTempFailure
	}
	// A repeated RCPT is answered 250 but delivered once; the first one's
	// DSN parameters win.
	for _, r := range tx.Recipients {
		if r.Address == rcpt.Address {
			return nil
		}
	}
	tx.Recipients = append(tx.Recipients, rcpt)
	return nil
}

func checkNotify(notify []gosmtp.DSNNotify) error {
	bad := &gosmtp.SMTPError{Code: 501, EnhancedCode: gosmtp.EnhancedCode{5, 5, 4},
		Message: "Error: malformed NOTIFY parameter"}
	seen := map[gosmtp.DSNNotify]bool{}
	for _, n := range notify {
		switch n {
		case gosmtp.DSNNotifyNever, gosmtp.DSNNotifySuccess, gosmtp.DSNNotifyFailure, gosmtp.DSNNotifyDelayed:
		default:
			return bad
		}
		if seen[n] {
			return bad
		}
		seen[n] = true
	}
	if seen[gosmtp.DSNNotifyNever] && len(seen) > 1 {
		return bad
	}
	return nil
}

// refuse counts a refused command and, past MaxErrors, sends the refusal
// and a 421 itself and hangs up, as Postfix does beyond
// smtpd_hard_error_limit. go-smtp's own limit covers only unknown commands.
func (s *session) refuse(err error) error {
	code := 451 // what go-smtp sends for a plain error
	if e, ok := err.(*gosmtp.SMTPError); ok {
		code = e.Code
	}
	s.srv.reply(code)
	s.mu.Lock()
	s.errors++
	n := s.errors
	s.mu.Unlock()
	if n <= s.srv.cfg.MaxErrors {
		return err
	}
	s.srv.log.Warn("smtp session dropped: too many errors", "remote", s.remote.String(),
		"helo", s.helo, "errors", n)
	s.srv.reply(421)
	first, ok := err.(*gosmtp.SMTPError)
	if !ok {
		first = errTempFailure
	}
	s.hangUp(first, &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0},
		Message: s.srv.cfg.Hostname + " Error: too many errors, closing connection"})
	return err
}

// hangUp writes replies straight to the connection and closes it. It is
// for the moments when go-smtp would otherwise keep reading; the reply it
// writes itself afterwards goes nowhere.
func (s *session) hangUp(replies ...*gosmtp.SMTPError) {
	nc := s.conn.Conn()
	_ = nc.SetWriteDeadline(time.Now().Add(s.srv.cfg.WriteTimeout))
	for _, e := range replies {
		ec := e.EnhancedCode
		_, _ = fmt.Fprintf(nc, "%d %d.%d.%d %s\r\n", e.Code, ec[0], ec[1], ec[2], e.Message)
	}
	_ = s.conn.Close()
}

// logRefusal hands a refusal to the message log.
func (s *session) logRefusal(stage, id, from string, to []string, err error) {
	if s.srv.cfg.OnRefusal == nil {
		return
	}
	r := Refusal{At: s.srv.cfg.Now(), Stage: stage, QueueID: id, From: from, To: to, Code: 451,
		Text: err.Error(), Remote: s.remote.String(), Helo: s.helo}
	if e, ok := err.(*gosmtp.SMTPError); ok {
		r.Code = e.Code
		r.Text = e.Message
	}
	s.srv.cfg.OnRefusal(r)
}
