package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Dialer opens TCP connections; *net.Dialer satisfies it. It also resolves
// host names, so MX host names reach it unresolved and stay available for
// TLS server names and for Remote-MTA in DSNs.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Timeouts bound every wait on the server. A zero field takes the default,
// which is RFC 5321 §4.5.3.2's recommendation where it makes one.
type Timeouts struct {
	Connect   time.Duration // 30s; RFC 5321 names none
	Greeting  time.Duration // 5m, §4.5.3.2.1
	Command   time.Duration // 5m: EHLO, STARTTLS and its handshake, RSET, QUIT
	Mail      time.Duration // 5m, §4.5.3.2.2
	Rcpt      time.Duration // 5m, §4.5.3.2.3
	DataInit  time.Duration // 2m, §4.5.3.2.4: waiting for 354
	DataBlock time.Duration // 3m, §4.5.3.2.5: each write of the body
	DataTerm  time.Duration // 10m, §4.5.3.2.6: the reply to the final dot
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Connect, 30*time.Second)
	def(&t.Greeting, 5*time.Minute)
	def(&t.Command, 5*time.Minute)
	def(&t.Mail, 5*time.Minute)
	def(&t.Rcpt, 5*time.Minute)
	def(&t.DataInit, 2*time.Minute)
	def(&t.DataBlock, 3*time.Minute)
	def(&t.DataTerm, 10*time.Minute)
	return t
}

// Client holds what every outbound connection shares. It is safe for
// concurrent use as long as its fields are not changed.
type Client struct {
	Dialer Dialer
	// LocalName is the name we give in EHLO; RFC 5321 §4.1.4 wants the
	// node's FQDN. "localhost" when empty.
	LocalName string
	// TLSConfig is used for STARTTLS, which is tried whenever the server
	// offers it. ServerName is filled in from the host dialed. nil means
	// a zero config: certificates are verified against the system roots.
	TLSConfig *tls.Config
	// Timeouts; see the type.
	Timeouts Timeouts
	// Logger, when set, hears about TLS trouble we worked around.
	Logger *slog.Logger
}

// Conn is one SMTP session that can carry several messages in turn. It is
// not safe for concurrent use.
type Conn struct {
	client *Client
	t      Timeouts
	host   string
	raw    net.Conn // as dialed; closing it stops everything above
	nc     net.Conn // raw, or the TLS connection over it
	r      *bufio.Reader
	w      *bufio.Writer
	ext    map[string]string
	tls    *tls.ConnectionState

	// inTx: MAIL was sent since the last RSET, so the next message needs
	// one first.
	inTx bool
	// broken holds why the session is unusable; every later Send fails
	// with it as a temporary failure.
	broken *Reply
}

// Dial tries the candidates in order and returns a session with the first
// that greets us and accepts EHLO (or HELO). If STARTTLS is offered it is
// used; if the TLS handshake fails, that host is dialed once more without
// TLS, because opportunistic TLS (RFC 7435) prefers cleartext to no
// delivery.
//
// The error is an *Error naming every candidate's failure. It is Permanent
// only if every candidate refused us with a 5xx: a host that is down may
// come back, one that rejects our greeting will not.
func (cl *Client) Dial(ctx context.Context, candidates []string) (*Conn, error) {
	if cl.Dialer == nil {
		return nil, &Error{Reply: Reply{Enhanced: "4.3.5", Text: "no dialer configured"}}
	}
	if len(candidates) == 0 {
		return nil, &Error{Reply: Reply{Enhanced: "4.4.4", Text: "no server to deliver to"}}
	}
	var errs []*Error
	var addrs []string
	for _, addr := range candidates {
		if ctx.Err() != nil {
			break
		}
		c, err, tlsFailed := cl.dialOne(ctx, addr, true)
		if tlsFailed {
			if cl.Logger != nil {
				cl.Logger.Warn("STARTTLS failed, delivering without TLS", "addr", addr, "err", err.Text)
			}
			c, err, _ = cl.dialOne(ctx, addr, false)
		}
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		addrs = append(addrs, addr)
	}
	switch len(errs) {
	case 0:
		return nil, &Error{Reply: netReply(ctx, ctx.Err(), "", false), err: ctx.Err()}
	case 1:
		return nil, errs[0]
	}
	// Several hosts failed: the operator needs each one's reason.
	texts := make([]string, len(errs))
	permanent := true
	for i, e := range errs {
		texts[i] = addrs[i] + ": " + e.describe()
		permanent = permanent && e.Permanent
	}
	last := errs[len(errs)-1]
	return nil, &Error{
		Reply:     Reply{Enhanced: last.Enhanced, Text: strings.Join(texts, "; ")},
		Permanent: permanent,
		Host:      last.Host,
		err:       last.err,
	}
}

// Deliver routes nothing: it dials the candidates, sends msg and says
// goodbye. A failure to reach any server becomes every recipient's outcome.
func (cl *Client) Deliver(ctx context.Context, candidates []string, msg *Message) *Result {
	c, err := cl.Dial(ctx, candidates)
	if err != nil {
		e := err.(*Error)
		res := newResult(msg, e.Host)
		st := TempFail
		if e.Permanent {
			st = PermFail
		}
		res.settle(st, e.Reply)
		return res
	}
	res := c.Send(ctx, msg)
	c.Close()
	return res
}

// dialOne returns tlsFailed when the host offered STARTTLS and the
// handshake failed; the connection is closed then.
func (cl *Client) dialOne(ctx context.Context, addr string, tryTLS bool) (_ *Conn, _ *Error, tlsFailed bool) {
	t := cl.Timeouts.withDefaults()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &Error{Reply: Reply{Enhanced: "4.4.4", Text: "bad server address: " + err.Error()}, err: err}, false
	}
	dctx, cancel := context.WithTimeout(ctx, t.Connect)
	nc, err := cl.Dialer.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return nil, &Error{Reply: netReply(ctx, err, "", false), Host: host, err: err}, false
	}
	c := &Conn{client: cl, t: t, host: host, raw: nc}
	c.setConn(nc)
	defer c.watch(ctx)()

	fail := func(rep Reply, err error) *Error {
		c.raw.Close()
		return &Error{Reply: rep, Permanent: rep.permanent(), Host: host, err: err}
	}

	c.deadline(ctx, t.Greeting)
	greet, err := readReply(c.r)
	if err != nil {
		return nil, fail(netReply(ctx, err, "waiting for the greeting", true), err), false
	}
	if greet.Code != 220 {
		// RFC 5321 §3.1: a server that will not serve us still expects
		// QUIT, and may say why in its reply to it.
		c.quit(ctx)
		return nil, fail(greet, nil), false
	}

	if rep, err := c.hello(ctx); err != nil || !rep.ok() {
		if err != nil {
			return nil, fail(netReply(ctx, err, "during EHLO", true), err), false
		}
		c.quit(ctx)
		return nil, fail(rep, nil), false
	}

	if _, ok := c.ext["STARTTLS"]; ok && tryTLS {
		rep, err := c.cmd(ctx, t.Command, "STARTTLS")
		if err != nil {
			return nil, fail(netReply(ctx, err, "during STARTTLS", true), err), false
		}
		// RFC 3207 §4: a refusal (454) leaves the session as it was, in
		// cleartext, which opportunistic TLS accepts.
		if rep.Code == 220 {
			if c.r.Buffered() > 0 {
				// Bytes that arrived before the handshake were sent in
				// the clear and would be read as if protected; this is the
				// STARTTLS command injection attack.
				return nil, fail(Reply{Enhanced: "4.7.0", Text: "server sent data before the TLS handshake"}, nil), false
			}
			if err := c.startTLS(ctx); err != nil {
				return nil, fail(Reply{Enhanced: "4.7.0", Text: "TLS handshake failed: " + err.Error()}, err), true
			}
			// RFC 3207 §4.2: forget what was learned in cleartext.
			if rep, err := c.hello(ctx); err != nil || !rep.ok() {
				if err != nil {
					return nil, fail(netReply(ctx, err, "during EHLO after STARTTLS", true), err), false
				}
				c.quit(ctx)
				return nil, fail(rep, nil), false
			}
		}
	}
	return c, nil, false
}

func (c *Conn) startTLS(ctx context.Context) error {
	cfg := &tls.Config{}
	if c.client.TLSConfig != nil {
		cfg = c.client.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = c.host
	}
	tc := tls.Client(c.raw, cfg)
	c.deadline(ctx, c.t.Command)
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	st := tc.ConnectionState()
	c.tls = &st
	c.setConn(tc)
	return nil
}

// hello sends EHLO, falling back to HELO when the server does not know
// EHLO (RFC 5321 §4.1.4 and §3.2). A HELO session has no extensions.
func (c *Conn) hello(ctx context.Context) (Reply, error) {
	name := c.client.LocalName
	if name == "" {
		name = "localhost"
	}
	c.ext = map[string]string{}
	rep, err := c.cmd(ctx, c.t.Command, "EHLO "+name)
	if err != nil {
		return rep, err
	}
	if rep.permanent() {
		return c.cmd(ctx, c.t.Command, "HELO "+name)
	}
	if rep.ok() {
		lines := strings.Split(rep.Text, "\n")
		for _, l := range lines[1:] {
			kw, param, _ := strings.Cut(strings.TrimSpace(l), " ")
			c.ext[strings.ToUpper(kw)] = param
		}
	}
	return rep, nil
}

// Close ends the session with QUIT (RFC 5321 §4.1.1.10) and closes the
// connection. A session that already broke is just closed.
func (c *Conn) Close() error {
	if c.broken == nil {
		c.quit(context.Background())
		c.broken = &Reply{Enhanced: "4.4.2", Text: "session closed"}
	}
	return c.raw.Close()
}

// quit says goodbye without waiting long: nothing depends on the answer.
func (c *Conn) quit(ctx context.Context) {
	c.cmd(ctx, min(c.t.Command, 30*time.Second), "QUIT")
}

// TLSConnectionState reports whether STARTTLS succeeded and with what.
func (c *Conn) TLSConnectionState() (tls.ConnectionState, bool) {
	if c.tls == nil {
		return tls.ConnectionState{}, false
	}
	return *c.tls, true
}

// Extension reports whether the server advertised ext in its last EHLO
// reply, and with which parameter.
func (c *Conn) Extension(ext string) (bool, string) {
	p, ok := c.ext[strings.ToUpper(ext)]
	return ok, p
}

func (c *Conn) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// maxSize is the RFC 1870 fixed maximum the server declared; 0 for none.
func (c *Conn) maxSize() int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(c.ext["SIZE"]), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func (c *Conn) setConn(nc net.Conn) {
	c.nc = nc
	// RFC 5321 §4.5.3.1.5 caps reply lines at 512 octets; the buffer
	// allows generous slack and bounds what a broken server can make us
	// hold.
	c.r = bufio.NewReaderSize(nc, 4096)
	c.w = bufio.NewWriter(nc)
}

// deadline bounds the next reads and writes by d, or by ctx's deadline if
// that comes first.
func (c *Conn) deadline(ctx context.Context, d time.Duration) {
	t := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		t = dl
	}
	c.nc.SetDeadline(t)
}

// watch makes cancelling ctx abort whatever the session is blocked on:
// closing the socket is the one thing that wakes every read and write, and
// a session interrupted mid-command cannot be trusted afterwards anyway.
// The returned func must be called when the operation ends.
func (c *Conn) watch(ctx context.Context) func() {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	return func() {
		if !stop() && c.broken == nil {
			rep := netReply(ctx, context.Cause(ctx), "", true)
			c.broken = &rep
		}
	}
}

// cmd writes one command line and reads its reply.
func (c *Conn) cmd(ctx context.Context, timeout time.Duration, line string) (Reply, error) {
	c.deadline(ctx, timeout)
	if err := c.writeLine(line); err != nil {
		return Reply{}, err
	}
	if err := c.w.Flush(); err != nil {
		return Reply{}, err
	}
	return readReply(c.r)
}

func (c *Conn) writeLine(line string) error {
	if _, err := c.w.WriteString(line); err != nil {
		return err
	}
	_, err := c.w.WriteString("\r\n")
	return err
}

// fail marks the session unusable and closes it.
func (c *Conn) fail(rep Reply) {
	if c.broken == nil {
		c.broken = &rep
	}
	c.raw.Close()
}
