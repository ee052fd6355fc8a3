package smtp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// fakeQueue is an in-memory Queue. Its knobs make each step fail on demand.
type fakeQueue struct {
	mu sync.Mutex

	protected     map[string]bool
	protectedErr  error
	newBlobErr    error
	writeErr      error
	commitErr     error
	enqueueErr    error
	enqueueBlock  bool  // Enqueue waits for its context to end
	room          int64 // bytes of storage left; 0 means plenty
	postmaster    string
	postmasterErr error

	lookups []string            // every domain Protected was asked about
	blobs   map[string][]byte   // committed blobs by hash
	open    int                 // blobs neither committed nor aborted
	msgs    []queuedMessage     // successful Enqueue calls
	byID    map[string]struct{} // IDs enqueued, to catch duplicates
}

type queuedMessage struct {
	Env  Envelope
	Hash string
	Size int64
	Body []byte
}

func newFakeQueue(domains ...string) *fakeQueue {
	q := &fakeQueue{protected: map[string]bool{}, blobs: map[string][]byte{}, byID: map[string]struct{}{}}
	for _, d := range domains {
		q.protected[d] = true
	}
	return q
}

func (q *fakeQueue) Protected(domain string) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.lookups = append(q.lookups, domain)
	if q.protectedErr != nil {
		return false, q.protectedErr
	}
	return q.protected[domain], nil
}

func (q *fakeQueue) Postmaster() (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.postmaster, q.postmasterErr
}

func (q *fakeQueue) Room(size int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.room != 0 && (size >= q.room || q.room < 1000) {
		return errors.New("no room")
	}
	return nil
}

func (q *fakeQueue) NewBlob() (BlobWriter, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.newBlobErr != nil {
		return nil, q.newBlobErr
	}
	q.open++
	return &fakeBlob{q: q}, nil
}

func (q *fakeQueue) Enqueue(ctx context.Context, env *Envelope, hash string, size int64) error {
	q.mu.Lock()
	block, err := q.enqueueBlock, q.enqueueErr
	q.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("Enqueue called without a deadline")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	body, ok := q.blobs[hash]
	if !ok {
		return fmt.Errorf("unknown blob %s", hash)
	}
	if int64(len(body)) != size {
		return fmt.Errorf("size %d, blob has %d", size, len(body))
	}
	if _, dup := q.byID[env.ID]; dup {
		return fmt.Errorf("duplicate queue ID %s", env.ID)
	}
	q.byID[env.ID] = struct{}{}
	e := *env
	e.Recipients = append([]Recipient(nil), env.Recipients...)
	q.msgs = append(q.msgs, queuedMessage{Env: e, Hash: hash, Size: size, Body: body})
	return nil
}

func (q *fakeQueue) messages() []queuedMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queuedMessage(nil), q.msgs...)
}

func (q *fakeQueue) openBlobs() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.open
}

func (q *fakeQueue) set(f func(q *fakeQueue)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f(q)
}

type fakeBlob struct {
	q    *fakeQueue
	buf  bytes.Buffer
	done bool
}

func (b *fakeBlob) Write(p []byte) (int, error) {
	if b.done {
		return 0, errors.New("write after commit or abort")
	}
	b.q.mu.Lock()
	err := b.q.writeErr
	b.q.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return b.buf.Write(p)
}

func (b *fakeBlob) Commit() (string, int64, error) {
	if b.done {
		return "", 0, errors.New("commit after commit or abort")
	}
	b.done = true
	b.q.mu.Lock()
	defer b.q.mu.Unlock()
	b.q.open--
	if b.q.commitErr != nil {
		return "", 0, b.q.commitErr
	}
	sum := sha256.Sum256(b.buf.Bytes())
	h := hex.EncodeToString(sum[:])
	b.q.blobs[h] = bytes.Clone(b.buf.Bytes())
	return h, int64(b.buf.Len()), nil
}

func (b *fakeBlob) Abort() error {
	if b.done {
		return nil
	}
	b.done = true
	b.q.mu.Lock()
	b.q.open--
	b.q.mu.Unlock()
	return nil
}

// lockedBuffer collects log output from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var testTime = time.Date(2006, time.January, 2, 15, 4, 5, 0, time.UTC)

const testDate = "Mon, 02 Jan 2006 15:04:05 +0000"

type testServer struct {
	t    testing.TB
	q    *fakeQueue
	srv  *Server
	addr string
	logs *lockedBuffer
	done chan error
}

// startServer runs a Server on 127.0.0.1 with a fixed clock and IDs
// ID0001, ID0002, ... mod adjusts the Config first.
func startServer(t testing.TB, q *fakeQueue, mod func(*Config)) *testServer {
	t.Helper()
	var n atomic.Int64
	logs := &lockedBuffer{}
	cfg := Config{
		Hostname:      "mx.test",
		Queue:         q,
		Now:           func() time.Time { return testTime },
		NewID:         func() string { return fmt.Sprintf("ID%04d", n.Add(1)) },
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ReadTimeout:   5 * time.Second,
		WriteTimeout:  5 * time.Second,
		DataTimeout:   10 * time.Second,
		CommitTimeout: 5 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, q: q, srv: NewServer(cfg), addr: l.Addr().String(), logs: logs, done: make(chan error, 1)}
	go func() { ts.done <- ts.srv.Serve(l) }()
	t.Cleanup(func() {
		_ = ts.srv.Close()
		select {
		case err := <-ts.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
	})
	return ts
}

// client is a raw session with the server under test: bytes go out
// exactly as a test writes them, and replies are read by e2e/kit's
// client.
type client struct {
	t    testing.TB
	conn net.Conn
	s    *kit.Session
}

func newClient(t testing.TB, conn net.Conn) *client {
	return &client{t: t, conn: conn, s: kit.NewSession(conn)}
}

// dial connects and reads the greeting.
func (ts *testServer) dial() *client {
	ts.t.Helper()
	c := ts.dialNoGreet()
	c.expect(220, "mx.test ESMTP")
	return c
}

func (ts *testServer) dialNoGreet() *client {
	ts.t.Helper()
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	// A generous safety net; no test waits on it.
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	ts.t.Cleanup(func() { _ = conn.Close() })
	return newClient(ts.t, conn)
}

// send writes bytes exactly as given.
func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply: its code, and its lines'
// text joined by newlines.
func (c *client) reply() (int, string, error) {
	r, err := c.s.ReadReply()
	return r.Code, r.Text, err
}

// expect reads a reply and checks its code and that it contains substr.
func (c *client) expect(code int, substr string) string {
	c.t.Helper()
	got, msg, err := c.reply()
	if err != nil {
		c.t.Fatalf("want %d %q, read error: %v", code, substr, err)
	}
	if got != code || !strings.Contains(msg, substr) {
		c.t.Fatalf("want %d %q, got %d %q", code, substr, got, msg)
	}
	return msg
}

// cmd sends one command line and checks the reply.
func (c *client) cmd(line string, code int, substr string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(code, substr)
}

// expectClosed reads until the server closes, failing on any reply.
func (c *client) expectClosed() {
	c.t.Helper()
	for {
		code, msg, err := c.reply()
		if err != nil {
			if isTimeout(err) {
				c.t.Fatalf("connection still open")
			}
			return
		}
		c.t.Fatalf("unexpected reply %d %q before close", code, msg)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// hello sends EHLO and returns the extension lines.
func (c *client) hello() string {
	c.t.Helper()
	return c.cmd("EHLO client.example", 250, "")
}

// startTx sends EHLO (if helo), MAIL and the RCPTs, all expected to pass.
func (c *client) startTx(from string, rcpts ...string) {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", 250, "")
	for _, r := range rcpts {
		c.cmd("RCPT TO:<"+r+">", 250, "")
	}
}

// data sends DATA and a body that already carries its ".\r\n" terminator.
func (c *client) data(bodyAndDot string) (int, string) {
	c.t.Helper()
	c.cmd("DATA", 354, "")
	c.send(bodyAndDot)
	code, msg, err := c.reply()
	if err != nil {
		c.t.Fatalf("reading reply to end of data: %v", err)
	}
	return code, msg
}

// hasBareCRorLF reports a CR not followed by LF or an LF not preceded by CR.
func hasBareCRorLF(b []byte) bool {
	for i, c := range b {
		switch c {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return true
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return true
			}
		}
	}
	return false
}

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a.Unmap()
}
