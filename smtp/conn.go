package smtp

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// errAbandoned is what a connection returns once a read has timed out. It
// wraps net.ErrClosed so go-smtp ends the session quietly instead of reading
// on.
var errAbandoned = fmt.Errorf("smtp: connection abandoned after a read timeout: %w", net.ErrClosed)

// trackedConn is the raw TCP connection under go-smtp (and under crypto/tls
// after STARTTLS, which reaches it through tls.Conn.NetConn). It exists for
// two go-smtp gaps:
//
//   - go-smtp sets a read deadline only when it reads a command line, so
//     during DATA nothing bounds the body. While a data phase is open,
//     every read gets min(now+ReadTimeout, end of the DATA budget).
//   - After a read timeout go-smtp would carry on reading, and what is left
//     of a body would be taken as commands (go-smtp issue #196). Timeouts are
//     therefore sticky: once one read times out, every later read fails
//     with errAbandoned and the session ends.
type trackedConn struct {
	net.Conn
	readTimeout time.Duration
	dataTimeout *gosmtp.SMTPError // returned for a timeout inside DATA
	release     func()

	mu        sync.Mutex
	dataUntil time.Time // zero outside a data phase
	timedOut  bool

	closeOnce sync.Once
}

// beginData opens a data phase that must finish before until.
func (c *trackedConn) beginData(until time.Time) {
	c.mu.Lock()
	c.dataUntil = until
	c.mu.Unlock()
}

// endData closes the data phase; go-smtp's own per-command deadlines apply
// again.
func (c *trackedConn) endData() {
	c.mu.Lock()
	c.dataUntil = time.Time{}
	c.mu.Unlock()
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	timedOut, until := c.timedOut, c.dataUntil
	c.mu.Unlock()
	if timedOut {
		return 0, errAbandoned
	}
	inData := !until.IsZero()
	if inData {
		d := time.Now().Add(c.readTimeout)
		if d.After(until) {
			d = until
		}
		if err := c.Conn.SetReadDeadline(d); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		c.mu.Lock()
		c.timedOut = true
		c.mu.Unlock()
		if inData {
			// An *SMTPError reaches go-smtp's BDAT path as a proper 421
			// instead of its generic 554.
			return n, c.dataTimeout
		}
	}
	return n, err
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return err
}

// listener hands go-smtp trackedConns and enforces MaxConnections.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.srv.slots <- struct{}{}:
			return l.srv.track(c), nil
		default:
		}
		// RFC 5321 §3.8: a server that cannot serve now may answer the
		// greeting with 421 and close.
		l.srv.reply(421)
		l.srv.log.Warn("smtp connection refused: too many connections",
			"remote", c.RemoteAddr().String(), "max", l.srv.cfg.MaxConnections)
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = fmt.Fprintf(c, "421 4.7.0 %s Error: too many connections, try again later\r\n", l.srv.cfg.Hostname)
		_ = c.Close()
	}
}

func (s *Server) track(c net.Conn) *trackedConn {
	return &trackedConn{
		Conn:        c,
		readTimeout: s.cfg.ReadTimeout,
		dataTimeout: &gosmtp.SMTPError{
			Code:         421,
			EnhancedCode: gosmtp.EnhancedCode{4, 4, 2},
			Message:      s.cfg.Hostname + " Error: timeout exceeded during DATA, closing connection",
		},
		release: func() { <-s.slots },
	}
}
