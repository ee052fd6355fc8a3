package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/hashicorp/raft"

	"lifeline/cluster/blob"
	"lifeline/fsm"
	"lifeline/smtp/outbound"
)

// fakeClock is the injected clock; tests move it by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// harness runs the engine against a real state store and blob store, with
// commands applied in order as Raft would, but in one process.
type harness struct {
	t     *testing.T
	f     *fsm.FSM
	blobs *blob.Store
	clock *fakeClock
	eng   *Engine
	mu    sync.Mutex
	index uint64
}

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, transports map[string]string, tune func(*Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	st, err := fsm.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bs, err := blob.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, f: fsm.New(st, nil), blobs: bs, clock: &fakeClock{now: t0}}
	cfg := Config{
		Store: st, Apply: h.apply,
		OpenBody: func(ctx context.Context, hash string) (io.ReadCloser, error) { return bs.Open(hash) },
		Spool:    h.spool,
		Client: &outbound.Client{Dialer: &net.Dialer{}, LocalName: "mx.lifeline.test",
			Timeouts: outbound.Timeouts{Connect: 2 * time.Second, Greeting: 5 * time.Second}},
		Router:   &outbound.Router{Resolver: noDNS{}, Transport: transports},
		Now:      h.clock.Now,
		Hostname: "mx.lifeline.test",
	}
	if tune != nil {
		tune(&cfg)
	}
	h.eng = New(cfg)
	return h
}

// noDNS fails every lookup: tests route through transports only.
type noDNS struct{}

func (noDNS) LookupMX(context.Context, string) ([]*net.MX, error) {
	return nil, errors.New("no DNS in tests")
}
func (noDNS) LookupHost(context.Context, string) ([]string, error) {
	return nil, errors.New("no DNS in tests")
}

func (h *harness) apply(ctx context.Context, cmd any) error {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.index++
	res := h.f.ApplyBatch([]*raft.Log{{Index: h.index, Type: raft.LogCommand, Data: data}})
	h.mu.Unlock()
	if err, ok := res[0].(error); ok {
		return err
	}
	return nil
}

func (h *harness) spool(ctx context.Context, cmd *fsm.SpoolAdd, body []byte) error {
	w, err := h.blobs.Create()
	if err != nil {
		return err
	}
	w.Write(body)
	hash, size, err := w.Commit()
	if err != nil {
		return err
	}
	cmd.BlobHash, cmd.Size = hash, size
	return h.apply(ctx, cmd)
}

func (h *harness) must(cmd any) {
	h.t.Helper()
	if err := h.apply(context.Background(), cmd); err != nil {
		h.t.Fatal(err)
	}
}

// receive queues a message as the MX would.
func (h *harness) receive(id, from string, body string, rcpts ...fsm.Recipient) {
	h.t.Helper()
	cmd := &fsm.SpoolAdd{ID: id, From: from, Recipients: rcpts, ReceivedAt: h.clock.Now().UnixNano(), Ret: "HDRS"}
	if err := h.spool(context.Background(), cmd, []byte(body)); err != nil {
		h.t.Fatal(err)
	}
}

func rcpt(addr string, notify ...string) fsm.Recipient {
	return fsm.Recipient{Address: addr, Domain: addr[strings.LastIndexByte(addr, '@')+1:], Notify: notify}
}

// sink is a real SMTP server on loopback that records what it gets.
type sink struct {
	mu     sync.Mutex
	ln     net.Listener
	srv    *gosmtp.Server
	conns  int
	msgs   []sunk
	reject map[string]int // recipient -> reply code
}

type sunk struct {
	From string
	To   []string
	Data []byte
}

func startSink(t *testing.T, addr string) *sink {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{ln: ln, reject: map[string]int{}}
	s.srv = gosmtp.NewServer(s)
	s.srv.Domain = "sink.test"
	s.srv.AllowInsecureAuth = true
	s.srv.EnableDSN = true
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *sink) addr() string { return s.ln.Addr().String() }

func (s *sink) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	s.mu.Lock()
	s.conns++
	s.mu.Unlock()
	return &sinkSession{s: s}, nil
}

func (s *sink) messages() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.msgs...)
}

func (s *sink) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

type sinkSession struct {
	s    *sink
	from string
	to   []string
}

func (ss *sinkSession) Mail(from string, _ *gosmtp.MailOptions) error {
	ss.from, ss.to = from, nil
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	ss.s.mu.Lock()
	code := ss.s.reject[to]
	ss.s.mu.Unlock()
	if code != 0 {
		return &gosmtp.SMTPError{Code: code, EnhancedCode: gosmtp.EnhancedCode{code / 100, 1, 1}, Message: fmt.Sprintf("no thanks for %s", to)}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, sunk{From: ss.from, To: ss.to, Data: b})
	ss.s.mu.Unlock()
	return nil
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func mustContain(t *testing.T, data []byte, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !bytes.Contains(data, []byte(p)) {
			t.Fatalf("message lacks %q:\n%s", p, data)
		}
	}
}
