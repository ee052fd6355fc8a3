package node

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// heldDialer holds the first dial until released, whatever its context
// says: a delivery attempt that takes its time to stop. Every other dial
// is refused at once.
type heldDialer struct {
	entered chan struct{}
	release chan struct{}
	first   sync.Once
	unhold  sync.Once
}

func newHeldDialer() *heldDialer {
	return &heldDialer{entered: make(chan struct{}), release: make(chan struct{})}
}

func (d *heldDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	held := false
	d.first.Do(func() { held = true })
	if held {
		close(d.entered)
		<-d.release
	}
	return nil, errors.New("connection refused")
}

func (d *heldDialer) let() { d.unhold.Do(func() { close(d.release) }) }

// waitUntil polls cond until it holds or bound has passed, and reports
// whether it held.
func waitUntil(bound time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// duty returns the term's duty of that name, or nil if the term has not
// started it.
func (t *leaderTerm) duty(name string) *leaderDuty {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, d := range t.duties {
		if d.name == name {
			return d
		}
	}
	return nil
}

func running(d *leaderDuty) bool {
	if d == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// A leadership flap (gained, lost, gained at once) must not let the old
// term's end undo the new term: the new term begins only once the old
// one's last goroutine has ended, and its delivery engine is the one left
// running.
func TestLeadershipFlapLeavesTheNewTermsEngineRunning(t *testing.T) {
	leader := make(chan bool)
	dial := newHeldDialer()
	n := startTestNodeWith(t, func(c *Config) {
		c.Dialer = dial
		c.leaderCh = leader
	})
	// Before the node's Close, which would wait for the held attempt.
	t.Cleanup(dial.let)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	notify := func(v bool) <-chan struct{} {
		sent := make(chan struct{})
		go func() {
			select {
			case leader <- v:
				close(sent)
			case <-stop:
			}
		}()
		return sent
	}

	<-notify(true)
	if !waitUntil(10*time.Second, func() bool { tm := n.term.Load(); return tm != nil && running(tm.duty("delivery")) }) {
		t.Fatal("the first term's delivery engine never ran")
	}
	first := n.term.Load()
	// A message whose delivery attempt holds the first term's engine.
	if line := smtpTransaction(t, n.SMTPAddr()); !strings.HasPrefix(line, "250 ") {
		t.Fatalf("message not accepted: %q", line)
	}
	select {
	case <-dial.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first term never attempted delivery")
	}

	<-notify(false)
	regained := notify(true)
	if waitUntil(time.Second, func() bool { tm := n.term.Load(); return tm != nil && tm != first }) {
		t.Fatal("a new term began while the old term's delivery attempt was still running")
	}
	dial.let()
	select {
	case <-regained:
	case <-time.After(10 * time.Second):
		t.Fatal("leadership regained was never taken up")
	}
	if !waitUntil(10*time.Second, func() bool { tm := n.term.Load(); return tm != nil && tm != first && running(tm.duty("delivery")) }) {
		t.Fatal("the new term's delivery engine is not running")
	}
	second := n.term.Load()
	if running(first.duty("delivery")) {
		t.Fatal("the old term's delivery engine still runs")
	}
	if second.engine.Load() == nil {
		t.Fatal("the new term's engine was cleared")
	}
}
