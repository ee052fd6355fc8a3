package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"lifeline/e2e/kit"
)

// startCluster starts size `lifeline node` processes on loopback that
// form one cluster from --join and --bootstrap-expect, as an operator
// starts them, with one cluster key and one operator token, and waits
// until they have.
func startCluster(ctx context.Context, bin, dir string, size int) (*kit.Cluster, error) {
	c, err := kit.NewCluster(bin, dir, "node", size)
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		c.Stop()
		return nil, err
	}
	for _, n := range c.Nodes() {
		if err := n.WaitHealthy(ctx, 90*time.Second); err != nil {
			c.Stop()
			return nil, fmt.Errorf("%s: %w%s", n.ID, err, n.LogTail(30))
		}
	}
	if err := c.WaitFormed(ctx, 90*time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func smtpAddrs(nodes []*kit.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.SMTP)
	}
	return out
}

// benchClusterAccept runs the accept measurement with the sessions spread
// round-robin over all nodes' MX ports.
func benchClusterAccept(ctx context.Context, c *kit.Cluster, lc kit.LoadConfig, logf func(string, ...any)) (kit.LoadResult, error) {
	lc.Addrs = smtpAddrs(c.Nodes())
	for _, a := range lc.Addrs {
		if err := kit.WaitGreeting(ctx, a, 30*time.Second); err != nil {
			return kit.LoadResult{}, fmt.Errorf("%w%s", err, c.LogTails())
		}
	}
	logf("lifeline cluster on %s: %d sessions round-robin, %d warm-up + %d messages of %d bytes",
		strings.Join(lc.Addrs, ", "), lc.Sessions, lc.Warmup, lc.Messages, lc.Size)
	r, err := kit.Load(ctx, lc)
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w%s", err, c.LogTails())
	}
	return r, err
}

// Failover bounds: a run that sees no 250 within failoverLimit of the kill
// is reported as such rather than waited for.
const (
	failoverLimit    = 30 * time.Second
	failoverSessions = 2
	failoverSteady   = time.Second
	// failoverRetryPause follows a refusal or a failed connection.
	failoverRetryPause = 10 * time.Millisecond
)

// failoverRun is one SIGKILL of the leader.
type failoverRun struct {
	Run       int    `json:"run"`
	Killed    string `json:"killed"`
	NewLeader string `json:"new_leader,omitempty"`
	// FirstAccept: from the kill to the first 250 of a transaction that
	// began after the kill. Healthy: from the kill to the first /healthz
	// 200 of a survivor naming a leader other than the killed node.
	FirstAcceptMs float64 `json:"first_accept_ms"`
	Accepted      bool    `json:"accepted"`
	HealthyMs     float64 `json:"healthy_ms"`
	Healthy       bool    `json:"healthy"`
	// What the senders saw between the kill and the first 250.
	Refused  int `json:"refused"`   // 4xx/5xx replies
	IOErrors int `json:"io_errors"` // broken or timed-out connections
	// The transactions under way at the kill: how long the longest took
	// to get its answer, and the answers.
	InFlight      int      `json:"in_flight"`
	InFlightMaxMs float64  `json:"in_flight_max_ms"`
	InFlightEnds  []string `json:"in_flight_ends,omitempty"`
	RecoverMs     float64  `json:"restart_recover_ms"` // killed node back and caught up
}

// txRecord is one transaction of the failover traffic.
type txRecord struct {
	sess       int
	start, end time.Time
	ok         bool
	what       string // "250", the refusal, or the I/O error
}

// traffic keeps a few sessions sending one message after another and
// records every transaction.
type traffic struct {
	mu      sync.Mutex
	records []txRecord
	notify  chan struct{}
	next    atomic.Int64
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startTraffic(ctx context.Context, addrs []string, size int, base int64) *traffic {
	ctx, cancel := context.WithCancel(ctx)
	t := &traffic{notify: make(chan struct{}, 1), cancel: cancel}
	t.next.Store(base)
	for i, addr := range addrs {
		t.wg.Go(func() { t.session(ctx, addr, size, i) })
	}
	return t
}

func (t *traffic) add(r txRecord) {
	t.mu.Lock()
	t.records = append(t.records, r)
	t.mu.Unlock()
	select {
	case t.notify <- struct{}{}:
	default:
	}
}

func (t *traffic) snapshot() []txRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]txRecord(nil), t.records...)
}

func (t *traffic) stop() {
	t.cancel()
	t.wg.Wait()
}

func (t *traffic) session(ctx context.Context, addr string, size, id int) {
	d := kit.Dialer{Timeout: 20 * time.Second}
	var s *kit.Session
	stopClose := context.AfterFunc(ctx, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if s != nil {
			s.Close()
		}
	})
	defer stopClose()
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	pause := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(failoverRetryPause):
			return true
		}
	}
	var msg []byte
	for ctx.Err() == nil {
		if s == nil {
			start := time.Now()
			ns, err := d.Dial(ctx, addr)
			if err == nil {
				if err = ns.Hello(benchHello); err != nil {
					ns.Close()
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				t.add(txRecord{sess: id, start: start, end: time.Now(), what: "connect: " + err.Error()})
				if !pause() {
					return
				}
				continue
			}
			t.mu.Lock()
			s = ns
			t.mu.Unlock()
		}
		n := t.next.Add(1)
		rcpt := "user" + strconv.FormatInt(n, 10) + "@" + benchDomain
		msg = kit.AppendMessage(msg[:0], benchSender, rcpt, n, size)
		start := time.Now()
		res, err := s.Send(benchSender, []string{rcpt}, msg)
		end := time.Now()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && res.Accepted():
			t.add(txRecord{sess: id, start: start, end: end, ok: true, what: "250"})
		case err == nil:
			t.add(txRecord{sess: id, start: start, end: end, what: res.Err().Error()})
			// A sender told to try later does not hammer the node
			// while it elects a leader; 10 ms bounds the resolution.
			if !pause() {
				return
			}
		default:
			t.add(txRecord{sess: id, start: start, end: end, what: "I/O: " + err.Error()})
			s.Close()
			t.mu.Lock()
			s = nil
			t.mu.Unlock()
		}
	}
}

// firstAcceptAfter finds the earliest-ending 250 among transactions that
// began at or after the kill.
func firstAcceptAfter(recs []txRecord, kill time.Time) (time.Duration, bool) {
	var best time.Duration
	found := false
	for _, r := range recs {
		if r.ok && !r.start.Before(kill) {
			if d := r.end.Sub(kill); !found || d < best {
				best, found = d, true
			}
		}
	}
	return best, found
}

// summarizeFailover fills in what the senders saw around the kill.
func summarizeFailover(run *failoverRun, recs []txRecord, kill time.Time) {
	first, ok := firstAcceptAfter(recs, kill)
	run.Accepted, run.FirstAcceptMs = ok, kit.Ms(first)
	ends := map[string]int{}
	for _, r := range recs {
		if r.start.Before(kill) && !r.end.Before(kill) {
			run.InFlight++
			run.InFlightMaxMs = max(run.InFlightMaxMs, kit.Ms(r.end.Sub(kill)))
			ends[shorten(r.what, 80)]++
			continue
		}
		if r.start.Before(kill) || r.ok || (ok && r.end.Sub(kill) > first) {
			continue
		}
		if strings.HasPrefix(r.what, "I/O") || strings.HasPrefix(r.what, "connect") {
			run.IOErrors++
		} else {
			run.Refused++
		}
	}
	for what, n := range ends {
		run.InFlightEnds = append(run.InFlightEnds, fmt.Sprintf("%dx %s", n, what))
	}
	slices.Sort(run.InFlightEnds)
}

func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// benchFailover kills the leader runs times while two sessions send to
// the other nodes, and brings the killed node back between runs.
func benchFailover(ctx context.Context, c *kit.Cluster, runs, size int, logf func(string, ...any)) ([]failoverRun, error) {
	var out []failoverRun
	for i := 1; i <= runs; i++ {
		r, err := failoverOnce(ctx, c, i, size, logf)
		if err != nil {
			return out, fmt.Errorf("failover run %d: %w", i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func failoverOnce(ctx context.Context, c *kit.Cluster, run, size int, logf func(string, ...any)) (failoverRun, error) {
	leader, err := kit.AgreedLeader(ctx, c.Nodes(), 60*time.Second)
	if err != nil {
		return failoverRun{}, fmt.Errorf("%w%s", err, c.LogTails())
	}
	res := failoverRun{Run: run, Killed: leader.ID}
	var targets []string
	var survivors []*kit.Node
	for _, n := range c.Nodes() {
		if n != leader {
			survivors = append(survivors, n)
			if len(targets) < failoverSessions {
				targets = append(targets, n.SMTP)
			}
		}
	}

	tr := startTraffic(ctx, targets, size, int64(run)*100_000_000)
	defer tr.stop()
	// Steady traffic first: every session has had a 250.
	if err := waitSteady(ctx, tr, len(targets)); err != nil {
		return res, fmt.Errorf("traffic before the kill: %w%s", err, c.LogTails())
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(failoverSteady):
	}

	logf("failover run %d: SIGKILL leader %s while %d sessions send to %s", run, leader.ID, len(targets), strings.Join(targets, ", "))
	kill := time.Now()
	leader.Kill()

	// Survivors' /healthz, polled every 10 ms until one is 200 with a
	// leader other than the dead one.
	hctx, hcancel := context.WithTimeout(ctx, failoverLimit)
	defer hcancel()
	healthDone := make(chan struct{})
	var healthy struct {
		ok     bool
		after  time.Duration
		leader string
	}
	go func() {
		defer close(healthDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, n := range survivors {
				cctx, cancel := context.WithTimeout(hctx, 500*time.Millisecond)
				code, h, err := n.Health(cctx)
				cancel()
				if err == nil && code == http.StatusOK && h.Leader != "" && h.Leader != leader.ID {
					healthy.ok, healthy.after, healthy.leader = true, time.Since(kill), h.Leader
					return
				}
			}
			select {
			case <-hctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	// The first 250 for a transaction begun after the kill.
	deadline := time.NewTimer(failoverLimit)
	defer deadline.Stop()
wait:
	for {
		if _, ok := firstAcceptAfter(tr.snapshot(), kill); ok {
			break
		}
		select {
		case <-ctx.Done():
			hcancel()
			<-healthDone
			return res, ctx.Err()
		case <-deadline.C:
			break wait
		case <-tr.notify:
		}
	}
	<-healthDone
	res.Healthy, res.HealthyMs, res.NewLeader = healthy.ok, kit.Ms(healthy.after), healthy.leader
	// In-flight transactions may still be waiting for their answer; give
	// them until their own timeout so the report says how they ended.
	waitInFlight(ctx, tr, kill, len(targets), 25*time.Second)
	tr.stop()
	summarizeFailover(&res, tr.snapshot(), kill)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}

	// Bring the killed node back with its data and wait until it has
	// caught up, so the next run starts from three healthy voters.
	back := time.Now()
	if _, err := leader.Launch(); err != nil {
		return res, err
	}
	if err := waitCaughtUp(ctx, c, leader, 90*time.Second); err != nil {
		return res, fmt.Errorf("restarting %s: %w%s", leader.ID, err, leader.LogTail(30))
	}
	res.RecoverMs = kit.Ms(time.Since(back))
	logf("failover run %d: first 250 after %.0fms, healthz with new leader %s after %.0fms; %s back in %.1fs",
		run, res.FirstAcceptMs, res.NewLeader, res.HealthyMs, leader.ID, res.RecoverMs/1000)
	return res, nil
}

func waitSteady(ctx context.Context, tr *traffic, sessions int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if n := okCount(tr.snapshot()); n >= 2*sessions {
			return nil
		}
		select {
		case <-ctx.Done():
			recs := tr.snapshot()
			last := "no transaction ended"
			if len(recs) > 0 {
				last = recs[len(recs)-1].what
			}
			return fmt.Errorf("fewer than %d messages accepted (last: %s): %w", 2*sessions, last, ctx.Err())
		case <-tr.notify:
		}
	}
}

func okCount(recs []txRecord) int {
	n := 0
	for _, r := range recs {
		if r.ok {
			n++
		}
	}
	return n
}

// waitInFlight waits until every session has begun a transaction after
// the kill, which means the one it had under way at the kill has ended.
func waitInFlight(ctx context.Context, tr *traffic, kill time.Time, sessions int, limit time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		done := map[int]bool{}
		for _, r := range tr.snapshot() {
			if !r.start.Before(kill) {
				done[r.sess] = true
			}
		}
		if len(done) >= sessions {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tr.notify:
		}
	}
}

// waitCaughtUp waits until n is healthy, the cluster agrees on a leader,
// and n has applied what the leader had applied when it came back.
func waitCaughtUp(ctx context.Context, c *kit.Cluster, n *kit.Node, limit time.Duration) error {
	if err := n.WaitHealthy(ctx, limit); err != nil {
		return err
	}
	leader, err := kit.AgreedLeader(ctx, c.Nodes(), limit)
	if err != nil {
		return err
	}
	_, lh, err := leader.Health(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var seen uint64
	return kit.Poll(ctx, 50*time.Millisecond, func() string {
		return fmt.Sprintf("%s applied %d of the leader's %d", n.ID, seen, lh.AppliedIndex)
	}, func() (bool, error) {
		_, h, err := n.Health(ctx)
		if err != nil {
			return false, nil
		}
		seen = h.AppliedIndex
		return h.AppliedIndex >= lh.AppliedIndex, nil
	})
}
