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

// fillConfig describes how the spool is filled.
type fillConfig struct {
	Addrs    []string // SMTP addresses of the nodes; session i starts on Addrs[i%len]
	Messages int
	Size     int
	Sessions int
	Domain   string
	// Attempts bounds how often one message is offered, on node after node,
	// before it counts as failed.
	Attempts int
	// OpTimeout bounds one SMTP command or the DATA phase.
	OpTimeout time.Duration
	Progress  func(accepted, failed int64)
}

// fillResult is what the fill produced.
type fillResult struct {
	Accepted int           `json:"accepted"`
	Failed   int           `json:"failed"`
	Retries  int           `json:"retries"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
	Rate     float64       `json:"msgs_per_second"`
	P50Ms    float64       `json:"p50_ms"`
	P99Ms    float64       `json:"p99_ms"`
	MaxMs    float64       `json:"max_ms"`
	// Replies counts every reply other than 250 by its text, and I/O
	// errors, so 5,000 identical 451s read as one line.
	Replies []countedText `json:"non_250_replies,omitempty"`
	IDs     []string      `json:"-"`
}

type countedText struct {
	Text  string `json:"text"`
	Count int    `json:"count"`
}

type textCounter struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *textCounter) add(s string) {
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[s]++
}

func (c *textCounter) list() []countedText {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []countedText
	for t, n := range c.m {
		out = append(out, countedText{t, n})
	}
	slices.SortFunc(out, func(a, b countedText) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Text, b.Text)
	})
	return out
}

// fill sends cfg.Messages messages over cfg.Sessions parallel sessions. A
// 4xx reply or a broken connection sends the message again on the next node.
func fill(ctx context.Context, cfg fillConfig) (*fillResult, error) {
	if cfg.Attempts == 0 {
		cfg.Attempts = 20
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = time.Minute
	}
	var next, accepted, failed, retries atomic.Int64
	replies := &textCounter{}
	workers := make([]*worker, cfg.Sessions)
	for i := range workers {
		workers[i] = &worker{cfg: cfg, home: i % len(cfg.Addrs), conns: make([]*smtpConn, len(cfg.Addrs))}
	}
	// Closing every connection is the one way to interrupt a blocked read.
	stop := context.AfterFunc(ctx, func() {
		for _, w := range workers {
			w.closeAll()
		}
	})
	defer stop()

	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if cfg.Progress != nil {
					cfg.Progress(accepted.Load(), failed.Load())
				}
			}
		}
	}()

	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			defer w.closeAll()
			var buf []byte
			for ctx.Err() == nil {
				n := next.Add(1) - 1
				if n >= int64(cfg.Messages) {
					return
				}
				rcpt := "user" + strconv.FormatInt(n, 10) + "@" + cfg.Domain
				buf = buildMessage(buf[:0], n, rcpt, cfg.Size)
				ok := false
				for attempt := range cfg.Attempts {
					if ctx.Err() != nil {
						return
					}
					if attempt > 0 {
						retries.Add(1)
						if attempt >= len(cfg.Addrs) {
							// Every node refused it once: give the cluster a moment.
							sleepCtx(ctx, time.Duration(min(attempt, 10))*200*time.Millisecond)
						}
					}
					node := (w.home + attempt) % len(cfg.Addrs)
					id, lat, err := w.send(ctx, node, rcpt, buf)
					if err == nil {
						w.lat = append(w.lat, lat)
						w.ids = append(w.ids, id)
						accepted.Add(1)
						ok = true
						break
					}
					if ctx.Err() != nil {
						return
					}
					replies.add(err.Error())
					var r *replyErr
					if errors.As(err, &r) && r.code >= 500 {
						break // permanent: offering it again would not help
					}
				}
				if !ok {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(done)
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("filling the spool: %d of %d accepted: %w", accepted.Load(), cfg.Messages, context.Cause(ctx))
	}

	var lat []time.Duration
	res := &fillResult{Duration: elapsed, Seconds: elapsed.Seconds(), Replies: replies.list()}
	for _, w := range workers {
		lat = append(lat, w.lat...)
		res.IDs = append(res.IDs, w.ids...)
	}
	slices.Sort(lat)
	res.Accepted = len(lat)
	res.Failed = int(failed.Load())
	res.Retries = int(retries.Load())
	if elapsed > 0 {
		res.Rate = float64(res.Accepted) / elapsed.Seconds()
	}
	res.P50Ms, res.P99Ms = ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99))
	if len(lat) > 0 {
		res.MaxMs = ms(lat[len(lat)-1])
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile uses the nearest-rank method on sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p + 0.999999999)
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// worker is one sending session; it keeps a connection to each node it
// has used, so a retry on another node costs no reconnect the next time.
type worker struct {
	cfg   fillConfig
	home  int
	mu    sync.Mutex
	conns []*smtpConn
	lat   []time.Duration
	ids   []string
}

func (w *worker) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, c := range w.conns {
		if c != nil {
			c.conn.Close()
			w.conns[i] = nil
		}
	}
}

func (w *worker) drop(i int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.conns[i]; c != nil {
		c.conn.Close()
		w.conns[i] = nil
	}
}

// send offers one message to node i and returns its queue ID.
func (w *worker) send(ctx context.Context, i int, rcpt string, msg []byte) (string, time.Duration, error) {
	w.mu.Lock()
	c := w.conns[i]
	w.mu.Unlock()
	if c == nil {
		var err error
		if c, err = dialSMTP(ctx, w.cfg.Addrs[i], w.cfg.OpTimeout); err != nil {
			return "", 0, fmt.Errorf("connect: %w", err)
		}
		w.mu.Lock()
		w.conns[i] = c
		w.mu.Unlock()
		if ctx.Err() != nil {
			w.drop(i)
			return "", 0, ctx.Err()
		}
	}
	id, lat, err := c.transaction(rcpt, msg, w.cfg.OpTimeout)
	var r *replyErr
	if err != nil && (!errors.As(err, &r) || r.code == 421) {
		// The connection's state is unknown after an I/O error, and 421
		// closes it: start afresh next time.
		w.drop(i)
	}
	return id, lat, err
}

// replyErr is a reply other than the one wanted.
type replyErr struct {
	stage string
	code  int
	text  string
}

func (e *replyErr) Error() string { return fmt.Sprintf("%s: %d %s", e.stage, e.code, e.text) }

// smtpConn is one SMTP connection driven with plain reads and writes.
type smtpConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func dialSMTP(ctx context.Context, addr string, timeout time.Duration) (*smtpConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &smtpConn{conn: conn, r: bufio.NewReaderSize(conn, 4096), w: bufio.NewWriterSize(conn, 32<<10)}
	conn.SetDeadline(time.Now().Add(timeout))
	code, text, err := c.readReply()
	if err == nil && code != 220 {
		err = &replyErr{"greeting", code, text}
	}
	if err == nil {
		code, text, err = c.cmd("EHLO client.scale.invalid")
		if err == nil && code != 250 {
			err = &replyErr{"EHLO", code, text}
		}
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// transaction runs MAIL, RCPT, DATA and the message; the latency is from
// the end of data to the reply.
func (c *smtpConn) transaction(rcpt string, msg []byte, timeout time.Duration) (string, time.Duration, error) {
	c.conn.SetDeadline(time.Now().Add(timeout))
	steps := []struct {
		stage, line string
		want        int
	}{
		{"MAIL", "MAIL FROM:<scale@client.scale.invalid>", 250},
		{"RCPT", "RCPT TO:<" + rcpt + ">", 250},
		{"DATA", "DATA", 354},
	}
	for _, st := range steps {
		code, text, err := c.cmd(st.line)
		if err != nil {
			return "", 0, err
		}
		if code != st.want {
			if code != 421 {
				if code, text, err := c.cmd("RSET"); err != nil {
					return "", 0, err
				} else if code != 250 {
					return "", 0, &replyErr{"RSET", code, text}
				}
			}
			return "", 0, &replyErr{st.stage, code, text}
		}
	}
	// The message ends in CRLF, so the terminator is ".\r\n".
	c.w.Write(msg)
	c.w.WriteString(".\r\n")
	start := time.Now()
	if err := c.w.Flush(); err != nil {
		return "", 0, err
	}
	code, text, err := c.readReply()
	lat := time.Since(start)
	if err != nil {
		return "", 0, err
	}
	if code != 250 {
		return "", 0, &replyErr{"end of DATA", code, text}
	}
	_, id, ok := strings.Cut(text, "queued as ")
	if !ok {
		return "", 0, &replyErr{"end of DATA (no queue ID)", code, text}
	}
	return strings.TrimSpace(id), lat, nil
}

func (c *smtpConn) cmd(line string) (int, string, error) {
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return 0, "", err
	}
	return c.readReply()
}

// readReply reads a possibly multi-line reply (RFC 5321 §4.2.1) and
// returns its code and the text of its last line.
func (c *smtpConn) readReply() (int, string, error) {
	for {
		line, err := c.r.ReadString('\n')
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

// filler is the body text; no line starts with a dot, so nothing needs
// dot-stuffing and the bytes on the wire are exactly the message.
const filler = "The quick brown fox jumps over the lazy dog while the spool keeps it safe. "

// buildMessage appends an RFC 5322 message of exactly size bytes (when
// size exceeds the headers), every line ending in CRLF, unique per n.
func buildMessage(buf []byte, n int64, rcpt string, size int) []byte {
	buf = append(buf, "From: Scale Sender <scale@client.scale.invalid>\r\n"...)
	buf = append(buf, "To: <"+rcpt+">\r\n"...)
	buf = append(buf, "Subject: Lifeline scale message "...)
	buf = strconv.AppendInt(buf, n, 10)
	buf = append(buf, "\r\nDate: "...)
	buf = time.Now().AppendFormat(buf, time.RFC1123Z)
	buf = append(buf, "\r\nMessage-ID: <scale."...)
	buf = strconv.AppendInt(buf, n, 10)
	buf = append(buf, "@client.scale.invalid>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"...)
	for {
		left := size - len(buf) - 2 // room for this line's CRLF
		if left <= 0 {
			return append(buf, "x\r\n"...)
		}
		if left <= len(filler) {
			buf = append(buf, filler[:left]...)
			return append(buf, "\r\n"...)
		}
		take := len(filler)
		if left-take-2 < 1 {
			take = left - 3 // no remainder too small for a line of its own
		}
		buf = append(buf, filler[:take]...)
		buf = append(buf, "\r\n"...)
	}
}
