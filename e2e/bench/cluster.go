package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// benchCluster is three `lifeline node` processes on loopback that form
// one cluster from --join and --bootstrap-expect, as an operator starts
// them, with one cluster key and one operator token.
type benchCluster struct {
	bin   string
	nodes []*lifelineNode // nodes[i] is replaced when node i restarts
	logf  func(string, ...any)
}

func startCluster(ctx context.Context, bin, dir string, size int, logf func(string, ...any)) (*benchCluster, error) {
	c := &benchCluster{bin: bin, logf: logf}
	key := randomHex(32) // LIFELINE_CLUSTER_KEY: 64 hex characters
	token := randomHex(24)
	var specs []nodeSpec
	for i := range size {
		spec, err := newNodeSpec(fmt.Sprintf("node%d", i+1), filepath.Join(dir, fmt.Sprintf("node%d", i+1)), token)
		if err != nil {
			return nil, err
		}
		spec.env = []string{"LIFELINE_CLUSTER_KEY=" + key}
		specs = append(specs, spec)
	}
	for i := range specs {
		var join []string
		for j := range specs {
			if j != i {
				join = append(join, specs[j].gossipAddr)
			}
		}
		specs[i].args = []string{"--bootstrap-expect", fmt.Sprint(size), "--join", strings.Join(join, ",")}
	}
	for _, spec := range specs {
		n, err := launchNode(bin, spec)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	if err := c.waitFormed(ctx, 90*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// waitFormed waits until every node is healthy and sees all nodes as
// voters with one leader.
func (c *benchCluster) waitFormed(ctx context.Context, limit time.Duration) error {
	for _, n := range c.nodes {
		if err := n.waitHealthy(ctx, limit); err != nil {
			return fmt.Errorf("%s: %w%s", n.spec.id, err, n.logTail())
		}
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	last := ""
	return poll(ctx, 100*time.Millisecond, func() (bool, error) {
		for _, n := range c.nodes {
			st, err := n.status(ctx)
			if err != nil {
				last = n.spec.id + ": " + err.Error()
				return false, nil
			}
			voters, leaders := 0, 0
			for _, s := range st.Cluster.Servers {
				if s.Suffrage == "voter" {
					voters++
				}
				if s.Leader {
					leaders++
				}
			}
			if voters != len(c.nodes) || leaders != 1 {
				last = fmt.Sprintf("%s sees %d voters and %d leaders", n.spec.id, voters, leaders)
				return false, nil
			}
		}
		return true, nil
	}, func() string { return "cluster forming: " + last })
}

// stop ends every node at once; stopping them one after the other would
// make each survivor wait for a quorum that is going away.
func (c *benchCluster) stop() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(n.stop)
	}
	wg.Wait()
}

func (c *benchCluster) smtpAddrs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.smtpAddr)
	}
	return out
}

func (c *benchCluster) logTails() string {
	var b strings.Builder
	for _, n := range c.nodes {
		b.WriteString(n.logTail())
	}
	return b.String()
}

// addDomain protects the domain through one node and waits until every
// node has applied it, so no node answers 554 for it.
func (c *benchCluster) addDomain(ctx context.Context, domain, dest string) error {
	if err := c.nodes[0].addDomain(ctx, domain, dest); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	last := ""
	return poll(ctx, 100*time.Millisecond, func() (bool, error) {
		for _, n := range c.nodes {
			ds, err := n.domains(ctx)
			if err != nil {
				last = n.spec.id + ": " + err.Error()
				return false, nil
			}
			found := false
			for _, d := range ds {
				found = found || d.Name == domain
			}
			if !found {
				last = n.spec.id + " does not list it yet"
				return false, nil
			}
		}
		return true, nil
	}, func() string { return "domain " + domain + " on every node: " + last })
}

// leader returns the index of the node that every running node agrees
// leads, waiting for that agreement.
func (c *benchCluster) leader(ctx context.Context, limit time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	idx, last := -1, ""
	err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		idx = -1
		agreed := ""
		for i, n := range c.nodes {
			if !n.running() {
				continue
			}
			code, h, err := n.health(ctx, 2*time.Second)
			if err != nil || code != http.StatusOK {
				last = fmt.Sprintf("%s: healthz %d %v", n.spec.id, code, err)
				return false, nil
			}
			if agreed == "" {
				agreed = h.Leader
			}
			if h.Leader == "" || h.Leader != agreed {
				last = fmt.Sprintf("%s sees leader %q, another node %q", n.spec.id, h.Leader, agreed)
				return false, nil
			}
			if h.State == "Leader" {
				idx = i
			}
		}
		if idx < 0 {
			last = fmt.Sprintf("no running node says it is the leader %q", agreed)
		}
		return idx >= 0, nil
	}, func() string { return "waiting for one agreed leader: " + last })
	return idx, err
}

// benchClusterAccept runs the accept measurement with the sessions spread
// round-robin over all nodes' MX ports.
func benchClusterAccept(ctx context.Context, c *benchCluster, lc loadConfig, logf func(string, ...any)) (loadResult, error) {
	for _, a := range c.smtpAddrs() {
		if err := waitGreeting(ctx, a, 30*time.Second); err != nil {
			return loadResult{}, fmt.Errorf("%w%s", err, c.logTails())
		}
	}
	lc.Addr, lc.Addrs = "", c.smtpAddrs()
	logf("lifeline cluster on %s: %d sessions round-robin, %d warm-up + %d messages of %d bytes",
		strings.Join(lc.Addrs, ", "), lc.Sessions, lc.Warmup, lc.Messages, lc.Size)
	r, err := runLoad(ctx, lc)
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w%s", err, c.logTails())
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
		cfg := loadConfig{Addr: addr, Sessions: 1, Size: size, RcptDomain: benchDomain, OpTimeout: 20 * time.Second}
		t.wg.Go(func() { t.session(ctx, cfg, i) })
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

func (t *traffic) session(ctx context.Context, cfg loadConfig, id int) {
	s := &session{cfg: cfg, id: id, addr: cfg.Addr}
	stopClose := context.AfterFunc(ctx, s.closeConn)
	defer stopClose()
	defer s.closeConn()
	connected := false
	for ctx.Err() == nil {
		if !connected {
			start := time.Now()
			if err := s.connect(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				t.add(txRecord{sess: id, start: start, end: time.Now(), what: "connect: " + err.Error()})
				select {
				case <-ctx.Done():
					return
				case <-time.After(failoverRetryPause):
				}
				continue
			}
			connected = true
		}
		start := time.Now()
		_, err := s.send(t.next.Add(1))
		end := time.Now()
		if ctx.Err() != nil {
			return
		}
		var rej *rejection
		switch {
		case err == nil:
			t.add(txRecord{sess: id, start: start, end: end, ok: true, what: "250"})
		case errors.As(err, &rej):
			t.add(txRecord{sess: id, start: start, end: end, what: rej.Error()})
			// A sender told to try later does not hammer the node
			// while it elects a leader; 10 ms bounds the resolution.
			select {
			case <-ctx.Done():
				return
			case <-time.After(failoverRetryPause):
			}
		default:
			t.add(txRecord{sess: id, start: start, end: end, what: "I/O: " + err.Error()})
			s.closeConn()
			connected = false
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
	run.Accepted, run.FirstAcceptMs = ok, ms(first)
	ends := map[string]int{}
	for _, r := range recs {
		if r.start.Before(kill) && !r.end.Before(kill) {
			run.InFlight++
			run.InFlightMaxMs = max(run.InFlightMaxMs, ms(r.end.Sub(kill)))
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
func benchFailover(ctx context.Context, c *benchCluster, runs, size int, logf func(string, ...any)) ([]failoverRun, error) {
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

func failoverOnce(ctx context.Context, c *benchCluster, run, size int, logf func(string, ...any)) (failoverRun, error) {
	li, err := c.leader(ctx, 60*time.Second)
	if err != nil {
		return failoverRun{}, fmt.Errorf("%w%s", err, c.logTails())
	}
	leader := c.nodes[li]
	res := failoverRun{Run: run, Killed: leader.spec.id}
	var targets []string
	var survivors []*lifelineNode
	for i, n := range c.nodes {
		if i != li {
			survivors = append(survivors, n)
			if len(targets) < failoverSessions {
				targets = append(targets, n.smtpAddr)
			}
		}
	}

	tr := startTraffic(ctx, targets, size, int64(run)*100_000_000)
	defer tr.stop()
	// Steady traffic first: every session has had a 250.
	if err := waitSteady(ctx, tr, len(targets)); err != nil {
		return res, fmt.Errorf("traffic before the kill: %w%s", err, c.logTails())
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(failoverSteady):
	}

	logf("failover run %d: SIGKILL leader %s while %d sessions send to %s", run, leader.spec.id, len(targets), strings.Join(targets, ", "))
	kill := time.Now()
	leader.kill()

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
				code, h, err := n.health(hctx, 500*time.Millisecond)
				if err == nil && code == http.StatusOK && h.Leader != "" && h.Leader != leader.spec.id {
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
	res.Healthy, res.HealthyMs, res.NewLeader = healthy.ok, ms(healthy.after), healthy.leader
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
	n, err := launchNode(c.bin, leader.spec)
	if err != nil {
		return res, err
	}
	c.nodes[li] = n
	if err := c.waitCaughtUp(ctx, li, 90*time.Second); err != nil {
		return res, fmt.Errorf("restarting %s: %w%s", leader.spec.id, err, n.logTail())
	}
	res.RecoverMs = ms(time.Since(back))
	logf("failover run %d: first 250 after %.0fms, healthz with new leader %s after %.0fms; %s back in %.1fs",
		run, res.FirstAcceptMs, res.NewLeader, res.HealthyMs, leader.spec.id, res.RecoverMs/1000)
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

// waitCaughtUp waits until node i is healthy, the cluster agrees on a
// leader, and node i has applied what the leader had applied when it came
// back.
func (c *benchCluster) waitCaughtUp(ctx context.Context, i int, limit time.Duration) error {
	n := c.nodes[i]
	if err := n.waitHealthy(ctx, limit); err != nil {
		return err
	}
	li, err := c.leader(ctx, limit)
	if err != nil {
		return err
	}
	_, lh, err := c.nodes[li].health(ctx, 2*time.Second)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var seen uint64
	return poll(ctx, 50*time.Millisecond, func() (bool, error) {
		_, h, err := n.health(ctx, 2*time.Second)
		if err != nil {
			return false, nil
		}
		seen = h.AppliedIndex
		return h.AppliedIndex >= lh.AppliedIndex, nil
	}, func() string {
		return fmt.Sprintf("%s applied %d of the leader's %d", n.spec.id, seen, lh.AppliedIndex)
	})
}
