package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadConfig describes one load run against one SMTP server.
type loadConfig struct {
	Addr       string // host:port of the server under test
	Sessions   int    // parallel SMTP connections
	Messages   int    // measured messages
	Warmup     int    // messages sent before measuring, not counted
	Size       int    // bytes of each message, headers included, terminator excluded
	RcptDomain string
	// Addrs, when set, spreads the sessions over several servers (the
	// nodes of a cluster) round-robin: session i talks to Addrs[i%len].
	Addrs []string
	// OpTimeout bounds one message transaction, so a stuck server ends the
	// run with errors instead of hanging it.
	OpTimeout time.Duration
}

// loadResult is what one measured phase produced.
type loadResult struct {
	Attempted int
	Accepted  int
	Errors    int
	Duration  time.Duration
	Rate      float64
	P50       time.Duration
	P99       time.Duration
	Max       time.Duration
	ErrorKind []errorKindStat
	// WarmupErrors are kept apart: they are not part of the figures, but a
	// server that rejects mail during warm-up is worth seeing.
	WarmupErrors int
}

type errorKindStat struct {
	Text  string `json:"text"`
	Count int    `json:"count"`
}

// errorLog counts failures by their text, so 5000 identical 451s print as
// one line.
type errorLog struct {
	mu    sync.Mutex
	total int
	kinds map[string]int
}

func (e *errorLog) add(text string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.kinds == nil {
		e.kinds = map[string]int{}
	}
	e.total++
	if len(text) > 160 {
		text = text[:160] + "..."
	}
	e.kinds[text]++
}

func (e *errorLog) stats() []errorKindStat {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []errorKindStat
	for t, n := range e.kinds {
		out = append(out, errorKindStat{t, n})
	}
	slices.SortFunc(out, func(a, b errorKindStat) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Text, b.Text)
	})
	return out
}

// phase hands out message numbers to all sessions until its budget is spent.
type phase struct {
	next   atomic.Int64
	limit  int64
	base   int64 // first message number, so recipients differ across phases
	record bool
	errs   *errorLog
}

func (p *phase) claim() (int64, bool) {
	n := p.next.Add(1) - 1
	return p.base + n, n < p.limit
}

// runLoad opens every session, runs the warm-up, then the measured phase.
// Sessions stay connected across both, so the measured phase sees no
// connection setup, only message transactions.
func runLoad(ctx context.Context, cfg loadConfig) (loadResult, error) {
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	sessions := make([]*session, cfg.Sessions)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.closeConn()
			}
		}
	}()
	for i := range sessions {
		s, err := dialSession(ctx, cfg, i)
		if err != nil {
			return loadResult{}, fmt.Errorf("session %d: %w", i, err)
		}
		sessions[i] = s
	}
	// Closing the connections is the one way to interrupt a blocked read
	// when the run is cancelled.
	stopClose := context.AfterFunc(ctx, func() {
		for _, s := range sessions {
			s.closeConn()
		}
	})
	defer stopClose()

	warm := &phase{limit: int64(cfg.Warmup), errs: &errorLog{}}
	runPhase(ctx, sessions, warm)
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}

	measured := &phase{limit: int64(cfg.Messages), base: int64(cfg.Warmup), record: true, errs: &errorLog{}}
	for _, s := range sessions {
		s.lat = make([]time.Duration, 0, cfg.Messages/cfg.Sessions+cfg.Sessions)
	}
	start := time.Now()
	runPhase(ctx, sessions, measured)
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}
	for _, s := range sessions {
		s.quit()
	}

	var all []time.Duration
	for _, s := range sessions {
		all = append(all, s.lat...)
	}
	slices.Sort(all)
	attempted := min(int(measured.next.Load()), cfg.Messages)
	res := loadResult{
		Attempted:    attempted,
		Accepted:     len(all),
		Errors:       measured.errs.total,
		Duration:     elapsed,
		P50:          percentile(all, 0.50),
		P99:          percentile(all, 0.99),
		ErrorKind:    measured.errs.stats(),
		WarmupErrors: warm.errs.total,
	}
	if len(all) > 0 {
		res.Max = all[len(all)-1]
	}
	if elapsed > 0 {
		res.Rate = float64(res.Accepted) / elapsed.Seconds()
	}
	return res, nil
}

func runPhase(ctx context.Context, sessions []*session, p *phase) {
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(func() { s.run(ctx, p) })
	}
	wg.Wait()
}

// percentile uses the nearest-rank method on sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p + 0.999999999)
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// session is one SMTP connection driven with plain reads and writes, so
// the client adds as little as possible to what is measured.
type session struct {
	cfg  loadConfig
	id   int
	addr string
	mu   sync.Mutex // guards conn against the cancel-time close
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	lat  []time.Duration
	msg  []byte
	dead bool // reconnecting failed; this session sends no more
}

func dialSession(ctx context.Context, cfg loadConfig, id int) (*session, error) {
	s := &session{cfg: cfg, id: id, addr: cfg.Addr}
	if len(cfg.Addrs) > 0 {
		s.addr = cfg.Addrs[id%len(cfg.Addrs)]
	}
	return s, s.connect(ctx)
}

func (s *session) connect(ctx context.Context) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	if ctx.Err() != nil {
		// The cancel hook may have run before conn was set.
		conn.Close()
		return ctx.Err()
	}
	s.r = bufio.NewReaderSize(conn, 4096)
	s.w = bufio.NewWriterSize(conn, 16384)
	conn.SetDeadline(time.Now().Add(s.cfg.OpTimeout))
	code, text, err := s.readReply()
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if code != 220 {
		return fmt.Errorf("greeting: %d %s", code, text)
	}
	code, text, err = s.cmd("EHLO client.bench.invalid")
	if err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if code != 250 {
		return fmt.Errorf("EHLO: %d %s", code, text)
	}
	return nil
}

func (s *session) closeConn() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
}

// quit ends the session politely; a failure here does not matter to the
// figures.
func (s *session) quit() {
	if s.dead || s.conn == nil {
		return
	}
	s.conn.SetDeadline(time.Now().Add(5 * time.Second))
	s.cmd("QUIT")
}

func (s *session) run(ctx context.Context, p *phase) {
	for !s.dead && ctx.Err() == nil {
		n, ok := p.claim()
		if !ok {
			return
		}
		lat, err := s.send(n)
		if err == nil {
			if p.record {
				s.lat = append(s.lat, lat)
			}
			continue
		}
		var rej *rejection
		if errors.As(err, &rej) {
			p.errs.add(rej.Error())
			continue
		}
		if ctx.Err() != nil {
			return
		}
		p.errs.add("I/O: " + err.Error())
		// The connection state is unknown after an I/O error: start over.
		s.closeConn()
		if err := s.connect(ctx); err != nil {
			if ctx.Err() == nil {
				p.errs.add("reconnect: " + err.Error())
			}
			s.dead = true
		}
	}
}

// rejection is a reply the server gave on purpose; the session goes on.
type rejection struct {
	stage string
	code  int
	text  string
}

func (r *rejection) Error() string { return fmt.Sprintf("%s: %d %s", r.stage, r.code, r.text) }

// send runs one transaction and returns the time from writing the end of
// data to reading the reply.
func (s *session) send(n int64) (time.Duration, error) {
	s.conn.SetDeadline(time.Now().Add(s.cfg.OpTimeout))
	rcpt := "user" + strconv.FormatInt(n, 10) + "@" + s.cfg.RcptDomain
	steps := []struct {
		stage, line string
		want        int
	}{
		{"MAIL", "MAIL FROM:<bench@client.bench.invalid>", 250},
		{"RCPT", "RCPT TO:<" + rcpt + ">", 250},
		{"DATA", "DATA", 354},
	}
	for _, st := range steps {
		code, text, err := s.cmd(st.line)
		if err != nil {
			return 0, err
		}
		if code != st.want && !(st.want == 250 && code == 251) {
			if err := s.reset(); err != nil {
				return 0, err
			}
			return 0, &rejection{st.stage, code, text}
		}
	}
	s.msg = buildMessage(s.msg[:0], n, rcpt, s.cfg.Size)
	// The message's own final CRLF is sent with the terminator: the clock
	// starts when the client says "that is all".
	s.w.Write(s.msg[:len(s.msg)-2])
	if err := s.w.Flush(); err != nil {
		return 0, err
	}
	start := time.Now()
	s.w.WriteString("\r\n.\r\n")
	if err := s.w.Flush(); err != nil {
		return 0, err
	}
	code, text, err := s.readReply()
	lat := time.Since(start)
	if err != nil {
		return 0, err
	}
	if code != 250 {
		return 0, &rejection{"end of DATA", code, text}
	}
	return lat, nil
}

// reset clears a transaction the server refused part of.
func (s *session) reset() error {
	code, text, err := s.cmd("RSET")
	if err != nil {
		return err
	}
	if code != 250 {
		return fmt.Errorf("RSET: %d %s", code, text)
	}
	return nil
}

func (s *session) cmd(line string) (int, string, error) {
	s.w.WriteString(line)
	s.w.WriteString("\r\n")
	if err := s.w.Flush(); err != nil {
		return 0, "", err
	}
	return s.readReply()
}

// readReply reads a possibly multi-line reply (RFC 5321 §4.2.1) and
// returns its code and the text of its last line.
func (s *session) readReply() (int, string, error) {
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return 0, "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		if len(line) > 3 && line[3] == '-' {
			continue
		}
		return code, strings.TrimSpace(line[3:]), nil
	}
}

// filler is the body text; no line starts with a dot, so no dot-stuffing
// is needed and the bytes on the wire are exactly the message.
const filler = "The quick brown fox jumps over the lazy dog while the spool keeps it safe. "

// buildMessage appends an RFC 5322 message of exactly size bytes, lines
// ending in CRLF, unique per n.
func buildMessage(buf []byte, n int64, rcpt string, size int) []byte {
	buf = append(buf, "From: Bench Sender <bench@client.bench.invalid>\r\n"...)
	buf = append(buf, "To: <"+rcpt+">\r\n"...)
	buf = append(buf, "Subject: Lifeline benchmark message "...)
	buf = strconv.AppendInt(buf, n, 10)
	buf = append(buf, "\r\nDate: "...)
	buf = time.Now().AppendFormat(buf, time.RFC1123Z)
	buf = append(buf, "\r\nMessage-ID: <bench."...)
	buf = strconv.AppendInt(buf, n, 10)
	buf = append(buf, "@client.bench.invalid>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"...)
	for {
		left := size - len(buf) - 2 // room for this line's CRLF
		if left <= 0 {
			// Headers alone exceed size: one short body line keeps the
			// message valid.
			return append(buf, "x\r\n"...)
		}
		if left <= len(filler) {
			buf = append(buf, filler[:left]...)
			return append(buf, "\r\n"...)
		}
		// Avoid leaving a remainder too small for a line of its own.
		take := len(filler)
		if left-take-2 < 1 {
			take = left - 3
		}
		buf = append(buf, filler[:take]...)
		buf = append(buf, "\r\n"...)
	}
}
