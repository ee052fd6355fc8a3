package outbound

import (
	"context"
	"time"
)

// ProbeResult is what a destination said to a test connection.
type ProbeResult struct {
	Addr     string
	Greeting Reply
	Ehlo     Reply
	// StartTLS is set when the server offers STARTTLS.
	StartTLS bool
	Elapsed  time.Duration
}

// Probe tests a destination the way the admin console's *test* button
// does: connect, read the greeting, say EHLO (falling back to HELO), and
// QUIT, without sending mail. The error is an *Error with the server's
// reply or what went wrong on the way (refused, timed out, not SMTP).
func (cl *Client) Probe(ctx context.Context, addr string, timeout time.Duration) (ProbeResult, error) {
	start := time.Now()
	res := ProbeResult{Addr: addr}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if cl.Dialer == nil {
		return res, &Error{Reply: Reply{Enhanced: "4.3.5", Text: "no dialer configured"}}
	}
	t := cl.Timeouts.withDefaults()
	nc, err := cl.Dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		res.Elapsed = time.Since(start)
		return res, &Error{Reply: netReply(ctx, err, "", false), Host: addr, err: err}
	}
	c := &Conn{client: cl, t: t, host: addr, raw: nc}
	c.setConn(nc)
	defer nc.Close()
	defer c.watch(ctx)()
	c.deadline(ctx, t.Greeting)
	greet, err := readReply(c.r)
	if err != nil {
		res.Elapsed = time.Since(start)
		return res, &Error{Reply: netReply(ctx, err, "waiting for the greeting", true), Host: addr, err: err}
	}
	res.Greeting = greet
	if greet.Code != 220 {
		c.quit(ctx)
		res.Elapsed = time.Since(start)
		return res, &Error{Reply: greet, Permanent: greet.permanent(), Host: addr}
	}
	rep, err := c.hello(ctx)
	res.Elapsed = time.Since(start)
	if err != nil {
		return res, &Error{Reply: netReply(ctx, err, "during EHLO", true), Host: addr, err: err}
	}
	res.Ehlo = rep
	_, res.StartTLS = c.ext["STARTTLS"]
	c.quit(ctx)
	if !rep.ok() {
		return res, &Error{Reply: rep, Permanent: rep.permanent(), Host: addr}
	}
	return res, nil
}
