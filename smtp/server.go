package smtp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// Defaults for Config. go-smtp itself has no limits unless told
// (docs/design.md §5), so every one of these is always set.
const (
	// DefaultMaxMessageBytes matches `--max-message-size` (docs/design.md §4).
	DefaultMaxMessageBytes = 50 << 20
	// DefaultMaxRecipients matches `--max-recipients`; RFC 5321 §4.5.3.1.8
	// asks for at least 100.
	DefaultMaxRecipients = 1000
	// DefaultMaxLineLength bounds a line, CRLF included. go-smtp applies
	// one limit to command lines and to DATA text lines alike, and a long
	// line is refused, not wrapped. RFC 5321 §4.5.3.1.6 allows 1000 octets
	// for a text line, but real senders exceed it and Postfix, whose
	// line_length_limit is 2048, still accepts such mail by splitting the
	// line. We cannot split, so we tolerate twice Postfix's figure: mail
	// that Postfix accepts is not bounced here, and a command line still
	// costs at most 4 KiB of buffer.
	DefaultMaxLineLength = 4096
	// DefaultMaxReceived is the hop limit. RFC 5321 §6.3: a loop-detecting
	// server counting Received: fields SHOULD use a threshold of at
	// least 100.
	DefaultMaxReceived = 100
	// DefaultMaxConnections caps concurrent sessions per Server.
	DefaultMaxConnections = 1000
	// DefaultMaxErrors is the number of refused commands after which a
	// session is dropped with 421, like Postfix's smtpd_hard_error_limit.
	DefaultMaxErrors = 20
	// DefaultReadTimeout and DefaultWriteTimeout follow the 5 minute
	// server timeout of RFC 5321 §4.5.3.2.7.
	DefaultReadTimeout  = 5 * time.Minute
	DefaultWriteTimeout = 5 * time.Minute
	// DefaultDataTimeout bounds a whole DATA or BDAT phase. RFC 5321
	// §4.5.3.2.5 only bounds the gap between reads (3 minutes for the
	// client); a total stops a client from holding a session forever by
	// trickling a byte per minute.
	DefaultDataTimeout = 10 * time.Minute
	// DefaultCommitTimeout bounds Queue.Enqueue: quorum replication plus a
	// Raft commit. The sender waits meanwhile; RFC 5321 §4.5.3.2.6 gives
	// it 10 minutes after the final dot, so 30 s leaves plenty of room.
	DefaultCommitTimeout = 30 * time.Second
)

// Config configures the MX listener. Zero values take the defaults above.
type Config struct {
	// Hostname is our name in the greeting, in replies and in Received:.
	// Default: os.Hostname().
	Hostname string

	// MaxMessageBytes is advertised as EHLO SIZE and enforced at MAIL
	// SIZE= and on the body (552 5.3.4). go-smtp's DATA reader reports
	// the limit as exceeded once it has delivered MaxMessageBytes octets,
	// before it sees whether the final dot follows, so a DATA body must
	// in fact be at least one octet smaller (BDAT is exact). go-smtp
	// parses SIZE= as a 32-bit number: a declared size of 4 GiB or more
	// gets its 501 5.5.4 rather than 552.
	MaxMessageBytes int64
	// MaxRecipients per transaction; the next RCPT gets 452 4.5.3.
	MaxRecipients int
	// MaxLineLength bounds command and text lines alike, CRLF included.
	MaxLineLength int
	// MaxReceived is the number of Received: fields a message may
	// already carry; more is a loop, 554 5.4.6.
	MaxReceived int
	// MaxConnections caps concurrent sessions; more are greeted with
	// 421 4.7.0 and closed.
	MaxConnections int
	// MaxErrors is how many refused MAIL/RCPT commands a session may
	// make before it is dropped with 421 4.7.0.
	MaxErrors int

	// ReadTimeout bounds each command line, and each read during DATA.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// DataTimeout bounds a whole DATA/BDAT phase. On expiry the client
	// gets 421 and the connection is closed.
	DataTimeout time.Duration
	// CommitTimeout bounds Queue.Enqueue; expiry answers 451 4.3.0.
	CommitTimeout time.Duration

	// TLSConfig enables STARTTLS; nil offers no STARTTLS.
	TLSConfig *tls.Config
	// Logger receives one line per transaction outcome. Default: discard.
	Logger *slog.Logger
	// Now is the clock for Received: and Envelope.ReceivedAt (network
	// deadlines use the real clock). Default: time.Now.
	Now func() time.Time
	// NewID makes queue IDs. Default: 16 characters of crypto/rand base32.
	NewID func() string
	// Queue is where accepted mail goes. Required.
	Queue Queue
	// OnReply, if set, is called with the code of every reply the session
	// decides: MAIL, RCPT, end of data, and refusals at connect. Replies
	// go-smtp makes on its own (syntax errors, its recipient and size
	// checks) are not seen.
	OnReply func(code int)
	// OnRefusal, if set, is told about every refused MAIL, RCPT and
	// message, for the message log.
	OnRefusal func(Refusal)
}

// Server is the MX listener: go-smtp with Lifeline's policy as its backend.
type Server struct {
	cfg   Config
	log   *slog.Logger
	smtp  *gosmtp.Server
	slots chan struct{}
}

// NewServer builds a Server; it does not listen yet.
func NewServer(cfg Config) *Server {
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
		if cfg.Hostname == "" {
			cfg.Hostname = "localhost"
		}
	}
	setDefault(&cfg.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&cfg.MaxRecipients, DefaultMaxRecipients)
	setDefault(&cfg.MaxLineLength, DefaultMaxLineLength)
	setDefault(&cfg.MaxReceived, DefaultMaxReceived)
	setDefault(&cfg.MaxConnections, DefaultMaxConnections)
	setDefault(&cfg.MaxErrors, DefaultMaxErrors)
	setDefault(&cfg.ReadTimeout, DefaultReadTimeout)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.DataTimeout, DefaultDataTimeout)
	setDefault(&cfg.CommitTimeout, DefaultCommitTimeout)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = newID
	}

	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		slots: make(chan struct{}, cfg.MaxConnections),
	}

	g := gosmtp.NewServer(gosmtp.BackendFunc(s.newSession))
	g.Domain = cfg.Hostname
	g.MaxMessageBytes = cfg.MaxMessageBytes
	g.MaxRecipients = cfg.MaxRecipients
	g.MaxLineLength = cfg.MaxLineLength
	g.ReadTimeout = cfg.ReadTimeout
	g.WriteTimeout = cfg.WriteTimeout
	g.TLSConfig = cfg.TLSConfig
	// The MX takes mail for protected domains from anyone; it has no
	// users, so no AUTH is offered (the session has no AuthSession).
	g.AllowInsecureAuth = false
	g.EnableDSN = true
	// RFC 6531: we pass UTF-8 envelopes and headers through untouched.
	// go-smtp always offers 8BITMIME, which SMTPUTF8 requires (§3.1 item 8).
	g.EnableSMTPUTF8 = true
	// BINARYMIME would let bare CR and LF in by definition.
	g.EnableBINARYMIME = false
	g.ErrorLog = errorLog{s.log}
	s.smtp = g
	return s
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Serve accepts MX sessions on l until Close or Shutdown. It returns nil
// after Close or Shutdown.
func (s *Server) Serve(l net.Listener) error {
	if s.cfg.Queue == nil {
		return errors.New("smtp: Config.Queue is nil")
	}
	err := s.smtp.Serve(&listener{Listener: l, srv: s})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Close stops listening and drops every session at once.
func (s *Server) Close() error {
	return ignoreClosed(s.smtp.Close())
}

// Shutdown stops listening and waits, until ctx ends, for the sessions in
// progress to finish on their own.
func (s *Server) Shutdown(ctx context.Context) error {
	return ignoreClosed(s.smtp.Shutdown(ctx))
}

func ignoreClosed(err error) error {
	if errors.Is(err, gosmtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (s *Server) reply(code int) {
	if s.cfg.OnReply != nil {
		s.cfg.OnReply(code)
	}
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newID returns 16 upper-case base32 characters (80 random bits): unique
// across nodes without coordination, and an Atom as RFC 5321 §4.4 wants for
// the Received: id clause.
func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return idEncoding.EncodeToString(b[:])
}

// errorLog carries go-smtp's internal complaints (mostly clients that hang
// up or fail a TLS handshake) into slog.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.log(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.log(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (e errorLog) log(msg string) {
	if strings.Contains(msg, "panic") {
		e.l.Error("smtp internal error", "err", msg)
		return
	}
	e.l.Debug("smtp connection error", "err", msg)
}

// Refusal is one refused command or message, as the message log keeps it.
type Refusal struct {
	At      time.Time
	Stage   string // MAIL, RCPT or DATA
	QueueID string
	From    string
	To      []string
	Code    int
	Text    string
	Remote  string
	Helo    string
}
