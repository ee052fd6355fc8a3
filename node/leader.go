package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"lifeline/node/delivery"
)

// Everything this node does only while it leads the cluster starts in
// establishLeadership and stops in revokeLeadership. A stretch of
// leadership is a term; the leader loop runs one term at a time and begins
// the next only once the last goroutine of the previous one has ended, so
// a duty of an old term can neither run beside the new term's nor undo
// what the new term set up.

// leaderTerm is one term of leadership: the duties it started, in order,
// and the delivery engine it runs.
type leaderTerm struct {
	// ctx ends when the term is revoked: establishing stops at its next
	// step.
	ctx    context.Context
	cancel context.CancelFunc
	// established is closed when establishLeadership has returned; no
	// duty is started after it.
	established chan struct{}

	mu     sync.Mutex
	duties []*leaderDuty

	// engine is this term's delivery engine once it runs, for
	// wakeDelivery.
	engine atomic.Pointer[delivery.Engine]
}

// leaderDuty is one goroutine of a term.
type leaderDuty struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
}

func newLeaderTerm() *leaderTerm {
	ctx, cancel := context.WithCancel(context.Background())
	return &leaderTerm{ctx: ctx, cancel: cancel, established: make(chan struct{})}
}

// start runs a duty until revokeLeadership stops it. Each duty has a
// context of its own rather than the term's, so that revoking can stop
// them one at a time, the last started first.
func (t *leaderTerm) start(name string, run func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	d := &leaderDuty{name: name, cancel: cancel, done: make(chan struct{})}
	t.mu.Lock()
	t.duties = append(t.duties, d)
	t.mu.Unlock()
	go func() {
		defer close(d.done)
		run(ctx)
	}()
}

// leaderLoop follows this node's leadership, one term at a time.
func (n *Node) leaderLoop() {
	defer n.wg.Done()
	var term *leaderTerm
	defer func() {
		if term != nil {
			n.revokeLeadership(term)
		}
	}()
	for {
		select {
		case <-n.stop:
			return
		case leader := <-n.leaderCh:
			// Raft keeps only the latest notification, so a loss and a
			// regain can arrive as one "true": the old term ends either
			// way, and a new one begins with its own Barrier.
			if term != nil {
				n.revokeLeadership(term)
				term = nil
			}
			if !leader {
				n.logger.Info("lost leadership")
				continue
			}
			n.logger.Info("became leader")
			t := newLeaderTerm()
			term = t
			n.term.Store(t)
			go func() {
				defer close(t.established)
				n.establishLeadership(t)
			}()
		}
	}
}

// establishLeadership starts the leader's duties, in order. It runs in a
// goroutine of its own, since its first steps wait (on Raft, on the
// clock), and returns early once the term is revoked.
func (n *Node) establishLeadership(t *leaderTerm) {
	// Barrier first: a new leader must act on a state that includes every
	// entry committed before its term (docs/design.md §3.7), or it would
	// schedule from a stale spool.
	if !n.barrier(t.ctx) {
		return
	}
	// The operator token of a new cluster, so the operator can sign in as
	// soon as the cluster has a leader.
	n.ensureAdminToken(t.ctx)
	// Handing leadership on when this node cannot lead needs no clock, so
	// it starts before the wait for one.
	t.start("step down when unfit", n.stepDownWhenUnfit)
	// Delivery, expiry and notices go by the clock: not before this
	// node's clock has been measured against its peers'. A node restarted
	// with a clock hours ahead and elected at once would otherwise expire
	// the spool in the seconds before its first measurement.
	if !n.clock.waitMeasured(t.ctx) {
		return
	}
	// The Raft voters follow gossip; only the leader can change them.
	t.start("voter reconcile", n.reconcileLoop)
	// Spooling alerts, then the SMS outbox they fill.
	t.start("alerts", n.alertLoop)
	t.start("sms", n.smsLoop)
	// Delivery last, once what it relies on is in place (a measured
	// clock, the alerts it wakes when a domain starts or stops spooling);
	// so it is also the first to stop.
	eng := n.newEngine()
	t.engine.Store(eng)
	t.start("delivery", eng.Run)
}

// revokeLeadership ends a term: establishing stops, then the duties stop
// in reverse order, each waited for, so that nothing of this term is left
// running when the next begins.
func (n *Node) revokeLeadership(t *leaderTerm) {
	// wakeDelivery stops reaching this term's engine; a term that already
	// gave way to another leaves that one alone.
	n.term.CompareAndSwap(t, nil)
	t.cancel()
	<-t.established
	t.mu.Lock()
	duties := t.duties
	t.mu.Unlock()
	for i := len(duties) - 1; i >= 0; i-- {
		duties[i].cancel()
		<-duties[i].done
		n.logger.Debug("leader duty stopped", "duty", duties[i].name)
	}
}

// barrier waits until this node has applied every entry committed before
// its term. False means the term ended first.
func (n *Node) barrier(ctx context.Context) bool {
	for {
		err := n.cluster.Barrier(10 * time.Second)
		if err == nil {
			return true
		}
		if ctx.Err() != nil || !n.cluster.IsLeader() {
			// Leadership went away before the barrier: nothing to lead.
			return false
		}
		n.logger.Warn("barrier failed", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// wakeDelivery tells the delivery engine, if this node runs it, that new
// work may be due.
func (n *Node) wakeDelivery() {
	if t := n.term.Load(); t != nil {
		if eng := t.engine.Load(); eng != nil {
			eng.Wake()
		}
	}
}

// stepDownWhenUnfit hands leadership on while this node cannot do its
// part: a state store that failed applies nothing more (every write it
// leads would commit in the log and still be answered with an error, so
// senders retry mail that will be delivered), and a data disk below the
// minimum is about to stop the Raft log. Another voter leads better.
func (n *Node) stepDownWhenUnfit(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		reason := n.store.Failed()
		if reason == nil {
			reason = n.disk.room(0)
		}
		if reason == nil || !n.cluster.IsLeader() {
			continue
		}
		if servers, err := n.cluster.Servers(); err != nil || len(servers) < 2 {
			continue
		}
		n.logger.Warn("handing leadership on: this node cannot lead now", "reason", reason)
		if err := n.cluster.TransferLeadership("", ""); err != nil {
			n.logger.Warn("leadership transfer failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}
}
