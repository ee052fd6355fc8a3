package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"time"

	"lifeline/e2e/kit"
)

// The drain measurement: a full spool of messages for a destination that
// was down, the destination comes back as Postfix's smtp-sink (no dumping,
// so the sink is not what is measured), the operator says "retry now",
// and the clock runs until the spool is empty. Both systems get the same
// spool (same load generator, same message size and count) and the same
// sink.

// drainPoll is how often emptiness is checked; it bounds the resolution.
const drainPoll = 100 * time.Millisecond

type drainResult struct {
	System string `json:"system"`
	// Messages were in the spool when the clock started; Drained had left
	// it when the clock stopped (all of them unless Complete is false).
	Messages int     `json:"messages"`
	Drained  int     `json:"drained"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"msgs_per_sec"`
	Complete bool    `json:"complete"`
	// LoadErrors are refusals while filling the spool; they only make the
	// spool smaller.
	LoadErrors int `json:"load_errors,omitempty"`
	// AtSink is what smtp-sink counted by the time the clock stopped; at
	// least Drained, more if some message went twice.
	AtSink int64  `json:"at_sink"`
	Note   string `json:"note,omitempty"`
}

func (d *drainResult) finish(elapsed time.Duration) {
	d.Seconds = elapsed.Seconds()
	if elapsed > 0 {
		d.Rate = float64(d.Drained) / elapsed.Seconds()
	}
}

// startSink runs `smtp-sink -c ADDR 1000` and waits until it greets. -c
// prints a running "sess=N quit=N mesg=N" counter, which shows that the
// spool really went to the sink.
func startSink(ctx context.Context, addr string) (*kit.Sink, error) {
	s := &kit.Sink{Addr: addr, Count: true, Backlog: 1000, SysProcAttr: kit.Detached()}
	if err := s.Start(ctx); err != nil {
		return nil, fmt.Errorf("%w (%s)", err, postfixHint)
	}
	return s, nil
}

// drainLifeline fills a single node's spool with the destination down,
// then times the drain. One node rather than the cluster: the question is
// how fast the delivery engine empties a spool, side by side with one
// Postfix; a cluster drains from its leader alone anyway.
func drainLifeline(ctx context.Context, bin string, lc kit.LoadConfig, dir string, limit time.Duration, logf func(string, ...any)) (res drainResult, err error) {
	res.System = "lifeline"
	sinkAddr, err := deadAddr()
	if err != nil {
		return res, err
	}
	logf("drain: starting lifeline node")
	n, err := startLifeline(ctx, bin, dir)
	if err != nil {
		return res, err
	}
	defer n.Stop(15 * time.Second)
	defer func() {
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w%s", err, n.LogTail(30))
		}
	}()
	if err := kit.AddDomain(ctx, []*kit.Node{n}, benchDomain, sinkAddr); err != nil {
		return res, err
	}
	if err := kit.WaitGreeting(ctx, n.SMTP, 30*time.Second); err != nil {
		return res, err
	}
	lc.Addrs = []string{n.SMTP}
	logf("drain: filling lifeline's spool with %d messages for %s (down)", lc.Messages, sinkAddr)
	lr, err := kit.Load(ctx, lc)
	if err != nil {
		return res, err
	}
	res.LoadErrors = lr.Errors + lr.WarmupErrors

	// The first attempt has failed: the domain is spooling, and its mail
	// waits for the next probe, minutes away.
	if err := waitDomainSpooling(ctx, n, benchDomain, 60*time.Second); err != nil {
		return res, err
	}
	st, err := n.APIStatus(ctx)
	if err != nil {
		return res, err
	}
	res.Messages = st.Queue.Messages
	if res.Messages == 0 {
		return res, errors.New("drain: the spool is empty before the flush")
	}

	sink, err := startSink(ctx, sinkAddr)
	if err != nil {
		return res, err
	}
	defer sink.Kill()

	logf("drain: lifeline has %d messages spooled; smtp-sink up on %s; flushing", res.Messages, sinkAddr)
	start := time.Now()
	if err := n.API(ctx, http.MethodPost, "/api/v1/queue/flush", nil, nil); err != nil {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	lastLog := start
	err = kit.Poll(wctx, drainPoll, func() string { return "lifeline spool not empty" }, func() (bool, error) {
		empty, err := queueEmpty(wctx, n)
		if err != nil {
			return false, nil
		}
		if !empty && time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			if st, err := n.APIStatus(wctx); err == nil {
				logf("drain: lifeline %d left after %.0fs", st.Queue.Messages, time.Since(start).Seconds())
			}
		}
		return empty, nil
	})
	elapsed := time.Since(start)
	res.AtSink = sink.Received()
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		st, serr := n.APIStatus(ctx)
		if serr != nil {
			return res, fmt.Errorf("drain did not finish in %v and the status is unavailable: %w", limit, serr)
		}
		res.Drained = res.Messages - st.Queue.Messages
		res.Note = fmt.Sprintf("did not finish within %v: %d of %d left", limit, st.Queue.Messages, res.Messages)
		res.finish(elapsed)
		return res, nil
	}
	res.Drained, res.Complete = res.Messages, true
	res.finish(elapsed)
	return res, nil
}

func waitDomainSpooling(ctx context.Context, n *kit.Node, domain string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	last := "not listed"
	return kit.Poll(ctx, 100*time.Millisecond, func() string { return "domain " + domain + " spooling: " + last }, func() (bool, error) {
		ds, err := domains(ctx, n)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, d := range ds {
			if d.Name == domain {
				last = fmt.Sprintf("spooling=%v %s", d.Spooling, d.LastError)
				return d.Spooling, nil
			}
		}
		return false, nil
	})
}

// postfixDrainSettings are applied (postconf -e, postfix reload) once the
// spool is full and every message sits in the deferred queue, before the
// sink comes up and `postqueue -f` runs. While the spool fills, Postfix
// keeps its defaults (minimal_backoff_time 300s, queue_run_delay 300s):
// then the dead destination is tried, marked dead, and every message is
// deferred once and stays put, as Lifeline's spool does; with small
// backoffs from the start the deferred queue would churn through the
// active queue against the dead port the whole time.
//
// For the drain itself:
//   - queue_run_delay, minimal_backoff_time 1s, maximal_backoff_time 10s:
//     a delivery that fails during the drain, or a destination the queue
//     manager still remembers as dead, costs a second, not five minutes.
//     (`postqueue -f` already asks qmgr to forget dead destinations and
//     to ignore the deferred files' retry times.)
//   - default_destination_concurrency_limit 20: Postfix's own default,
//     stated so the comparison does not depend on the machine's main.cf.
//     Postfix starts at initial_destination_concurrency (5) and grows.
//     Lifeline's engine uses 2 connections per destination with batches
//     of 100 messages each, so Postfix gets the more parallel setup.
//   - smtp_connection_cache_on_demand (default yes) keeps connections to
//     the busy destination open for reuse, as Lifeline reuses its own.
var postfixDrainSettings = []string{
	"queue_run_delay = 1s",
	"minimal_backoff_time = 1s",
	"maximal_backoff_time = 10s",
	"default_destination_concurrency_limit = 20",
	"smtp_connection_cache_on_demand = yes",
}

// drainPostfix does the same with a private Postfix instance: its own
// queue, the same transport to a dead port, then the sink on that port and
// `postqueue -f`.
func drainPostfix(ctx context.Context, lc kit.LoadConfig, dir string, limit time.Duration, logf func(string, ...any)) (res drainResult, err error) {
	res.System = "postfix"
	ports, err := kit.FreePorts(2)
	if err != nil {
		return res, err
	}
	smtpdAddr, sinkAddr := ports[0], ports[1]
	p := newPostfixInstance(dir, smtpdAddr)
	defer func() {
		if cerr := p.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	defer func() {
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w%s", err, p.logTail())
		}
	}()
	logf("drain: setting up a private Postfix instance in %s", dir)
	if err := p.setup(ctx, sinkAddr, lc.Sessions); err != nil {
		return res, err
	}
	if err := p.start(ctx); err != nil {
		return res, err
	}
	lc.Addrs = []string{p.addr}
	logf("drain: filling Postfix's queue with %d messages for %s (down)", lc.Messages, sinkAddr)
	lr, err := kit.Load(ctx, lc)
	if err != nil {
		return res, err
	}
	res.LoadErrors = lr.Errors + lr.WarmupErrors
	if res.Messages, err = p.waitAllDeferred(ctx, lr.Accepted, 2*time.Minute); err != nil {
		return res, err
	}
	if err := p.tune(ctx, postfixDrainSettings); err != nil {
		return res, err
	}

	sink, err := startSink(ctx, sinkAddr)
	if err != nil {
		return res, err
	}
	defer sink.Kill()

	logf("drain: Postfix has %d messages deferred; smtp-sink up on %s; postqueue -f", res.Messages, sinkAddr)
	start := time.Now()
	if _, err := postfixCmd(ctx, postqueueBin, "-c", p.confDir, "-f"); err != nil {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	lastLog := start
	err = kit.Poll(wctx, drainPoll, func() string { return "postfix queue not empty" }, func() (bool, error) {
		empty, err := p.queueEmpty()
		if err != nil {
			return false, err
		}
		if !empty && time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			if q, err := p.queueCounts(); err == nil {
				logf("drain: postfix %d left after %.0fs", q.total(), time.Since(start).Seconds())
			}
		}
		return empty, nil
	})
	elapsed := time.Since(start)
	res.AtSink = sink.Received()
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		q, qerr := p.queueCounts()
		if qerr != nil {
			return res, errors.Join(err, qerr)
		}
		res.Drained = res.Messages - q.total()
		res.Note = fmt.Sprintf("did not finish within %v: %d of %d left", limit, q.total(), res.Messages)
		res.finish(elapsed)
		return res, nil
	}
	res.Drained, res.Complete = res.Messages, true
	res.finish(elapsed)
	return res, nil
}

// queueCounts are the queue files in each of Postfix's message queues.
type queueCounts struct {
	maildrop, incoming, active, deferred, hold int
}

func (q queueCounts) total() int {
	return q.maildrop + q.incoming + q.active + q.deferred + q.hold
}

// postfixQueues are the directories that hold messages (not the defer and
// bounce logs beside them).
var postfixQueues = []string{"maildrop", "incoming", "active", "deferred", "hold"}

// queueCounts counts queue files; deferred is hashed into subdirectories.
func (p *postfixInstance) queueCounts() (queueCounts, error) {
	var q queueCounts
	for _, name := range postfixQueues {
		n, err := countFiles(filepath.Join(p.queueDir, name), 0)
		if err != nil {
			return q, err
		}
		switch name {
		case "maildrop":
			q.maildrop = n
		case "incoming":
			q.incoming = n
		case "active":
			q.active = n
		case "deferred":
			q.deferred = n
		case "hold":
			q.hold = n
		}
	}
	return q, nil
}

// queueEmpty stops at the first queue file it finds.
func (p *postfixInstance) queueEmpty() (bool, error) {
	for _, name := range postfixQueues {
		n, err := countFiles(filepath.Join(p.queueDir, name), 1)
		if err != nil {
			return false, err
		}
		if n > 0 {
			return false, nil
		}
	}
	return true, nil
}

// countFiles counts regular files below dir, stopping at stop (0: never).
// Files that vanish while Postfix moves them are not errors.
func countFiles(dir string, stop int) (int, error) {
	n := 0
	errStop := errors.New("stop")
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			n++
			if stop > 0 && n >= stop {
				return errStop
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return n, err
	}
	return n, nil
}

// waitAllDeferred waits until the accepted messages have all been tried
// and deferred: none left in maildrop, incoming or active.
func (p *postfixInstance) waitAllDeferred(ctx context.Context, want int, limit time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var q queueCounts
	err := kit.Poll(ctx, 100*time.Millisecond, func() string {
		return fmt.Sprintf("postfix queue: want %d deferred, have %+v", want, q)
	}, func() (bool, error) {
		var err error
		if q, err = p.queueCounts(); err != nil {
			return false, err
		}
		return q.deferred >= want && q.maildrop+q.incoming+q.active == 0, nil
	})
	return q.deferred, err
}

// tune sets main.cf parameters of the running instance and reloads it.
func (p *postfixInstance) tune(ctx context.Context, settings []string) error {
	args := append([]string{"-c", p.confDir, "-e"}, settings...)
	if _, err := postfixCmd(ctx, postconfBin, args...); err != nil {
		return err
	}
	_, err := postfixCmd(ctx, postfixBin, "-c", p.confDir, "reload")
	return err
}
