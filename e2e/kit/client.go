package kit

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Client is a Session for a test: an I/O error or a reply other than the
// one wanted fails the test. Replies are returned as their last line, as
// received ("250 2.0.0 Ok: queued as ..."), and wanted replies are given
// as a prefix of it: "250", "554 5.7.1", "5" for any permanent refusal,
// "" for any reply at all.
type Client struct {
	*Session
	t testing.TB
}

// NewClient connects to addr, expects the 220 greeting, and closes the
// connection when the test ends.
func NewClient(t testing.TB, addr string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := Dialer{Timeout: time.Minute}.Open(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c := &Client{Session: s, t: t}
	c.Expect("220")
	return c
}

// Reply reads one reply and returns its last line.
func (c *Client) Reply() string {
	c.t.Helper()
	r, err := c.ReadReply()
	if err != nil {
		c.t.Fatalf("reading reply: %v", err)
	}
	return r.String()
}

// Expect reads one reply, which must start with want.
func (c *Client) Expect(want string) string {
	c.t.Helper()
	line := c.Reply()
	if !strings.HasPrefix(line, want) {
		c.t.Fatalf("want reply %s..., got %q", want, line)
	}
	return line
}

// Cmd sends one command line; its reply must start with want.
func (c *Client) Cmd(line, want string) string {
	c.t.Helper()
	c.Write(line + "\r\n")
	return c.Expect(want)
}

// Write sends s as it is.
func (c *Client) Write(s string) {
	c.t.Helper()
	if err := c.Session.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Send runs one transaction whose MAIL and RCPTs must get 250 and whose
// DATA must get 354, and returns the reply to the end of data. msg is
// sent as it is, then the terminating dot.
func (c *Client) Send(from string, rcpts []string, msg string) string {
	c.t.Helper()
	c.Cmd("MAIL FROM:<"+from+">", "250")
	for _, r := range rcpts {
		c.Cmd("RCPT TO:<"+r+">", "250")
	}
	c.Cmd("DATA", "354")
	c.Write(msg + ".\r\n")
	return c.Reply()
}
