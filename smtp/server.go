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
	"net/netip"
	"os"
	"sync"
	"time"
)

// Defaults for Config. Every limit is always set: an MX without limits is
// one any client can exhaust.
const (
	// DefaultMaxMessageBytes matches `--max-message-size` (docs/design.md §4).
	DefaultMaxMessageBytes = 50 << 20
	// DefaultMaxRecipients matches `--max-recipients`; RFC 5321 §4.5.3.1.8
	// asks for at least 100.
	DefaultMaxRecipients = 1000
	// DefaultMaxLineLength bounds a line, CRLF included, for command lines
	// and DATA text lines alike; a longer line is refused, not wrapped.
	// RFC 5321 §4.5.3.1.6 allows 1000 octets for a text line, but real
	// senders exceed it and Postfix, whose line_length_limit is 2048,
	// still accepts such mail by splitting the line. We cannot split, so
	// we tolerate twice Postfix's figure: mail that Postfix accepts is not
	// bounced here, and a command line still costs at most 4 KiB of buffer.
	DefaultMaxLineLength = 4096
	// DefaultMaxReceived is the hop limit. RFC 5321 §6.3: a loop-detecting
	// server counting Received: fields SHOULD use a threshold of at
	// least 100.
	DefaultMaxReceived = 100
	// DefaultMaxConnections caps concurrent sessions per Server
	// (`--max-connections`).
	DefaultMaxConnections = 1000
	// DefaultMaxClientConnections caps concurrent sessions from one client
	// address (`--max-client-connections`), Postfix's
	// smtpd_client_connection_count_limit.
	DefaultMaxClientConnections = 50
	// DefaultMaxErrors is the number of refused commands after which a
	// session is dropped with 421, like Postfix's smtpd_hard_error_limit.
	DefaultMaxErrors = 20
	// DefaultReadTimeout and DefaultWriteTimeout follow the 5 minute
	// server timeout of RFC 5321 §4.5.3.2.7 (`--idle-timeout`).
	DefaultReadTimeout  = 5 * time.Minute
	DefaultWriteTimeout = 5 * time.Minute
	// DefaultStressReadTimeout replaces ReadTimeout for the wait on a
	// command while the server is under stress (`--stress-idle-timeout`),
	// as Postfix's stress mode shortens smtpd_timeout to 10 s: idle
	// sessions make room for ones that send mail.
	DefaultStressReadTimeout = 10 * time.Second
	// StressPercent: the server is under stress while more than this
	// share of MaxConnections is in use.
	StressPercent = 80
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
	// SIZE= and on the body (552 5.3.4): a body of exactly this many
	// octets (after dot-unstuffing, before our Received: field) is taken.
	MaxMessageBytes int64
	// MaxRecipients per transaction; the next RCPT gets 452 4.5.3.
	MaxRecipients int
	// MaxLineLength bounds command and text lines alike, CRLF included.
	MaxLineLength int
	// MaxReceived is the number of Received: fields a message may
	// already carry; more is a loop, 554 5.4.6.
	MaxReceived int
	// MaxConnections caps concurrent sessions; more are greeted with
	// 421 4.7.0 and closed. Above StressPercent of it, idle sessions wait
	// StressReadTimeout instead of ReadTimeout for their next command.
	MaxConnections int
	// MaxClientConnections caps concurrent sessions from one client
	// address; more are greeted with 421 4.7.0 and closed.
	MaxClientConnections int
	// MaxErrors is how many refused MAIL/RCPT commands a session may
	// make before it is dropped with 421 4.7.0.
	MaxErrors int

	// ReadTimeout bounds the wait for each command line, and each line
	// or chunk read during DATA and BDAT.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// StressReadTimeout bounds the wait for a command while the server is
	// under stress; it never lengthens ReadTimeout.
	StressReadTimeout time.Duration
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
	// OnReply, if set, is called with the code of every reply to MAIL,
	// RCPT and the end of data, and of every 421 that ends a session
	// (refused at connect, too many errors, timeouts).
	OnReply func(code int)
	// OnRefusal, if set, is told about every refused MAIL, RCPT and
	// message, for the message log.
	OnRefusal func(Refusal)
}

// Server is the MX listener. It speaks SMTP itself (docs/decisions.md,
// "Our own MX protocol engine"): every reply and every address form is
// ours to decide.
type Server struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	perClient map[netip.Addr]int
	active    int  // admitted sessions, == sum of perClient
	stressed  bool // as last logged
	wg        sync.WaitGroup
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
	setDefault(&cfg.MaxClientConnections, DefaultMaxClientConnections)
	setDefault(&cfg.MaxErrors, DefaultMaxErrors)
	setDefault(&cfg.ReadTimeout, DefaultReadTimeout)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.StressReadTimeout, DefaultStressReadTimeout)
	setDefault(&cfg.DataTimeout, DefaultDataTimeout)
	setDefault(&cfg.CommitTimeout, DefaultCommitTimeout)
	// bufio needs room for the longest line we accept.
	cfg.MaxLineLength = max(cfg.MaxLineLength, 64)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = newID
	}
	return &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
		perClient: map[netip.Addr]int{},
	}
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
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.admit(c)
	}
}

// admit starts a session for c, or turns it away with 421 when the server
// or this client address is at its limit.
func (s *Server) admit(c net.Conn) {
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		addr = ap.Addr().Unmap()
	}
	s.mu.Lock()
	var why string
	switch {
	case s.closed:
		why = "service shutting down"
	case s.active >= s.cfg.MaxConnections:
		why = "too many connections"
	case s.perClient[addr] >= s.cfg.MaxClientConnections:
		why = "too many connections from " + addr.String()
	}
	if why != "" {
		s.mu.Unlock()
		// RFC 5321 §3.8: a server that cannot serve now may answer the
		// greeting with 421 and close. The greeting is a few octets into
		// a fresh socket's buffer, so writing it here cannot stall Accept.
		s.reply(421)
		s.log.Warn("smtp connection refused", "remote", c.RemoteAddr().String(), "reason", why,
			"max", s.cfg.MaxConnections, "max_per_client", s.cfg.MaxClientConnections)
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = fmt.Fprintf(c, "421 4.7.0 %s Error: %s, try again later\r\n", s.cfg.Hostname, why)
		_ = c.Close()
		return
	}
	sess := newSession(s, c, addr)
	s.sessions[sess] = struct{}{}
	s.perClient[addr]++
	s.active++
	s.noteStress()
	s.wg.Add(1)
	s.mu.Unlock()

	go func() {
		defer s.wg.Done()
		defer s.release(sess)
		sess.serve()
	}()
}

func (s *Server) release(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[sess]; !ok {
		return
	}
	delete(s.sessions, sess)
	s.active--
	if s.perClient[sess.remote]--; s.perClient[sess.remote] <= 0 {
		delete(s.perClient, sess.remote)
	}
	s.noteStress()
}

// underStress reports whether more than StressPercent of MaxConnections
// is in use, Postfix's stress mode: idle sessions then get
// StressReadTimeout for their next command.
func (s *Server) underStress() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stressedLocked()
}

func (s *Server) stressedLocked() bool {
	return s.active*100 > s.cfg.MaxConnections*StressPercent
}

// noteStress logs when stress begins and ends, for the operator; mu held.
func (s *Server) noteStress() {
	now := s.stressedLocked()
	if now == s.stressed {
		return
	}
	s.stressed = now
	if now {
		// Sessions already waiting for a command get the short wait too,
		// not only those that start waiting from now on.
		until := time.Now().Add(min(s.cfg.StressReadTimeout, s.cfg.ReadTimeout))
		for sess := range s.sessions {
			if sess.idle.Load() {
				_ = sess.raw.SetReadDeadline(until)
			}
		}
		s.log.Warn("smtp under stress: idle timeout shortened", "connections", s.active,
			"max", s.cfg.MaxConnections, "idle_timeout", min(s.cfg.StressReadTimeout, s.cfg.ReadTimeout).String())
	} else {
		s.log.Info("smtp stress over: idle timeout restored", "connections", s.active,
			"idle_timeout", s.cfg.ReadTimeout.String())
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// stopListening marks the server closed and closes its listeners.
func (s *Server) stopListening() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for l := range s.listeners {
		_ = l.Close()
		delete(s.listeners, l)
	}
}

func (s *Server) dropSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.sessions {
		_ = sess.raw.Close()
	}
}

// Close stops listening and drops every session at once.
func (s *Server) Close() error {
	s.stopListening()
	s.dropSessions()
	return nil
}

// Shutdown stops listening and waits, until ctx ends, for the sessions in
// progress to finish on their own; then it drops the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopListening()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.dropSessions()
		<-done
		return ctx.Err()
	}
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
