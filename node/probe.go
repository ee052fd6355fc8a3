package node

import (
	"context"
	"errors"
	"time"

	"lifeline/smtp/outbound"
)

// DestinationTest is the outcome of a destination test, as the console
// shows it and the API returns it.
type DestinationTest struct {
	Addr     string        `json:"addr"`
	Node     string        `json:"node"`
	OK       bool          `json:"ok"`
	Greeting string        `json:"greeting,omitempty"`
	Ehlo     string        `json:"ehlo,omitempty"`
	StartTLS bool          `json:"starttls"`
	Error    string        `json:"error,omitempty"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// TestDestination implements the admin console's *test*: this node
// connects to addr, reads the greeting, says EHLO and QUIT, and reports
// what the server said or what went wrong.
func (n *Node) TestDestination(ctx context.Context, addr string) DestinationTest {
	cl := &outbound.Client{Dialer: n.cfg.Dialer, LocalName: n.cfg.Hostname,
		Timeouts: outbound.Timeouts{Connect: 10 * time.Second, Greeting: 10 * time.Second, Command: 10 * time.Second}}
	res, err := cl.Probe(ctx, addr, 15*time.Second)
	t := DestinationTest{Addr: addr, Node: n.cfg.ID, Elapsed: res.Elapsed, Greeting: res.Greeting.String(), Ehlo: res.Ehlo.String(), StartTLS: res.StartTLS}
	var oe *outbound.Error
	switch {
	case errors.As(err, &oe) && oe.Code == 0:
		t.Error = oe.Text // what went wrong on the way: refused, timed out
	case errors.As(err, &oe):
		t.Error = "the server answered " + oe.Reply.String()
	case err != nil:
		t.Error = err.Error()
	default:
		t.OK = true
	}
	return t
}
