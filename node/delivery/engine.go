// Package delivery is the leader's delivery scheduler: it reads due
// recipients from the replicated state, records each attempt through Raft
// before dialing, delivers over reused SMTP connections, records outcomes,
// keeps domains' spooling state, and sends delay and failure notices.
//
// It runs only while its node leads the cluster; every decision it makes
// is written to the log, so a new leader continues where it stopped.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"lifeline/fsm"
	"lifeline/node/msglog"
	"lifeline/smtp/outbound"
)

// Config is everything the engine uses; the clock, the randomness and the
// network all come in from outside.
type Config struct {
	Store *fsm.Store
	// Apply commits a command through Raft.
	Apply func(ctx context.Context, cmd any) error
	// OpenBody opens a message body, fetching it from a peer if needed.
	OpenBody func(ctx context.Context, hash string) (io.ReadCloser, error)
	// Spool queues a message this node composed (a DSN) through the same
	// path as received mail: body on a quorum, then SpoolAdd.
	Spool func(ctx context.Context, cmd *fsm.SpoolAdd, body []byte) error
	// SpoolNotice, if set, queues a delay notice like Spool and marks the
	// message notified in the same commit (fsm.NoticeAdd); without it the
	// mark is a second commit, and a change of leader between the two can
	// send the notice twice.
	SpoolNotice func(ctx context.Context, cmd *fsm.SpoolAdd, notified *fsm.DelayNotified, body []byte) error
	Client      *outbound.Client
	Router      *outbound.Router
	Now         func() time.Time
	// Rand decides jitter; the decision travels in the command.
	Rand *rand.Rand

	// Schedule lists the retry intervals; the last one repeats.
	Schedule      []time.Duration
	DelayWarning  time.Duration
	QueueLifetime time.Duration
	// Lease is how long an attempt may take before a new leader presumes
	// it lost and tries again.
	Lease time.Duration
	// Hostname names this cluster in DSNs.
	Hostname string
	// PerDestination bounds parallel connections to one destination; the
	// default of 5 matches the concurrency Postfix starts a destination at.
	PerDestination int
	// BatchSize is how many messages one connection carries per batch.
	BatchSize int
	// Poll is how often the engine looks for due mail when nothing wakes it.
	Poll time.Duration
	// MinPassGap spaces passes when new mail keeps waking the engine, so a
	// busy MX batches its arrivals instead of scanning once per message.
	MinPassGap time.Duration
	// ProbeInterval is how often a spooling destination is tried.
	ProbeInterval time.Duration
	// OnOutcome, if set, is told each recipient's outcome (for metrics).
	OnOutcome func(outcome string)
	// Log, if set, receives message log entries for attempts and notices.
	Log func(msglog.Entry)
	// OnDomainState, if set, hears when a domain starts or stops
	// spooling (after the change is committed): the alerts wake on it.
	OnDomainState func(domain string, spooling bool)
	Logger        *slog.Logger
}

// defaultSchedule: the first retry within 5 minutes, growing to hourly.
var defaultSchedule = []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour}

func (c *Config) setDefaults() {
	if len(c.Schedule) == 0 {
		c.Schedule = defaultSchedule
	}
	if c.DelayWarning == 0 {
		c.DelayWarning = 4 * time.Hour
	}
	if c.QueueLifetime == 0 {
		c.QueueLifetime = 720 * time.Hour
	}
	if c.Lease == 0 {
		c.Lease = 10 * time.Minute
	}
	if c.PerDestination == 0 {
		c.PerDestination = 5
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.Poll == 0 {
		c.Poll = time.Second
	}
	if c.MinPassGap == 0 {
		c.MinPassGap = 50 * time.Millisecond
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = c.Schedule[0]
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.OnOutcome == nil {
		c.OnOutcome = func(string) {}
	}
	if c.Log == nil {
		c.Log = func(msglog.Entry) {}
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(1, 2))
	}
}

// Engine is the scheduler of one leadership term.
type Engine struct {
	cfg  Config
	wake chan struct{}

	mu       sync.Mutex
	inflight map[string]bool // "id/rcpt"
	groups   map[string]int  // destination key -> running workers
	// nextProbe paces the probes of each spooling domain; an operator's
	// retry (lastRetry changes) lifts the pacing.
	nextProbe map[string]time.Time
	lastRetry int64
	randMu    sync.Mutex
	wg        sync.WaitGroup
}

// New returns an engine; Run starts it.
func New(cfg Config) *Engine {
	cfg.setDefaults()
	return &Engine{cfg: cfg, wake: make(chan struct{}, 1), inflight: map[string]bool{}, groups: map[string]int{}, nextProbe: map[string]time.Time{}}
}

// RunOnce schedules what is due now and waits for those attempts to end;
// tests drive a fake clock with it.
func (e *Engine) RunOnce(ctx context.Context) {
	e.pass(ctx)
	e.wg.Wait()
}

// Wake makes the engine look for due mail now, e.g. after new mail or a
// flush.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run schedules deliveries until ctx ends (leadership lost), then waits
// for running attempts to stop.
func (e *Engine) Run(ctx context.Context) {
	defer e.wg.Wait()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.wake:
		}
		e.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(e.cfg.MinPassGap):
		}
		t.Reset(e.cfg.Poll)
	}
}

// work is the due recipients of one message bound for one destination.
type work struct {
	msg   *fsm.Message
	rcpts []int
}

type group struct {
	key        string
	domain     string // protected domain, "" for outbound mail
	candidates []string
	items      []work
	spooling   bool
	routeErr   *outbound.Error
}

func (e *Engine) now() time.Time { return e.cfg.Now() }

// pass reads the head of the due index and hands each destination's share
// to a worker, within the concurrency limits.
func (e *Engine) pass(ctx context.Context) {
	now := e.now()
	if r := e.cfg.Store.LastRetry(); r != e.lastRetry {
		e.lastRetry = r
		e.mu.Lock()
		clear(e.nextProbe)
		e.mu.Unlock()
	}
	due, err := e.cfg.Store.Due(now.UnixNano(), 10000)
	if err != nil {
		e.cfg.Logger.Error("reading due recipients", "err", err)
		return
	}
	msgs := map[string]*fsm.Message{}
	groups := map[string]*group{}
	var order []string
	routes := map[string]*group{}
	var expired, bounced []work
	for _, d := range due {
		key := fmt.Sprintf("%s/%d", d.MessageID, d.Recipient)
		e.mu.Lock()
		busy := e.inflight[key]
		e.mu.Unlock()
		if busy {
			continue
		}
		m, ok := msgs[d.MessageID]
		if !ok {
			mm, found, err := e.cfg.Store.Message(d.MessageID)
			if err != nil || !found {
				continue
			}
			m = &mm
			msgs[d.MessageID] = m
		}
		if m.Held || d.Recipient >= len(m.Recipients) || m.Recipients[d.Recipient].Done() {
			continue
		}
		if m.Bounce {
			bounced = appendWork(bounced, m, d.Recipient)
			continue
		}
		if now.Sub(time.Unix(0, m.ReceivedAt)) >= e.cfg.QueueLifetime {
			expired = appendWork(expired, m, d.Recipient)
			continue
		}
		domain := m.Recipients[d.Recipient].Domain
		g, ok := routes[domain]
		if !ok {
			g = e.route(ctx, domain)
			routes[domain] = g
		}
		gg, ok := groups[g.key]
		if !ok {
			gg = &group{key: g.key, domain: g.domain, candidates: g.candidates, spooling: g.spooling, routeErr: g.routeErr}
			groups[g.key] = gg
			order = append(order, g.key)
		}
		gg.items = appendWork(gg.items, m, d.Recipient)
	}
	if len(expired) > 0 {
		e.expire(ctx, expired)
	}
	if len(bounced) > 0 {
		e.finishWithoutDial(ctx, bounced, outbound.Reply{Enhanced: "5.0.0", Text: "removed from the queue by the operator"}, true)
	}
	for _, k := range order {
		g := groups[k]
		if g.routeErr != nil {
			e.finishWithoutDial(ctx, g.items, g.routeErr.Reply, g.routeErr.Permanent)
			continue
		}
		e.mu.Lock()
		running := e.groups[k]
		limit := e.cfg.PerDestination
		var waitUntil time.Time
		if g.spooling {
			// A spooling destination gets one gentle probe at a time, and
			// no more often than ProbeInterval, not the whole queue.
			limit = 1
			if np := e.nextProbe[g.domain]; now.Before(np) {
				waitUntil = np
			} else if running == 0 {
				e.nextProbe[g.domain] = now.Add(e.cfg.ProbeInterval)
			}
		}
		e.mu.Unlock()
		if !waitUntil.IsZero() {
			e.waitForProbe(ctx, g.items, waitUntil)
			continue
		}
		for running < limit && len(g.items) > 0 {
			n := e.cfg.BatchSize
			if g.spooling {
				n = 1
			}
			if n > len(g.items) {
				n = len(g.items)
			}
			batch := g.items[:n]
			g.items = g.items[n:]
			running++
			e.startWorker(ctx, g, batch)
		}
	}
}

func appendWork(ws []work, m *fsm.Message, rcpt int) []work {
	if len(ws) > 0 && ws[len(ws)-1].msg.ID == m.ID {
		ws[len(ws)-1].rcpts = append(ws[len(ws)-1].rcpts, rcpt)
		return ws
	}
	return append(ws, work{msg: m, rcpts: []int{rcpt}})
}

// route finds where a domain's mail goes: a protected domain to its
// delivery destination, anything else through the transport map or MX.
func (e *Engine) route(ctx context.Context, domain string) *group {
	g := &group{}
	var dests []fsm.Destination
	if d, ok, err := e.cfg.Store.Domain(domain); err == nil && ok {
		dests = d.Targets()
		g.domain = domain
		g.spooling = d.Spooling
	}
	var cands []string
	var err error
	if len(dests) == 0 {
		cands, err = e.cfg.Router.Route(ctx, domain, "")
	}
	// A protected domain's destinations, in order of preference: Dial
	// tries the next when one does not answer, as with MX hosts.
	for _, dest := range dests {
		c, rerr := e.cfg.Router.Route(ctx, domain, dest.Addr)
		if rerr != nil {
			err = rerr
			break
		}
		cands = append(cands, c...)
	}
	if err != nil {
		var oe *outbound.Error
		if !errors.As(err, &oe) {
			oe = &outbound.Error{Reply: outbound.Reply{Enhanced: "4.4.3", Text: err.Error()}}
		}
		g.routeErr = oe
		g.key = "error:" + domain
		return g
	}
	g.candidates = cands
	g.key = "to:" + strings.Join(cands, ",")
	if g.domain != "" {
		g.key = "domain:" + domain + ":" + g.key
	}
	return g
}

func (e *Engine) startWorker(ctx context.Context, g *group, batch []work) {
	e.mu.Lock()
	e.groups[g.key]++
	for _, w := range batch {
		for _, r := range w.rcpts {
			e.inflight[fmt.Sprintf("%s/%d", w.msg.ID, r)] = true
		}
	}
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer func() {
			e.mu.Lock()
			e.groups[g.key]--
			for _, w := range batch {
				for _, r := range w.rcpts {
					delete(e.inflight, fmt.Sprintf("%s/%d", w.msg.ID, r))
				}
			}
			e.mu.Unlock()
			// Whatever is left for this destination can go now.
			e.Wake()
		}()
		e.deliver(ctx, g, batch)
	}()
}

func (e *Engine) jitter(d time.Duration) time.Duration {
	e.randMu.Lock()
	defer e.randMu.Unlock()
	// Between 90% and 100% of the interval: retries of many messages
	// spread out, and the first one still comes within the schedule's
	// first step.
	return d - time.Duration(e.cfg.Rand.Int64N(int64(d)/10+1))
}

// nextAttempt is when a recipient that has had `attempts` attempts, the
// latest ending at now, is tried again.
func (e *Engine) nextAttempt(now time.Time, attempts int) time.Time {
	i := attempts - 1
	if i < 0 {
		i = 0
	}
	if i >= len(e.cfg.Schedule) {
		i = len(e.cfg.Schedule) - 1
	}
	return now.Add(e.jitter(e.cfg.Schedule[i]))
}

// deliver runs one batch over one connection. The attempt is committed
// before dialing (docs/design.md §3.7): a leader that dies mid-delivery leaves a
// lease behind, and its successor retries when the lease runs out.
func (e *Engine) deliver(ctx context.Context, g *group, batch []work) {
	start := &fsm.AttemptStart{At: e.now().UnixNano(), LeaseUntil: e.now().Add(e.cfg.Lease).UnixNano()}
	for _, w := range batch {
		start.Items = append(start.Items, fsm.AttemptItem{ID: w.msg.ID, Recipients: w.rcpts})
	}
	if err := e.cfg.Apply(ctx, start); err != nil {
		e.cfg.Logger.Warn("cannot record delivery attempt", "err", err)
		return
	}
	conn, err := e.cfg.Client.Dial(ctx, g.candidates)
	if err != nil {
		var oe *outbound.Error
		if !errors.As(err, &oe) {
			oe = &outbound.Error{Reply: outbound.Reply{Enhanced: "4.4.1", Text: err.Error()}}
		}
		if ctx.Err() != nil {
			return
		}
		e.recordFailure(ctx, g, batch, oe.Reply, oe.Permanent, true)
		return
	}
	defer conn.Close()

	var results []fsm.MessageResult
	var dsnJobs []dsnJob
	anyDelivered := false
	var lastTemp *outbound.Reply
	at := e.now()
	for i, w := range batch {
		if ctx.Err() != nil {
			return
		}
		m := w.msg
		out := &outbound.Message{From: m.From, Ret: m.Ret, EnvID: m.EnvID, Size: m.Size, SMTPUTF8: m.SMTPUTF8,
			EightBitMIME: m.Body == "8BITMIME",
			Open:         func() (io.ReadCloser, error) { return e.cfg.OpenBody(ctx, m.BlobHash) }}
		for _, r := range w.rcpts {
			rs := m.Recipients[r]
			out.Recipients = append(out.Recipients, outbound.Rcpt{Address: rs.Address, Notify: rs.Notify, ORCPT: rs.ORCPT})
		}
		res := conn.Send(ctx, out)
		at = e.now()
		mr := fsm.MessageResult{ID: m.ID}
		var deferred []int
		for j, rr := range res.Recipients {
			idx := w.rcpts[j]
			r := fsm.RecipientResult{Recipient: idx, Reply: rr.Reply.String(), RemoteMTA: res.RemoteMTA}
			switch rr.Status {
			case outbound.Delivered:
				r.Outcome = fsm.OutcomeDelivered
				anyDelivered = true
				if hasNotify(m.Recipients[idx].Notify, "SUCCESS") && !res.RemoteDSN {
					dsnJobs = append(dsnJobs, dsnJob{msg: m, kind: kindRelayed, rcpts: []int{idx}, reply: rr.Reply, remote: res.RemoteMTA})
				}
			case outbound.PermFail:
				r.Outcome = fsm.OutcomeFailed
				dsnJobs = append(dsnJobs, dsnJob{msg: m, kind: kindFailed, rcpts: []int{idx}, reply: rr.Reply, remote: res.RemoteMTA})
			default:
				r.Outcome = fsm.OutcomeDeferred
				r.NextAttempt = e.nextAttempt(at, m.Recipients[idx].Attempts+1).UnixNano()
				deferred = append(deferred, idx)
				rep := rr.Reply
				lastTemp = &rep
			}
			mr.Results = append(mr.Results, r)
		}
		results = append(results, mr)
		if len(deferred) > 0 {
			if j := e.delayJob(m, deferred, lastTemp, res.RemoteMTA, at); j != nil {
				dsnJobs = append(dsnJobs, *j)
			}
		}
		if lastTemp != nil && lastTemp.Code == 421 {
			// The server is closing or overloaded: back off, and give the
			// rest of the batch back to the schedule untouched.
			e.recordFailure(ctx, g, batch[i+1:], *lastTemp, false, false)
			break
		}
	}
	if err := e.cfg.Apply(ctx, &fsm.AttemptResult{At: at.UnixNano(), Messages: results}); err != nil {
		e.cfg.Logger.Warn("cannot record delivery results; the lease will retry them", "err", err)
		return
	}
	e.countOutcomes(batch, results, at)
	e.sendNotices(ctx, dsnJobs, at)
	if g.domain != "" {
		switch {
		case anyDelivered && g.spooling:
			e.setSpooling(ctx, g.domain, false, "")
			// The destination answers again: drain the spool, oldest first.
			if _, err := RetryInChunks(ctx, e.cfg.Store, e.cfg.Apply, fsm.MessageFilter{Domain: g.domain}, e.now()); err != nil {
				e.cfg.Logger.Warn("cannot schedule the drain", "domain", g.domain, "err", err)
			}
		case !anyDelivered && lastTemp != nil && !g.spooling:
			e.setSpooling(ctx, g.domain, true, lastTemp.String())
		case !anyDelivered && lastTemp != nil && g.spooling:
			e.deferDomain(ctx, g, *lastTemp)
		}
	}
}

// waitForProbe moves recipients that arrived for a spooling domain to its
// next probe, without dialing and without counting an attempt.
func (e *Engine) waitForProbe(ctx context.Context, ws []work, at time.Time) {
	var results []fsm.MessageResult
	for _, w := range ws {
		mr := fsm.MessageResult{ID: w.msg.ID}
		for _, idx := range w.rcpts {
			mr.Results = append(mr.Results, fsm.RecipientResult{Recipient: idx, Outcome: fsm.OutcomeDeferred,
				NextAttempt: at.UnixNano(), Skipped: true})
		}
		results = append(results, mr)
	}
	for len(results) > 0 {
		n := min(len(results), 500)
		if err := e.cfg.Apply(ctx, &fsm.AttemptResult{At: e.now().UnixNano(), Messages: results[:n]}); err != nil {
			e.cfg.Logger.Warn("cannot defer mail for a spooling domain", "err", err)
			return
		}
		results = results[n:]
	}
}

// deferDomain gives every other due recipient of a spooling domain the
// failed probe's answer without dialing: while a destination is down the
// engine knocks once, gently, instead of pushing the whole queue at it.
func (e *Engine) deferDomain(ctx context.Context, g *group, rep outbound.Reply) {
	// A bounded share per probe keeps memory flat with a large spool; the
	// rest is rescheduled by the following passes.
	due, err := e.cfg.Store.Due(e.now().UnixNano(), 5000)
	if err != nil {
		return
	}
	var ws []work
	msgs := map[string]*fsm.Message{}
	for _, d := range due {
		e.mu.Lock()
		busy := e.inflight[fmt.Sprintf("%s/%d", d.MessageID, d.Recipient)]
		e.mu.Unlock()
		if busy {
			continue
		}
		m, ok := msgs[d.MessageID]
		if !ok {
			mm, found, err := e.cfg.Store.Message(d.MessageID)
			if err != nil || !found {
				continue
			}
			m = &mm
			msgs[d.MessageID] = m
		}
		if d.Recipient >= len(m.Recipients) || m.Recipients[d.Recipient].Domain != g.domain || m.Bounce || m.Held {
			continue
		}
		ws = appendWork(ws, m, d.Recipient)
	}
	for len(ws) > 0 && ctx.Err() == nil {
		n := min(len(ws), 500)
		e.settle(ctx, ws[:n], rep, false, true)
		ws = ws[n:]
	}
}

// countOutcomes feeds the metrics and the message log with what a batch
// achieved. Recipients that were only rescheduled, not tried, are left out.
func (e *Engine) countOutcomes(ws []work, results []fsm.MessageResult, at time.Time) {
	msgs := map[string]*fsm.Message{}
	for _, w := range ws {
		msgs[w.msg.ID] = w.msg
	}
	for _, mr := range results {
		m := msgs[mr.ID]
		for _, r := range mr.Results {
			if r.Skipped || m == nil {
				continue
			}
			e.cfg.OnOutcome(r.Outcome)
			status := r.Outcome
			if strings.HasPrefix(r.Reply, "4.4.7 ") {
				status = "expired"
			}
			e.cfg.Log(msglog.Entry{At: at.UnixNano(), Kind: msglog.KindDelivery, Status: status, QueueID: m.ID,
				From: m.From, To: []string{m.Recipients[r.Recipient].Address}, Code: replyCode(r.Reply),
				Detail: r.Reply, Remote: r.RemoteMTA, Size: m.Size})
		}
	}
}

// replyCode reads the SMTP code at the start of a recorded reply.
func replyCode(reply string) int {
	if len(reply) >= 3 && reply[0] >= '2' && reply[0] <= '5' {
		c := int(reply[0]-'0')*100 + int(reply[1]-'0')*10 + int(reply[2]-'0')
		if c >= 200 && c < 600 {
			return c
		}
	}
	return 0
}

// recordFailure settles every recipient of the batch with one reply: a
// connection that could not be made, or a server that went away.
func (e *Engine) recordFailure(ctx context.Context, g *group, batch []work, rep outbound.Reply, permanent, markDomain bool) {
	e.finishWithoutDial(ctx, batch, rep, permanent)
	if !markDomain || g.domain == "" || permanent {
		return
	}
	if g.spooling {
		e.deferDomain(ctx, g, rep)
	} else {
		e.setSpooling(ctx, g.domain, true, rep.String())
	}
}

// finishWithoutDial records one outcome for every recipient in ws.
func (e *Engine) finishWithoutDial(ctx context.Context, ws []work, rep outbound.Reply, permanent bool) {
	e.settle(ctx, ws, rep, permanent, false)
}

// settle records one outcome for every recipient in ws; skipped marks
// recipients that were not tried at all.
func (e *Engine) settle(ctx context.Context, ws []work, rep outbound.Reply, permanent, skipped bool) {
	if len(ws) == 0 {
		return
	}
	at := e.now()
	var results []fsm.MessageResult
	var jobs []dsnJob
	for _, w := range ws {
		mr := fsm.MessageResult{ID: w.msg.ID}
		for _, idx := range w.rcpts {
			r := fsm.RecipientResult{Recipient: idx, Reply: rep.String(), Skipped: skipped}
			if permanent {
				r.Outcome = fsm.OutcomeFailed
			} else {
				r.Outcome = fsm.OutcomeDeferred
				r.NextAttempt = e.nextAttempt(at, w.msg.Recipients[idx].Attempts+1).UnixNano()
			}
			mr.Results = append(mr.Results, r)
		}
		results = append(results, mr)
		if permanent {
			jobs = append(jobs, dsnJob{msg: w.msg, kind: kindFailed, rcpts: w.rcpts, reply: rep})
		} else if j := e.delayJob(w.msg, w.rcpts, &rep, "", at); j != nil {
			jobs = append(jobs, *j)
		}
	}
	if err := e.cfg.Apply(ctx, &fsm.AttemptResult{At: at.UnixNano(), Messages: results}); err != nil {
		e.cfg.Logger.Warn("cannot record delivery results", "err", err)
		return
	}
	e.countOutcomes(ws, results, at)
	e.sendNotices(ctx, jobs, at)
}

// expire fails recipients whose message outlived the queue lifetime, with
// status 4.4.7 (RFC 3463 §3.5) in a failure notice.
func (e *Engine) expire(ctx context.Context, ws []work) {
	for _, w := range ws {
		last := "no attempt succeeded"
		for _, idx := range w.rcpts {
			if lr := w.msg.Recipients[idx].LastReply; lr != "" {
				last = lr
			}
		}
		rep := outbound.Reply{Enhanced: "4.4.7", Text: "message expired after " + e.cfg.QueueLifetime.String() + " in the queue; last error: " + last}
		e.finishWithoutDial(ctx, []work{w}, rep, true)
	}
}

func (e *Engine) setSpooling(ctx context.Context, domain string, spooling bool, lastErr string) {
	if err := e.cfg.Apply(ctx, &fsm.DomainState{Name: domain, Spooling: spooling, At: e.now().UnixNano(), LastError: lastErr}); err != nil {
		e.cfg.Logger.Warn("cannot record domain state", "domain", domain, "err", err)
		return
	}
	if e.cfg.OnDomainState != nil {
		e.cfg.OnDomainState(domain, spooling)
	}
	if spooling {
		e.cfg.Logger.Warn("domain is spooling", "domain", domain, "error", lastErr)
	} else {
		e.cfg.Logger.Info("domain delivers again; draining its spool", "domain", domain)
	}
}

func hasNotify(notify []string, kw string) bool {
	for _, n := range notify {
		if strings.EqualFold(n, kw) {
			return true
		}
	}
	return false
}
