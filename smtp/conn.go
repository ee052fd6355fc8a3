package smtp

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Reply is one SMTP reply (RFC 5321 §4.2) with its RFC 3463 enhanced
// status code. As an error it is a refusal ready to send.
type Reply struct {
	Code   int
	Status string // "5.7.1"; "" for the greeting and the EHLO reply
	Text   string // lines joined by "\n"
}

func (r *Reply) Error() string {
	if r.Status == "" {
		return strconv.Itoa(r.Code) + " " + r.Text
	}
	return strconv.Itoa(r.Code) + " " + r.Status + " " + r.Text
}

func newReply(code int, status, text string) *Reply {
	return &Reply{Code: code, Status: status, Text: text}
}

// Replies of the protocol engine. RFC 5321 §4.2.4: 500 for a command we do
// not know, 501 for bad arguments, 502 for a command we know but do not
// implement, 503 for a command out of sequence (§4.1.4, §4.3.2).
var (
	errSyntax       = newReply(500, "5.5.2", "Error: bad syntax")
	errUnknown      = newReply(500, "5.5.2", "Error: command not recognized")
	errNotImpl      = newReply(502, "5.5.1", "Error: command not implemented")
	errNoAuth       = newReply(502, "5.5.1", "Error: authentication not enabled")
	errNeedHelo     = newReply(503, "5.5.1", "Error: send HELO/EHLO first")
	errNestedMail   = newReply(503, "5.5.1", "Error: nested MAIL command")
	errNeedMail     = newReply(503, "5.5.1", "Error: need MAIL command")
	errNeedRcpt     = newReply(503, "5.5.1", "Error: need RCPT command")
	errNoValidRcpt  = newReply(554, "5.5.1", "Error: no valid recipients")
	errInBDAT       = newReply(503, "5.5.1", "Error: BDAT transfer in progress")
	errTLSActive    = newReply(503, "5.5.1", "Error: TLS already active")
	errTLSInTx      = newReply(503, "5.5.1", "Error: MAIL transaction in progress")
	errNoArgs       = newReply(501, "5.5.4", "Error: this command takes no arguments")
	errMailSyntax   = newReply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
	errRcptSyntax   = newReply(501, "5.5.4", "Syntax: RCPT TO:<address>")
	errHeloSyntax   = newReply(501, "5.5.4", "Syntax: EHLO hostname")
	errBDATSyntax   = newReply(501, "5.5.4", "Syntax: BDAT size [LAST], closing connection")
	errTempFailure  = newReply(451, "4.3.0", "Error: temporary failure, message not queued, try again later")
	errIdleTimeout  = "Error: timeout exceeded, closing connection"
	errTooManyError = "Error: too many errors, closing connection"
)

// errLineLimit is a line longer than MaxLineLength.
var errLineLimit = errors.New("smtp: line too long")

// session is one SMTP connection from the greeting to QUIT, served by one
// goroutine. It is both the protocol engine (reading commands, writing
// replies, DATA and BDAT framing, STARTTLS) and Lifeline's policy (the
// mail, rcpt and body checks in session.go and data.go).
type session struct {
	srv        *Server
	raw        net.Conn // as accepted
	nc         net.Conn // raw, or the TLS connection over it
	r          *bufio.Reader
	w          *bufio.Writer
	remote     netip.Addr
	remoteAddr string

	helo  string
	esmtp bool // the last greeting was EHLO
	tls   *tls.ConnectionState

	tx        *Envelope // nil outside a transaction
	rcptTried bool      // a RCPT was given in this transaction
	bdat      *bodySink // a BDAT transfer in progress
	dataUntil time.Time // end of the DATA/BDAT budget; zero outside one
	errors    int       // refused commands since the last accepted message

	// idle: waiting for a command, so that stress may shorten the wait
	// (Server.noteStress); the one field other goroutines read.
	idle atomic.Bool
}

func newSession(srv *Server, c net.Conn, remote netip.Addr) *session {
	s := &session{srv: srv, raw: c, remote: remote, remoteAddr: c.RemoteAddr().String()}
	s.setConn(c)
	return s
}

func (s *session) setConn(c net.Conn) {
	s.nc = c
	s.r = bufio.NewReaderSize(c, s.srv.cfg.MaxLineLength)
	s.w = bufio.NewWriterSize(c, 4096)
}

// serve runs the session until it ends. A panic ends only this session.
func (s *session) serve() {
	defer func() {
		if p := recover(); p != nil {
			s.srv.log.Error("smtp internal error", "remote", s.remoteAddr, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			s.send(newReply(421, "4.3.0", s.srv.cfg.Hostname+" Error: internal error, closing connection"))
			s.flush()
		}
		s.abortBDAT()
		_ = s.raw.Close()
	}()
	// RFC 5321 §4.2: the greeting carries no enhanced code (RFC 2034 §3).
	s.send(&Reply{Code: 220, Text: s.srv.cfg.Hostname + " ESMTP Lifeline"})
	for {
		line, err := s.readCommand()
		if err != nil {
			s.readFailed(err, false)
			return
		}
		if !s.command(line) {
			s.flush()
			return
		}
	}
}

// readCommand waits for the next command line. Replies to pipelined
// commands are held until no more input is waiting (RFC 2920 §3.1), then
// sent together.
func (s *session) readCommand() (string, error) {
	if s.r.Buffered() == 0 {
		if err := s.flush(); err != nil {
			return "", err
		}
	}
	timeout := s.srv.cfg.ReadTimeout
	if s.srv.underStress() {
		timeout = min(timeout, s.srv.cfg.StressReadTimeout)
	}
	_ = s.nc.SetReadDeadline(time.Now().Add(timeout))
	s.idle.Store(true)
	line, err := s.readLine()
	s.idle.Store(false)
	if err != nil {
		return "", err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return string(line), nil
}

// readLine returns one line, LF included, valid until the next read.
func (s *session) readLine() ([]byte, error) {
	line, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, errLineLimit
	}
	return line, err
}

// readFailed answers a read that failed: a timeout gets 421 (RFC 5321
// §4.5.3.2.7 lets a server close an idle session), an overlong line 500
// (§4.5.3.1.10); either way the session ends, since the rest of the input
// cannot be trusted to be in step. inData picks the DATA wording.
func (s *session) readFailed(err error, inData bool) {
	var ne net.Error
	switch {
	case errors.Is(err, errLineLimit):
		s.send(errLineTooLong)
	case errors.As(err, &ne) && ne.Timeout():
		s.srv.reply(421)
		if inData {
			s.send(s.dataTimeoutReply())
		} else {
			s.send(newReply(421, "4.4.2", s.srv.cfg.Hostname+" "+errIdleTimeout))
		}
	default:
		return // the client went away; nobody to answer
	}
	s.flush()
}

func (s *session) dataTimeoutReply() *Reply {
	return newReply(421, "4.4.2", s.srv.cfg.Hostname+" Error: timeout exceeded during DATA, closing connection")
}

// send queues a reply; multi-line text becomes a multi-line reply.
func (s *session) send(r *Reply) {
	_ = s.nc.SetWriteDeadline(time.Now().Add(s.srv.cfg.WriteTimeout))
	lines := strings.Split(r.Text, "\n")
	for i, l := range lines {
		sep := " "
		if i < len(lines)-1 {
			sep = "-"
		}
		if r.Status != "" {
			fmt.Fprintf(s.w, "%d%s%s %s\r\n", r.Code, sep, r.Status, l)
		} else {
			fmt.Fprintf(s.w, "%d%s%s\r\n", r.Code, sep, l)
		}
	}
}

func (s *session) flush() error {
	_ = s.nc.SetWriteDeadline(time.Now().Add(s.srv.cfg.WriteTimeout))
	return s.w.Flush()
}

// refused sends a refusal and counts it. Past MaxErrors it adds a 421 and
// ends the session, as Postfix does beyond smtpd_hard_error_limit; the
// return value says whether the session goes on.
func (s *session) refused(r *Reply) bool {
	s.send(r)
	s.errors++
	if s.errors <= s.srv.cfg.MaxErrors {
		return true
	}
	s.srv.log.Warn("smtp session dropped: too many errors", "remote", s.remote.String(),
		"helo", s.helo, "errors", s.errors)
	s.srv.reply(421)
	s.send(newReply(421, "4.7.0", s.srv.cfg.Hostname+" "+errTooManyError))
	return false
}

// command runs one command line; false ends the session.
func (s *session) command(line string) bool {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	arg = strings.TrimRight(arg, " ")
	if s.bdat != nil && verb != "BDAT" && verb != "RSET" && verb != "QUIT" && verb != "NOOP" {
		// RFC 3030 §2: between chunks only BDAT, RSET, QUIT and NOOP.
		return s.refused(errInBDAT)
	}
	switch verb {
	case "EHLO", "HELO":
		return s.hello(verb == "EHLO", arg)
	case "MAIL":
		return s.mailCmd(arg)
	case "RCPT":
		return s.rcptCmd(arg)
	case "DATA":
		return s.dataCmd(arg)
	case "BDAT":
		return s.bdatCmd(arg)
	case "RSET":
		if arg != "" {
			return s.refused(errNoArgs)
		}
		s.reset()
		s.send(newReply(250, "2.0.0", "Ok"))
	case "NOOP":
		// RFC 5321 §4.1.1.9: any argument is ignored.
		s.send(newReply(250, "2.0.0", "Ok"))
	case "QUIT":
		s.send(newReply(221, "2.0.0", "Bye"))
		return false
	case "VRFY":
		if arg == "" {
			return s.refused(newReply(501, "5.5.4", "Syntax: VRFY address"))
		}
		// RFC 5321 §3.5.3: 252 when we will not verify but will take mail.
		s.send(newReply(252, "2.0.0", "Cannot VRFY user, but will accept mail for a protected domain"))
	case "STARTTLS":
		return s.startTLS(arg)
	case "AUTH":
		// The MX never offers AUTH (docs/decisions.md, "A strict MX"): a
		// command we know and do not implement, RFC 5321 §4.2.4.
		return s.refused(errNoAuth)
	case "EXPN", "HELP", "TURN", "SEND", "SOML", "SAML", "ETRN", "ATRN", "BURL":
		return s.refused(errNotImpl)
	case "":
		return s.refused(errSyntax)
	default:
		return s.refused(errUnknown)
	}
	return true
}

// hello answers HELO and EHLO (RFC 5321 §4.1.1.1). A new greeting resets
// the transaction (§4.1.4).
func (s *session) hello(ehlo bool, arg string) bool {
	name, _, _ := strings.Cut(arg, " ")
	if name == "" {
		return s.refused(errHeloSyntax)
	}
	s.reset()
	s.helo, s.esmtp = name, ehlo
	if !ehlo {
		s.send(newReply(250, "", s.srv.cfg.Hostname))
		return true
	}
	cfg := &s.srv.cfg
	lines := []string{cfg.Hostname,
		"PIPELINING", // RFC 2920
		fmt.Sprintf("SIZE %d", cfg.MaxMessageBytes), // RFC 1870
		"8BITMIME",            // RFC 6152; SMTPUTF8 requires it (RFC 6531 §3.1 item 8)
		"ENHANCEDSTATUSCODES", // RFC 2034
		"DSN",                 // RFC 3461
		"SMTPUTF8",            // RFC 6531: UTF-8 envelopes and headers pass untouched
		"CHUNKING",            // RFC 3030; BINARYMIME is not offered, it would let bare CR and LF in
		fmt.Sprintf("LIMITS RCPTMAX=%d", cfg.MaxRecipients), // RFC 9422
	}
	if cfg.TLSConfig != nil && s.tls == nil {
		lines = append(lines, "STARTTLS") // RFC 3207
	}
	s.send(&Reply{Code: 250, Text: strings.Join(lines, "\n")})
	return true
}

// reset ends the transaction (RSET, a new greeting, STARTTLS).
func (s *session) reset() {
	s.abortBDAT()
	s.tx = nil
	s.rcptTried = false
	s.dataUntil = time.Time{}
}

func (s *session) abortBDAT() {
	if s.bdat != nil {
		s.bdat.fail(errConnLost)
		s.bdat = nil
	}
}

func (s *session) mailCmd(arg string) bool {
	switch {
	case s.helo == "":
		return s.refusedMail(arg, errNeedHelo)
	case s.tx != nil:
		// RFC 5321 §4.1.1.2: MAIL inside a transaction is out of sequence.
		return s.refusedMail(arg, errNestedMail)
	}
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		return s.refusedMail(arg, errMailSyntax)
	}
	from, params, err := parseReversePath(rest)
	if err != nil {
		return s.refusedMail(rest, err)
	}
	opts, err := parseMailParams(params)
	if err != nil {
		return s.refusedMail(from, err)
	}
	if err := s.mail(from, opts); err != nil {
		return s.refusedMail(from, err)
	}
	s.srv.reply(250)
	s.send(newReply(250, "2.1.0", "Ok"))
	return true
}

func (s *session) refusedMail(from string, err *Reply) bool {
	s.srv.reply(err.Code)
	s.logRefusal("MAIL", "", from, nil, err)
	return s.refused(err)
}

func (s *session) rcptCmd(arg string) bool {
	if s.tx == nil {
		return s.refusedRcpt(arg, errNeedMail)
	}
	s.rcptTried = true
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		return s.refusedRcpt(arg, errRcptSyntax)
	}
	path, params, err := parseForwardPath(rest)
	if err != nil {
		return s.refusedRcpt(rest, err)
	}
	opts, err := parseRcptParams(params)
	if err != nil {
		return s.refusedRcpt(path, err)
	}
	if err := s.rcpt(path, opts); err != nil {
		if err.Status == "5.7.1" {
			s.srv.log.Info("smtp recipient refused", "remote", s.remote.String(),
				"helo", s.helo, "rcpt", path, "code", err.Code)
		}
		return s.refusedRcpt(path, err)
	}
	s.srv.reply(250)
	s.send(newReply(250, "2.1.5", "Ok"))
	return true
}

func (s *session) refusedRcpt(to string, err *Reply) bool {
	s.srv.reply(err.Code)
	from := ""
	if s.tx != nil {
		from = s.tx.From
	}
	s.logRefusal("RCPT", "", from, []string{to}, err)
	return s.refused(err)
}

// sequenceForData is what DATA and BDAT need first: a transaction with a
// recipient. RFC 5321 §3.3 lets a server answer 503 or 554 when every RCPT
// was refused; like Postfix we say 554 then, and 503 when none was given.
func (s *session) sequenceForData() *Reply {
	switch {
	case s.tx == nil:
		return errNeedMail
	case len(s.tx.Recipients) > 0:
		return nil
	case s.rcptTried:
		return errNoValidRcpt
	}
	return errNeedRcpt
}

// dataCmd runs DATA (RFC 5321 §4.1.1.4).
func (s *session) dataCmd(arg string) bool {
	if arg != "" {
		return s.refused(errNoArgs)
	}
	if r := s.sequenceForData(); r != nil {
		return s.refused(r)
	}
	env := s.beginMessage()
	sink := s.openSink(env)
	s.send(&Reply{Code: 354, Text: "End data with <CR><LF>.<CR><LF>"})
	if err := s.flush(); err != nil {
		sink.fail(errConnLost)
		return false
	}
	if err := s.readData(sink); err != nil {
		sink.fail(errConnLost)
		s.endMessage(env, sink, err)
		s.readFailed(err, true)
		return false
	}
	return s.endMessage(env, sink, nil)
}

// readData reads a DATA body up to the line "." (RFC 5321 §4.5.2),
// undoing dot-stuffing, into sink. Only CRLF "." CRLF ends the data: a dot
// line after a bare LF is body (and the body is then refused for the bare
// LF), so no look-alike ends it early (SMTP smuggling, CVE-2023-51764).
// The error is a failed read: timeout, overlong line or a lost client.
func (s *session) readData(sink *bodySink) error {
	atLineStart := true // the 354 follows the DATA line's CRLF
	for {
		s.dataDeadline()
		line, err := s.readLine()
		if err != nil {
			return err
		}
		if atLineStart && line[0] == '.' {
			if len(line) == 3 && line[1] == '\r' {
				return nil
			}
			line = line[1:]
		}
		sink.write(line)
		atLineStart = len(line) >= 2 && line[len(line)-2] == '\r'
	}
}

// dataDeadline bounds the next read by ReadTimeout and by the whole
// phase's budget (DataTimeout).
func (s *session) dataDeadline() {
	d := time.Now().Add(s.srv.cfg.ReadTimeout)
	if !s.dataUntil.IsZero() && d.After(s.dataUntil) {
		d = s.dataUntil
	}
	_ = s.nc.SetReadDeadline(d)
}

// bdatCmd runs one RFC 3030 chunk: "BDAT" SP size [SP "LAST"].
func (s *session) bdatCmd(arg string) bool {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || (len(f) == 2 && !strings.EqualFold(f[1], "LAST")) {
		// The size of the chunk that follows is unknown: the rest of the
		// input cannot be read in step, so the session ends.
		s.send(errBDATSyntax)
		return false
	}
	size, err := strconv.ParseUint(f[0], 10, 63)
	if err != nil {
		s.send(errBDATSyntax)
		return false
	}
	last := len(f) == 2
	if s.bdat == nil {
		if r := s.sequenceForData(); r != nil {
			// RFC 3030 §2: the chunk follows even a refused BDAT.
			if err := s.readChunk(size, nil); err != nil {
				s.readFailed(err, true)
				return false
			}
			return s.refused(r)
		}
		env := s.beginMessage()
		s.bdat = s.openSink(env)
	}
	sink := s.bdat
	if err := s.readChunk(size, sink); err != nil {
		sink.fail(errConnLost)
		s.bdat = nil
		s.endMessage(sink.env, sink, err)
		s.readFailed(err, true)
		return false
	}
	if !last && sink.err == nil {
		s.send(newReply(250, "2.0.0", fmt.Sprintf("Ok: %d octets received", size)))
		return true
	}
	// The last chunk, or a refusal found in this one: the transaction ends
	// here and later chunks get 503 (their data is still read and dropped).
	s.bdat = nil
	return s.endMessage(sink.env, sink, nil)
}

// readChunk reads size octets of BDAT data into sink, or discards them
// when sink is nil.
func (s *session) readChunk(size uint64, sink *bodySink) error {
	buf := make([]byte, 32<<10)
	for size > 0 {
		s.dataDeadline()
		n := int(min(size, uint64(len(buf))))
		n, err := io.ReadFull(s.r, buf[:n])
		if n > 0 && sink != nil {
			sink.write(buf[:n])
		}
		size -= uint64(n)
		if err != nil {
			return err
		}
	}
	return nil
}

// startTLS runs RFC 3207 STARTTLS.
func (s *session) startTLS(arg string) bool {
	switch {
	case s.srv.cfg.TLSConfig == nil:
		return s.refused(errNotImpl)
	case s.tls != nil:
		return s.refused(errTLSActive)
	case arg != "":
		return s.refused(errNoArgs)
	case s.tx != nil:
		return s.refused(errTLSInTx)
	}
	s.send(newReply(220, "2.0.0", "Ready to start TLS"))
	if err := s.flush(); err != nil {
		return false
	}
	if s.r.Buffered() > 0 {
		// Commands sent after STARTTLS but before the handshake came in
		// the clear and would be taken as protected: the STARTTLS
		// command injection attack (CVE-2011-0411). A client may not
		// pipeline past STARTTLS (RFC 3207 §4), so the session ends.
		s.srv.log.Warn("smtp input after STARTTLS before the handshake; closing", "remote", s.remoteAddr)
		return false
	}
	tc := tls.Server(s.raw, s.srv.cfg.TLSConfig)
	_ = s.raw.SetDeadline(time.Now().Add(s.srv.cfg.ReadTimeout))
	if err := tc.Handshake(); err != nil {
		s.srv.log.Debug("smtp TLS handshake failed", "remote", s.remoteAddr, "err", err)
		return false
	}
	_ = s.raw.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	// RFC 3207 §4.2: forget everything learnt before TLS, the greeting
	// included; the client must greet again.
	s.reset()
	s.tls, s.helo, s.esmtp = &st, "", false
	s.setConn(tc)
	return true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}
