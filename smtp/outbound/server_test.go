package outbound

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// sink is a go-smtp server on loopback that records what it is sent and
// can be told to refuse.
type sink struct {
	addr   string
	server *smtp.Server
	conns  atomic.Int32

	mu       sync.Mutex
	msgs     []*gotMsg
	mailErr  *smtp.SMTPError
	rcptErrs map[string]*smtp.SMTPError
	dataErr  *smtp.SMTPError
	trace    bytes.Buffer
}

type gotMsg struct {
	From     string
	MailOpts smtp.MailOptions
	Rcpts    []string
	RcptOpts []smtp.RcptOptions
	Data     []byte
	TLS      bool
}

type sinkOpts struct {
	dsn     bool
	utf8    bool
	tls     *tls.Config
	maxSize int64
}

func newSink(t *testing.T, o sinkOpts) *sink {
	t.Helper()
	s := &sink{rcptErrs: map[string]*smtp.SMTPError{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &sinkSession{s: s, tls: isTLS}, nil
	}))
	srv.Domain = "sink.test"
	srv.EnableDSN = o.dsn
	srv.EnableSMTPUTF8 = o.utf8
	srv.TLSConfig = o.tls
	srv.MaxMessageBytes = o.maxSize
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.Debug = lockedWriter{&s.mu, &s.trace}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	s.server = srv
	go srv.Serve(countingListener{l, &s.conns})
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *sink) messages() []*gotMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*gotMsg(nil), s.msgs...)
}

func (s *sink) traced() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trace.String()
}

func (s *sink) refuseRcpt(addr string, code int, enh smtp.EnhancedCode, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcptErrs[addr] = &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: text}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

type sinkSession struct {
	s   *sink
	tls bool
	cur *gotMsg
}

func (ss *sinkSession) Reset()        { ss.cur = nil }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if ss.s.mailErr != nil {
		return ss.s.mailErr
	}
	ss.cur = &gotMsg{From: from, TLS: ss.tls}
	if opts != nil {
		ss.cur.MailOpts = *opts
	}
	return nil
}

func (ss *sinkSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if e := ss.s.rcptErrs[to]; e != nil {
		return e
	}
	ss.cur.Rcpts = append(ss.cur.Rcpts, to)
	var o smtp.RcptOptions
	if opts != nil {
		o = *opts
	}
	ss.cur.RcptOpts = append(ss.cur.RcptOpts, o)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if ss.s.dataErr != nil {
		return ss.s.dataErr
	}
	ss.cur.Data = b
	ss.s.msgs = append(ss.s.msgs, ss.cur)
	return nil
}

// scripted runs handle for every connection to a raw loopback listener,
// for server behaviour go-smtp will not produce (a 421 greeting, no
// EHLO, silence).
func scripted(t *testing.T, handle func(c net.Conn, r *bufio.Reader)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c, bufio.NewReader(c))
			}()
		}
	}()
	return l.Addr().String()
}

// mapDialer sends chosen names to loopback addresses and records what was
// dialed, so routing can use names without DNS.
type mapDialer struct {
	m      map[string]string
	mu     sync.Mutex
	dialed []string
}

func (d *mapDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, addr)
	d.mu.Unlock()
	if to, ok := d.m[addr]; ok {
		addr = to
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

// selfSigned makes a certificate for 127.0.0.1 and mx.test.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.test"},
		DNSNames:     []string{"mx.test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func testClient() *Client {
	return &Client{
		Dialer:    &net.Dialer{},
		LocalName: "node1.lifeline.test",
		Timeouts: Timeouts{
			Connect: 5 * time.Second, Greeting: 5 * time.Second, Command: 5 * time.Second,
			Mail: 5 * time.Second, Rcpt: 5 * time.Second, DataInit: 5 * time.Second,
			DataBlock: 5 * time.Second, DataTerm: 5 * time.Second,
		},
	}
}

func bodyOf(s string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

func rcpts(addrs ...string) []Rcpt {
	out := make([]Rcpt, len(addrs))
	for i, a := range addrs {
		out[i] = Rcpt{Address: a}
	}
	return out
}

const simpleBody = "From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
