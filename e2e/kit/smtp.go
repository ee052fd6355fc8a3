package kit

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Reply is one SMTP reply, single- or multi-line (RFC 5321 §4.2).
type Reply struct {
	Code int
	// Enhanced is the enhanced status code the text starts with
	// (RFC 3463, announced by ENHANCEDSTATUSCODES, RFC 2034), or "".
	Enhanced string
	// Text is the text of every line after its code and separator,
	// enhanced code included, the lines joined by "\n".
	Text string
	// last is the final line as received, without its CRLF.
	last string
}

// String is the reply's last line as it came over the wire, such as
// "250 2.0.0 Ok: queued as 01J...".
func (r Reply) String() string { return r.last }

// OK reports a 2xx reply.
func (r Reply) OK() bool { return r.Code >= 200 && r.Code < 300 }

// QueueID is the ID in a "250 ... queued as ID" reply, or "".
func (r Reply) QueueID() string {
	if r.Code != 250 {
		return ""
	}
	_, after, ok := strings.Cut(r.last, "queued as ")
	if f := strings.Fields(after); ok && len(f) > 0 {
		return f[0]
	}
	return ""
}

// readReply reads one reply. A reply line is a three-digit code, then a
// space on the last line or a hyphen on the others, then text; every line
// carries the same code (RFC 5321 §4.2.1).
func readReply(r *bufio.Reader) (Reply, error) {
	var rep Reply
	var texts []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if line != "" {
				err = fmt.Errorf("reply line %q cut short: %w", line, err)
			}
			return rep, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
			return rep, fmt.Errorf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 {
			return rep, fmt.Errorf("malformed reply code in %q", line)
		}
		if rep.Code != 0 && code != rep.Code {
			return rep, fmt.Errorf("reply line %q continues a %d reply", line, rep.Code)
		}
		rep.Code = code
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		texts = append(texts, text)
		if len(line) == 3 || line[3] == ' ' {
			rep.Text, rep.last = strings.Join(texts, "\n"), line
			rep.Enhanced = enhancedCode(texts[0])
			return rep, nil
		}
	}
}

// enhancedCode returns the class.subject.detail code text starts with.
func enhancedCode(text string) string {
	f, _, _ := strings.Cut(text, " ")
	parts := strings.Split(f, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return ""
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || len(p) > 3 {
			return ""
		}
	}
	return f
}

// Session is one SMTP connection, driven with plain reads and writes so
// that the bytes on the wire are exactly the caller's and the client adds
// as little as it can to what a measurement times.
type Session struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	// Timeout, when set, is the deadline each command or transaction
	// gets from its start; 0 leaves deadlines to the caller.
	Timeout   time.Duration
	closeOnce sync.Once
}

// NewSession speaks SMTP over conn; it reads nothing, not even the
// greeting.
func NewSession(conn net.Conn) *Session {
	return &Session{conn: conn, r: bufio.NewReaderSize(conn, 4096), w: bufio.NewWriterSize(conn, 32<<10)}
}

// Conn is the connection underneath, for a test that writes or reads
// bytes the session must not interpret.
func (s *Session) Conn() net.Conn { return s.conn }

func (s *Session) deadline() {
	if s.Timeout > 0 {
		s.conn.SetDeadline(time.Now().Add(s.Timeout))
	}
}

// ReadReply reads one reply.
func (s *Session) ReadReply() (Reply, error) {
	s.deadline()
	return readReply(s.r)
}

// Write sends p as it is.
func (s *Session) Write(p []byte) error {
	s.deadline()
	s.w.Write(p)
	return s.w.Flush()
}

// Cmd sends one command line and reads its reply.
func (s *Session) Cmd(line string) (Reply, error) {
	s.deadline()
	s.w.WriteString(line)
	s.w.WriteString("\r\n")
	if err := s.w.Flush(); err != nil {
		return Reply{}, err
	}
	return readReply(s.r)
}

// Hello sends EHLO; a reply other than 250 is an error.
func (s *Session) Hello(name string) error {
	r, err := s.Cmd("EHLO " + name)
	if err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if r.Code != 250 {
		return &RefusedError{Stage: "EHLO", Reply: r}
	}
	return nil
}

// Result is how one mail transaction ended.
type Result struct {
	// Reply is the reply to the end of data, or the refusal that ended
	// the transaction before it; zero when no reply was read.
	Reply Reply
	// Stage is the step Reply answered: "greeting", "EHLO", "MAIL",
	// "RCPT", "DATA" or "end of DATA".
	Stage string
	// DataSent: the message and its final dot went out, so without a
	// reply the outcome is unknown.
	DataSent bool
	// Latency runs from writing the end of data to reading its reply.
	Latency time.Duration
}

// Accepted reports a 250 to the end of data.
func (r Result) Accepted() bool { return r.Stage == "end of DATA" && r.Reply.Code == 250 }

// RefusedError is a reply other than the one a step needs: the server
// said no on purpose, and the session is still usable unless the code is
// 421.
type RefusedError struct {
	Stage string
	Reply Reply
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.Stage, e.Reply.Code, e.Reply.Text)
}

// Err is the transaction's refusal as a *RefusedError, or nil when it was
// accepted or ended without a reply.
func (r Result) Err() error {
	if r.Accepted() || r.Stage == "" || r.Reply.Code == 0 {
		return nil
	}
	return &RefusedError{Stage: r.Stage, Reply: r.Reply}
}

// Send runs one transaction: MAIL, one RCPT for each recipient, DATA and
// msg, which is sent exactly as given (no dot-stuffing: a line of msg
// must not start with a dot) and followed by the terminating dot. A
// refusal ends the transaction and is the result, after RSET (not after
// a 421, which closes the session); the error is for I/O only.
func (s *Session) Send(from string, rcpts []string, msg []byte) (Result, error) {
	s.deadline()
	var res Result
	steps := []struct{ stage, line string }{{"MAIL", "MAIL FROM:<" + from + ">"}}
	for _, r := range rcpts {
		steps = append(steps, struct{ stage, line string }{"RCPT", "RCPT TO:<" + r + ">"})
	}
	steps = append(steps, struct{ stage, line string }{"DATA", "DATA"})
	for _, st := range steps {
		s.w.WriteString(st.line)
		s.w.WriteString("\r\n")
		if err := s.w.Flush(); err != nil {
			return res, err
		}
		r, err := readReply(s.r)
		if err != nil {
			return res, err
		}
		want := 250
		if st.stage == "DATA" {
			want = 354
		}
		if r.Code == want || (want == 250 && r.Code == 251) {
			continue
		}
		res.Reply, res.Stage = r, st.stage
		if r.Code != 421 {
			if rr, err := s.Cmd("RSET"); err != nil {
				return res, err
			} else if rr.Code != 250 {
				return res, fmt.Errorf("RSET after %s: %d %s", st.stage, rr.Code, rr.Text)
			}
		}
		return res, nil
	}
	// The clock starts when the client says "that is all": the message's
	// own final CRLF goes out with the terminator.
	body, end := msg, ".\r\n"
	if len(msg) >= 2 && string(msg[len(msg)-2:]) == "\r\n" {
		body, end = msg[:len(msg)-2], "\r\n.\r\n"
	}
	s.w.Write(body)
	if err := s.w.Flush(); err != nil {
		return res, err
	}
	start := time.Now()
	s.w.WriteString(end)
	if err := s.w.Flush(); err != nil {
		return res, err
	}
	res.DataSent = true
	r, err := readReply(s.r)
	res.Latency = time.Since(start)
	if err != nil {
		return res, err
	}
	res.Reply, res.Stage = r, "end of DATA"
	return res, nil
}

// Quit ends the session politely, without waiting long for the answer,
// and closes it.
func (s *Session) Quit() {
	s.conn.SetDeadline(time.Now().Add(5 * time.Second))
	s.Cmd("QUIT")
	s.Close()
}

// Close closes the connection; it is safe from any goroutine, which makes
// it the way to interrupt a blocked read.
func (s *Session) Close() {
	s.closeOnce.Do(func() { s.conn.Close() })
}

// Dialer opens sessions.
type Dialer struct {
	// DialContext opens the connection; nil dials TCP with a 10 s
	// timeout.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Hello is the EHLO name of one-shot sends; "" is "client.example".
	Hello string
	// Timeout is each session's Timeout; 0 is 30 s.
	Timeout time.Duration
}

// Open connects to addr and returns the session without reading from it.
func (d Dialer) Open(ctx context.Context, addr string) (*Session, error) {
	dial := d.DialContext
	if dial == nil {
		nd := net.Dialer{Timeout: 10 * time.Second}
		dial = nd.DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	s := NewSession(conn)
	s.Timeout = d.Timeout
	if s.Timeout == 0 {
		s.Timeout = 30 * time.Second
	}
	return s, nil
}

// Dial connects to addr and reads the greeting; one other than 220 is a
// *RefusedError.
func (d Dialer) Dial(ctx context.Context, addr string) (*Session, error) {
	s, err := d.Open(ctx, addr)
	if err != nil {
		return nil, err
	}
	r, err := s.ReadReply()
	if err == nil && r.Code != 220 {
		err = &RefusedError{Stage: "greeting", Reply: r}
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Send delivers one message on a connection of its own, as sending servers
// do: greeting, EHLO, the transaction, QUIT. A refusal at any step is the
// result; the error says no final reply was read. Cancelling ctx aborts
// the transaction (its outcome is then unknown).
func (d Dialer) Send(ctx context.Context, addr, from string, rcpts []string, msg []byte) (Result, error) {
	s, err := d.Open(ctx, addr)
	if err != nil {
		return Result{}, err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, s.Close)
	defer stop()
	r, err := s.ReadReply()
	if err != nil {
		return Result{}, err
	}
	if r.Code != 220 {
		return Result{Reply: r, Stage: "greeting"}, nil
	}
	hello := d.Hello
	if hello == "" {
		hello = "client.example"
	}
	if r, err = s.Cmd("EHLO " + hello); err != nil {
		return Result{}, err
	} else if r.Code != 250 {
		return Result{Reply: r, Stage: "EHLO"}, nil
	}
	res, err := s.Send(from, rcpts, msg)
	if err == nil && res.Reply.Code != 421 {
		s.w.WriteString("QUIT\r\n")
		s.w.Flush()
	}
	return res, err
}

// WaitGreeting polls until a server at addr answers with a 220 greeting.
func (d Dialer) WaitGreeting(ctx context.Context, addr string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	last := "no answer"
	return Poll(ctx, 50*time.Millisecond, func() string { return addr + ": " + last }, func() (bool, error) {
		dd := d
		dd.Timeout = 5 * time.Second
		s, err := dd.Dial(ctx, addr)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		s.Quit()
		return true, nil
	})
}

// Dial connects to addr over TCP and reads the greeting.
func Dial(ctx context.Context, addr string) (*Session, error) { return Dialer{}.Dial(ctx, addr) }

// WaitGreeting polls until a server at addr answers with a 220 greeting.
func WaitGreeting(ctx context.Context, addr string, limit time.Duration) error {
	return Dialer{}.WaitGreeting(ctx, addr, limit)
}

// Send delivers one message to addr on a new connection and returns the
// final reply: the reply to the end of data, or the refusal that came
// first. The error says no final reply was read.
func Send(addr, from string, rcpts []string, msg string) (Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Dialer{Hello: "load.example"}.Send(ctx, addr, from, rcpts, []byte(msg))
	return res.Reply, err
}
