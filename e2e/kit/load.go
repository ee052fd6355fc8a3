package kit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadConfig describes one load run: parallel sessions, each sending one
// message after another over connections it keeps, as a busy relay does.
type LoadConfig struct {
	// Addrs are the servers under test; session i starts on
	// Addrs[i%len(Addrs)] (the nodes of a cluster, round-robin).
	Addrs    []string
	Sessions int
	// Messages are measured; Warmup messages go first over the same
	// connections and are not counted.
	Messages int
	Warmup   int
	// Size is each message's size in bytes, headers included, the
	// terminating dot not.
	Size int
	// Sender is the envelope and header sender; "" is
	// "load@client.load.invalid". Message n goes to user<n>@RcptDomain.
	Sender     string
	RcptDomain string
	// Hello is the EHLO name; "" is "client.load.invalid".
	Hello string
	// Attempts bounds how often one message is offered, on server after
	// server, before it counts as failed; 0 offers it once. A permanent
	// refusal (5xx) is not offered again.
	Attempts int
	// OpTimeout bounds one transaction, so a stuck server ends the run
	// with errors instead of hanging it; 0 is 30 s.
	OpTimeout time.Duration
	// Progress, when set, is called every 10 s of the measured phase with
	// the messages accepted and failed so far.
	Progress func(accepted, failed int64)
}

// LoadResult is what the measured phase of a load run produced.
type LoadResult struct {
	Attempted int // messages offered at least once
	Accepted  int
	Failed    int // messages offered and never accepted
	// Errors counts every refusal and I/O error, a message offered again
	// counting once per try; ErrorKinds groups them by their text.
	Errors     int
	ErrorKinds []Count
	Retries    int
	Duration   time.Duration
	Rate       float64 // accepted messages per second
	P50        time.Duration
	P99        time.Duration
	Max        time.Duration
	// WarmupErrors are kept apart: they are not part of the figures, but a
	// server that refuses mail during the warm-up is worth seeing.
	WarmupErrors int
	// IDs are the queue IDs of the accepted messages, where the reply
	// named one.
	IDs []string
}

// loadPhase hands out message numbers to all sessions until its budget is
// spent.
type loadPhase struct {
	next     atomic.Int64
	limit    int64
	base     int64 // first message number, so recipients differ across phases
	measured bool
	errs     Tally
	accepted atomic.Int64
	failed   atomic.Int64
	retries  atomic.Int64
}

func (p *loadPhase) claim() (int64, bool) {
	n := p.next.Add(1) - 1
	return p.base + n, n < p.limit
}

// Load runs the warm-up, then the measured phase. The sessions connect
// before either and stay connected, so the measured phase sees message
// transactions, not connection setup.
func Load(ctx context.Context, cfg LoadConfig) (LoadResult, error) {
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 30 * time.Second
	}
	if cfg.Attempts < 1 {
		cfg.Attempts = 1
	}
	if cfg.Sender == "" {
		cfg.Sender = "load@client.load.invalid"
	}
	if cfg.Hello == "" {
		cfg.Hello = "client.load.invalid"
	}
	if len(cfg.Addrs) == 0 || cfg.Sessions < 1 {
		return LoadResult{}, errors.New("load: no servers or no sessions")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	workers := make([]*loadWorker, cfg.Sessions)
	for i := range workers {
		workers[i] = &loadWorker{cfg: &cfg, home: i % len(cfg.Addrs), sessions: make([]*Session, len(cfg.Addrs))}
	}
	defer func() {
		for _, w := range workers {
			w.closeAll()
		}
	}()
	for i, w := range workers {
		if _, err := w.session(ctx, w.home); err != nil {
			return LoadResult{}, fmt.Errorf("session %d: %w", i, err)
		}
	}
	// Closing the connections is the one way to interrupt a blocked read
	// when the run is cancelled.
	stopClose := context.AfterFunc(ctx, func() {
		for _, w := range workers {
			w.closeAll()
		}
	})
	defer stopClose()

	warm := &loadPhase{limit: int64(cfg.Warmup)}
	runLoadPhase(ctx, workers, warm)
	if err := ctx.Err(); err != nil {
		return LoadResult{}, context.Cause(ctx)
	}

	measured := &loadPhase{limit: int64(cfg.Messages), base: int64(cfg.Warmup), measured: true}
	for _, w := range workers {
		w.lat = make([]time.Duration, 0, cfg.Messages/cfg.Sessions+cfg.Sessions)
	}
	progressDone := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			tick := time.NewTicker(10 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-progressDone:
					return
				case <-tick.C:
					cfg.Progress(measured.accepted.Load(), measured.failed.Load())
				}
			}
		}()
	}
	start := time.Now()
	runLoadPhase(ctx, workers, measured)
	elapsed := time.Since(start)
	close(progressDone)
	if ctx.Err() != nil {
		return LoadResult{}, fmt.Errorf("%d of %d messages accepted: %w", measured.accepted.Load(), cfg.Messages, context.Cause(ctx))
	}
	for _, w := range workers {
		w.quitAll()
	}

	var all []time.Duration
	res := LoadResult{
		Attempted:    min(int(measured.next.Load()), cfg.Messages),
		Failed:       int(measured.failed.Load()),
		Errors:       measured.errs.Total(),
		ErrorKinds:   measured.errs.Counts(),
		Retries:      int(measured.retries.Load()),
		Duration:     elapsed,
		WarmupErrors: warm.errs.Total(),
	}
	for _, w := range workers {
		all = append(all, w.lat...)
		res.IDs = append(res.IDs, w.ids...)
	}
	slices.Sort(all)
	res.Accepted = len(all)
	res.P50, res.P99 = Percentile(all, 0.50), Percentile(all, 0.99)
	if len(all) > 0 {
		res.Max = all[len(all)-1]
	}
	if elapsed > 0 {
		res.Rate = float64(res.Accepted) / elapsed.Seconds()
	}
	return res, nil
}

func runLoadPhase(ctx context.Context, workers []*loadWorker, p *loadPhase) {
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.run(ctx, p) })
	}
	wg.Wait()
}

// loadWorker is one sending session; it keeps a connection to each server
// it has used, so a message offered again elsewhere costs no reconnect the
// next time.
type loadWorker struct {
	cfg      *LoadConfig
	home     int
	mu       sync.Mutex // guards sessions against the cancel-time close
	sessions []*Session
	lat      []time.Duration
	ids      []string
	buf      []byte
}

func (w *loadWorker) session(ctx context.Context, i int) (*Session, error) {
	w.mu.Lock()
	s := w.sessions[i]
	w.mu.Unlock()
	if s != nil {
		return s, nil
	}
	d := Dialer{Timeout: w.cfg.OpTimeout}
	s, err := d.Dial(ctx, w.cfg.Addrs[i])
	if err == nil {
		if err = s.Hello(w.cfg.Hello); err != nil {
			s.Close()
		}
	}
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.sessions[i] = s
	w.mu.Unlock()
	if ctx.Err() != nil {
		// The cancel hook may have run before the session was kept.
		w.drop(i)
		return nil, ctx.Err()
	}
	return s, nil
}

func (w *loadWorker) drop(i int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.sessions[i]; s != nil {
		s.Close()
		w.sessions[i] = nil
	}
}

func (w *loadWorker) closeAll() {
	for i := range w.sessions {
		w.drop(i)
	}
}

func (w *loadWorker) quitAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range w.sessions {
		if s != nil {
			s.Quit()
			w.sessions[i] = nil
		}
	}
}

func (w *loadWorker) run(ctx context.Context, p *loadPhase) {
	cfg := w.cfg
	for ctx.Err() == nil {
		n, ok := p.claim()
		if !ok {
			return
		}
		rcpt := "user" + strconv.FormatInt(n, 10) + "@" + cfg.RcptDomain
		w.buf = AppendMessage(w.buf[:0], cfg.Sender, rcpt, n, cfg.Size)
		accepted := false
		for attempt := range cfg.Attempts {
			if attempt > 0 {
				if p.measured {
					p.retries.Add(1)
				}
				if attempt >= len(cfg.Addrs) {
					// Every server refused it once: give them a moment.
					sleepCtx(ctx, time.Duration(min(attempt, 10))*200*time.Millisecond)
				}
			}
			i := (w.home + attempt) % len(cfg.Addrs)
			res, err := w.offer(ctx, i, rcpt)
			if ctx.Err() != nil {
				return
			}
			if err == nil && res.Accepted() {
				if p.measured {
					w.lat = append(w.lat, res.Latency)
					w.ids = append(w.ids, res.Reply.QueueID())
				}
				p.accepted.Add(1)
				accepted = true
				break
			}
			if err != nil {
				p.errs.Add(err.Error())
				continue
			}
			p.errs.Add(res.Err().Error())
			if res.Reply.Code >= 500 {
				break // permanent: offering it again would not help
			}
		}
		if !accepted {
			p.failed.Add(1)
		}
	}
}

// offer runs one transaction on server i. An I/O error leaves the
// connection in an unknown state, and a 421 closes it: either way the
// next offer there starts afresh.
func (w *loadWorker) offer(ctx context.Context, i int, rcpt string) (Result, error) {
	s, err := w.session(ctx, i)
	if err != nil {
		return Result{}, fmt.Errorf("connect: %w", err)
	}
	res, err := s.Send(w.cfg.Sender, []string{rcpt}, w.buf)
	if err != nil || res.Reply.Code == 421 {
		w.drop(i)
	}
	if err != nil {
		return res, fmt.Errorf("I/O: %w", err)
	}
	return res, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Percentile is the nearest-rank percentile p (0.99, say) of sorted
// samples; 0 for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p + 0.999999999)
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// Ms is d in milliseconds, as reports print it.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Count is one distinct text and how often it came.
type Count struct {
	Text  string `json:"text"`
	Count int    `json:"count"`
}

// Tally counts texts (refusals, errors) from many goroutines, so that 5000
// identical 451s read as one line. The zero value is ready.
type Tally struct {
	mu    sync.Mutex
	total int
	m     map[string]int
}

// Add counts one text, cut to 160 bytes.
func (c *Tally) Add(text string) {
	if len(text) > 160 {
		text = text[:160] + "..."
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.total++
	c.m[text]++
}

// Total is how many texts were counted.
func (c *Tally) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Counts lists the texts, most frequent first.
func (c *Tally) Counts() []Count {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Count
	for t, n := range c.m {
		out = append(out, Count{t, n})
	}
	slices.SortFunc(out, func(a, b Count) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Text, b.Text)
	})
	return out
}
