package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"

	"lifeline/e2e/kit"
)

// ---- helpers ---------------------------------------------------------------

// testNet hands out memberlist mock transports. MockNetwork's maps are not
// locked, so every transport must exist before the first node starts.
type testNet struct {
	mn   memberlist.MockNetwork
	done chan struct{}
}

func newTestNet(t *testing.T) *testNet {
	n := &testNet{done: make(chan struct{})}
	// Registered first, so it runs after every node's Shutdown.
	t.Cleanup(func() { close(n.done) })
	return n
}

func (n *testNet) transport(name string) *drainingTransport {
	return &drainingTransport{MockTransport: n.mn.NewTransport(name), done: n.done}
}

// drainingTransport fixes one property of MockTransport that matters here:
// its channels are unbuffered and Shutdown is a no-op, so after a node stops,
// a peer still gossiping to it (memberlist gossips to the dead for a while)
// would block forever. Once shut down it swallows whatever is sent to it.
type drainingTransport struct {
	*memberlist.MockTransport
	done <-chan struct{}
	once sync.Once
}

func (d *drainingTransport) Shutdown() error {
	d.once.Do(func() {
		go func() {
			for {
				select {
				case <-d.PacketCh():
				case c := <-d.StreamCh():
					c.Close()
				case <-d.done:
					return
				}
			}
		}()
	})
	return nil
}

func (d *drainingTransport) addr(t *testing.T) string {
	ip, port, err := d.FinalAdvertiseAddr("", 0)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

// quiet discards logs unless GOSSIP_TEST_LOG names a level ("debug",
// "info"), for looking at what an operator would see.
func quiet() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("GOSSIP_TEST_LOG"))); err != nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func testMeta(name string, expect int) Meta {
	return Meta{
		RaftAddr:        name + ".test:7000",
		HTTPAddr:        name + ".test:8080",
		SMTPAddr:        name + ".test:25",
		Version:         "v1.2.3-test",
		BootstrapExpect: expect,
	}
}

// mockConfig uses short intervals: the mock network has no latency, and the
// tests should not spend seconds waiting for a probe.
func mockConfig(name string, tr memberlist.Transport, expect int, join ...string) Config {
	return Config{
		Name:              name,
		Transport:         tr,
		Join:              join,
		Meta:              testMeta(name, expect),
		Logger:            quiet(),
		ProbeInterval:     100 * time.Millisecond,
		ProbeTimeout:      50 * time.Millisecond,
		GossipInterval:    20 * time.Millisecond,
		RetryJoinInterval: 20 * time.Millisecond,
		RetryJoinMax:      100 * time.Millisecond,
	}
}

func start(t *testing.T, cfg Config) *Gossip {
	t.Helper()
	g, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	return g
}

// waitEvent reads g's events until one matches; others are discarded.
func waitEvent(t *testing.T, g *Gossip, timeout time.Duration, what string, match func(Event) bool) Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-g.Events():
			if !ok {
				t.Fatalf("%s: events closed while waiting for %s", g.name, what)
			}
			if match(ev) {
				return ev
			}
		case <-timer.C:
			t.Fatalf("%s: timed out after %v waiting for %s", g.name, timeout, what)
		}
	}
}

func aliveNames(g *Gossip) []string {
	var names []string
	for _, m := range g.Members() {
		if m.State == StateAlive {
			names = append(names, m.Name)
		}
	}
	return names
}

func seesAlive(g *Gossip, names ...string) func() (bool, error) {
	return func() (bool, error) { return slices.Equal(aliveNames(g), names), nil }
}

func memberNamed(g *Gossip, name string) (Member, bool) {
	for _, m := range g.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func peerNames(ms []Member) []string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return names
}

// recorder is a slog.Handler that keeps records for assertions.
type recorder struct {
	mu    *sync.Mutex
	recs  *[]record
	attrs []slog.Attr
}

type record struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newRecorder() *recorder { return &recorder{mu: new(sync.Mutex), recs: new([]record)} }

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	rec := record{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.recs = append(*h.recs, rec)
	h.mu.Unlock()
	return nil
}

func (h *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{mu: h.mu, recs: h.recs, attrs: append(slices.Clone(h.attrs), as...)}
}

func (h *recorder) WithGroup(string) slog.Handler { return h }

func (h *recorder) find(match func(record) bool) []record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []record
	for _, r := range *h.recs {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// freePort returns a port that was free for both TCP and UDP on 127.0.0.1,
// because memberlist listens on both with the same number.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		tl.Close()
		if err == nil {
			ul.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// ---- tests over memberlist's mock network ----------------------------------

func TestThreeNodesJoinSeeMetadataAndAgreeOnBootstrap(t *testing.T) {
	n := newTestNet(t)
	ta, tb, tc := n.transport("a"), n.transport("b"), n.transport("c")

	a := start(t, mockConfig("a", ta, 3))
	if _, ok := a.ExpectReady(3); ok {
		t.Fatal("ExpectReady(3) true with one member")
	}
	if a.Joined() {
		t.Fatal("a reports joined before anyone else exists")
	}
	// The join chain is c -> b -> a: c learns about a only through gossip.
	b := start(t, mockConfig("b", tb, 3, ta.addr(t)))
	c := start(t, mockConfig("c", tc, 3, tb.addr(t)))
	nodes := []*Gossip{a, b, c}
	addrs := map[string]string{"a": ta.addr(t), "b": tb.addr(t), "c": tc.addr(t)}

	for _, g := range nodes {
		kit.Wait(t, 20*time.Second, 10*time.Millisecond, g.name+" sees a,b,c alive", seesAlive(g, "a", "b", "c"))
	}
	for _, g := range nodes {
		if !g.Joined() {
			t.Errorf("%s: Joined() = false", g.name)
		}
		for _, m := range g.Members() {
			if m.Meta != testMeta(m.Name, 3) {
				t.Errorf("%s sees %s meta %+v", g.name, m.Name, m.Meta)
			}
			if m.Addr != addrs[m.Name] {
				t.Errorf("%s sees %s at %q, want %q", g.name, m.Name, m.Addr, addrs[m.Name])
			}
		}
		if lm := g.LocalMember(); lm.Name != g.name || lm.State != StateAlive || lm.Meta != testMeta(g.name, 3) {
			t.Errorf("%s: LocalMember() = %+v", g.name, lm)
		}
		// Every node learns of both others through a join event, in
		// whatever order gossip delivered them.
		want := map[string]bool{"a": true, "b": true, "c": true}
		delete(want, g.name)
		waitEvent(t, g, 2*time.Second, "joins of the other two", func(ev Event) bool {
			if ev.Type == EventJoin && ev.Member.Meta == testMeta(ev.Member.Name, 3) {
				delete(want, ev.Member.Name)
			}
			return len(want) == 0
		})
	}

	var first []Member
	for _, g := range nodes {
		peers, ok := g.ExpectReady(3)
		if !ok {
			t.Fatalf("%s: ExpectReady(3) not ready", g.name)
		}
		if first == nil {
			first = peers
		} else if !slices.Equal(peers, first) {
			t.Errorf("%s: peers %v differ from %v", g.name, peers, first)
		}
		if _, ok := g.ExpectReady(4); ok {
			t.Errorf("%s: ExpectReady(4) true with three members", g.name)
		}
	}
	if got := peerNames(first); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("peers = %v", got)
	}
	for _, m := range first {
		if m.Meta.RaftAddr != m.Name+".test:7000" {
			t.Errorf("peer %s raft address %q", m.Name, m.Meta.RaftAddr)
		}
	}

	// Background joining ends once its addresses have answered.
	for _, g := range []*Gossip{b, c} {
		select {
		case <-g.joinDone:
		case <-time.After(2 * time.Second):
			t.Errorf("%s: join loop still running", g.name)
		}
	}
}

func TestExpectReadyMismatchIsLoggedAndNotReady(t *testing.T) {
	n := newTestNet(t)
	ta, tb, tc := n.transport("a"), n.transport("b"), n.transport("c")
	rec := newRecorder()
	cfgA := mockConfig("a", ta, 3)
	cfgA.Logger = slog.New(rec)
	a := start(t, cfgA)
	start(t, mockConfig("b", tb, 3, ta.addr(t)))
	start(t, mockConfig("c", tc, 2, ta.addr(t)))
	kit.Wait(t, 20*time.Second, 10*time.Millisecond, "a sees a,b,c", seesAlive(a, "a", "b", "c"))

	for range 5 {
		if _, ok := a.ExpectReady(3); ok {
			t.Fatal("ExpectReady(3) true although c expects 2")
		}
	}
	if _, ok := a.ExpectReady(2); ok {
		t.Fatal("ExpectReady(2) true although a and b expect 3")
	}
	warns := rec.find(func(r record) bool {
		return r.level == slog.LevelWarn && strings.Contains(r.msg, "bootstrap-expect mismatch") && r.attrs["member"] == "c"
	})
	if len(warns) != 1 {
		t.Fatalf("want one mismatch warning about c for repeated polls, got %d", len(warns))
	}
}

func TestEncryptionKeepsOutNodesWithoutTheKey(t *testing.T) {
	key := []byte("0123456789abcdef")
	wrong := []byte("fedcba9876543210")
	n := newTestNet(t)
	ta, tb, tc, td := n.transport("a"), n.transport("b"), n.transport("wrongkey"), n.transport("nokey")

	rec := newRecorder()
	cfgA := mockConfig("a", ta, 1)
	cfgA.SecretKey = key
	cfgA.Logger = slog.New(rec)
	a := start(t, cfgA)

	cfgC := mockConfig("wrongkey", tc, 1, ta.addr(t))
	cfgC.SecretKey = wrong
	c := start(t, cfgC)
	d := start(t, mockConfig("nokey", td, 1, ta.addr(t)))

	cfgB := mockConfig("b", tb, 1, ta.addr(t))
	cfgB.SecretKey = key
	b := start(t, cfgB)

	kit.Wait(t, 20*time.Second, 10*time.Millisecond, "b joins a with the right key", seesAlive(a, "a", "b"))
	kit.Wait(t, 20*time.Second, 10*time.Millisecond, "b sees a", seesAlive(b, "a", "b"))
	for _, g := range []*Gossip{c, d} {
		kit.Wait(t, 20*time.Second, 10*time.Millisecond, g.name+" retries", func() (bool, error) { return g.joinAttempts.Load() >= 3, nil })
		if got := g.Members(); len(got) != 1 || got[0].Name != g.name {
			t.Errorf("%s: Members() = %v, want only itself", g.name, got)
		}
		if g.Joined() {
			t.Errorf("%s: Joined() = true without the key", g.name)
		}
		select {
		case <-g.joinDone:
			t.Errorf("%s: gave up joining", g.name)
		default:
		}
	}
	if got := aliveNames(a); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("a sees %v", got)
	}
	// memberlist's own complaints reach the slog logger, tagged and not as errors.
	ml := rec.find(func(r record) bool { return r.attrs["component"] == "memberlist" })
	if len(ml) == 0 {
		t.Error("no memberlist log records reached slog")
	}
	for _, r := range ml {
		if r.level > slog.LevelWarn {
			t.Errorf("memberlist record above warn: %v %q", r.level, r.msg)
		}
	}
}

func TestLeaveIsReportedAsLeave(t *testing.T) {
	n := newTestNet(t)
	ta, tb, tc := n.transport("a"), n.transport("b"), n.transport("c")
	a := start(t, mockConfig("a", ta, 3))
	b := start(t, mockConfig("b", tb, 3, ta.addr(t)))
	c := start(t, mockConfig("c", tc, 3, ta.addr(t)))
	for _, g := range []*Gossip{a, b, c} {
		kit.Wait(t, 20*time.Second, 10*time.Millisecond, g.name+" sees a,b,c", seesAlive(g, "a", "b", "c"))
	}

	// Generous bounds: on a loaded machine (CI, the race detector) the
	// gossip rounds that carry the leave run late, and the test is about
	// what is reported, not how fast.
	if err := b.Leave(10 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for _, g := range []*Gossip{a, c} {
		// A fail may precede the leave only if memberlist's dead broadcast
		// overtook the intent; the leave must follow either way.
		ev := waitEvent(t, g, 20*time.Second, "b leaving", func(ev Event) bool {
			if ev.Member.Name == "b" && ev.Type == EventFail {
				t.Logf("%s: b reported failed before its leave intent arrived", g.name)
			}
			return ev.Member.Name == "b" && ev.Type == EventLeave
		})
		if ev.Member.State != StateLeft {
			t.Errorf("%s: leave event state %v", g.name, ev.Member.State)
		}
		if m, _ := memberNamed(g, "b"); m.State != StateLeft {
			t.Errorf("%s: Members shows b %v", g.name, m.State)
		}
	}
	if got := b.LocalMember().State; got != StateLeft {
		t.Errorf("b.LocalMember().State = %v", got)
	}
	if _, ok := a.ExpectReady(3); ok {
		t.Error("ExpectReady(3) still true after b left")
	}

	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := b.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Leave after Shutdown = %v", err)
	}
	// Shutdown closes Events; buffered events may come first.
	timeout := time.After(2 * time.Second)
	for closed := false; !closed; {
		select {
		case _, ok := <-b.Events():
			closed = !ok
		case <-timeout:
			t.Fatal("Events not closed by Shutdown")
		}
	}
}

func TestUpdateMetaReachesPeers(t *testing.T) {
	n := newTestNet(t)
	ta, tb := n.transport("a"), n.transport("b")
	a := start(t, mockConfig("a", ta, 1))
	b := start(t, mockConfig("b", tb, 1, ta.addr(t)))
	kit.Wait(t, 20*time.Second, 10*time.Millisecond, "a sees b", seesAlive(a, "a", "b"))

	m := testMeta("b", 1)
	m.Version = "v2.0.0"
	if err := b.UpdateMeta(m, time.Second); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, a, 5*time.Second, "update of b", func(ev Event) bool {
		return ev.Type == EventUpdate && ev.Member.Name == "b"
	})
	if ev.Member.Meta != m {
		t.Errorf("update carries %+v", ev.Member.Meta)
	}
	if got, _ := memberNamed(a, "b"); got.Meta.Version != "v2.0.0" {
		t.Errorf("a's Members shows b version %q", got.Meta.Version)
	}

	m.Version = strings.Repeat("x", 600)
	if err := b.UpdateMeta(m, time.Second); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("UpdateMeta with 600-byte version = %v", err)
	}
	if got := b.LocalMember().Meta.Version; got != "v2.0.0" {
		t.Errorf("rejected update changed local meta to %q", got)
	}
}

// ---- test over real UDP/TCP on loopback ------------------------------------

func TestLoopbackRetryJoinBootstrapAndFailure(t *testing.T) {
	cfg := func(name, bind string, join ...string) Config {
		return Config{
			Name:     name,
			BindAddr: bind,
			Join:     join,
			Meta:     testMeta(name, 3),
			Logger:   quiet(),
			// Generous enough that a busy -race run does not declare a
			// live node dead, short enough to detect a real stop in ~1s.
			ProbeInterval:     200 * time.Millisecond,
			ProbeTimeout:      100 * time.Millisecond,
			GossipInterval:    50 * time.Millisecond,
			RetryJoinInterval: 50 * time.Millisecond,
			RetryJoinMax:      200 * time.Millisecond,
		}
	}
	addrA := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))

	// c starts first; its only peer a is not up yet.
	c := start(t, cfg("c", "127.0.0.1:0", addrA))
	kit.Wait(t, 20*time.Second, 10*time.Millisecond, "c to retry joining", func() (bool, error) { return c.joinAttempts.Load() >= 3, nil })
	if c.Joined() || len(c.Members()) != 1 {
		t.Fatalf("c joined %v with members %v before a exists", c.Joined(), c.Members())
	}

	a := start(t, cfg("a", addrA))
	kit.Wait(t, 20*time.Second, 10*time.Millisecond, "c's retry to reach a", func() (bool, error) { return c.Joined(), nil })
	select {
	case <-c.joinDone:
	case <-time.After(5 * time.Second):
		t.Fatal("c's join loop did not stop after reaching a")
	}

	// b knows only c, and port 0 lets memberlist pick one port for TCP and UDP.
	b := start(t, cfg("b", "127.0.0.1:0", c.LocalMember().Addr))
	nodes := []*Gossip{a, b, c}
	for _, g := range nodes {
		kit.Wait(t, 10*time.Second, 10*time.Millisecond, g.name+" sees a,b,c", seesAlive(g, "a", "b", "c"))
	}
	var first []Member
	for _, g := range nodes {
		for _, m := range g.Members() {
			if m.Meta != testMeta(m.Name, 3) {
				t.Errorf("%s sees %s meta %+v", g.name, m.Name, m.Meta)
			}
		}
		peers, ok := g.ExpectReady(3)
		if !ok {
			t.Fatalf("%s: ExpectReady(3) not ready", g.name)
		}
		if first == nil {
			first = peers
		} else if !slices.Equal(peers, first) {
			t.Errorf("%s: peers %v, others %v", g.name, peerNames(peers), peerNames(first))
		}
	}
	if a.LocalMember().Addr != addrA {
		t.Errorf("a advertises %q, bound %q", a.LocalMember().Addr, addrA)
	}

	// b stops without leaving: the others must find out by probing.
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Gossip{a, c} {
		ev := waitEvent(t, g, 10*time.Second, "b failing", func(ev Event) bool {
			if ev.Member.Name == "b" && ev.Type == EventLeave {
				t.Errorf("%s: b reported as left, want failed", g.name)
			}
			return ev.Member.Name == "b" && ev.Type == EventFail
		})
		if ev.Member.State != StateDead {
			t.Errorf("%s: fail event state %v", g.name, ev.Member.State)
		}
		if m, _ := memberNamed(g, "b"); m.State != StateDead {
			t.Errorf("%s: Members shows b %v", g.name, m.State)
		}
	}
}

// ---- unit tests -------------------------------------------------------------

func TestStartRejectsBadConfig(t *testing.T) {
	base := func() Config {
		return Config{Name: "n", BindAddr: "127.0.0.1:0", Meta: testMeta("n", 1), Logger: quiet()}
	}
	cases := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "Name is required"},
		{"meta over 512 bytes", func(c *Config) { c.Meta.Version = strings.Repeat("v", 500) }, "at most 512"},
		{"key of 10 bytes", func(c *Config) { c.SecretKey = []byte("0123456789") }, "SecretKey"},
		{"bind without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, "BindAddr"},
		{"advertise hostname", func(c *Config) { c.AdvertiseAddr = "node1.example:7946" }, "must be an IP"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.modify(&cfg)
			g, err := Start(cfg)
			if err == nil {
				g.Shutdown()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	cfg := base()
	cfg.Meta.Version = strings.Repeat("v", 500)
	if _, err := Start(cfg); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("oversized meta: %v is not ErrMetaTooLarge", err)
	}
}

func TestMetaEncoding(t *testing.T) {
	m := Meta{
		RaftAddr:        "[2001:db8::1234:5678]:7000",
		HTTPAddr:        "[2001:db8::1234:5678]:8080",
		SMTPAddr:        "[2001:db8::1234:5678]:25",
		Version:         "v1.23.4-rc.1+g0123456789ab",
		BootstrapExpect: 5,
	}
	b, err := encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	// Realistic metadata should leave most of memberlist's 512 bytes free.
	if len(b) > 160 {
		t.Errorf("encoded meta is %d bytes", len(b))
	}
	got, err := decodeMeta(b)
	if err != nil || got != m {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// An empty map, and a map with a key from some later version.
	for _, ok := range [][]byte{{metaFormatV1, 0x80}, {metaFormatV1, 0x81, 0xa1, 'z', 0x01}} {
		if got, err := decodeMeta(ok); err != nil || got != (Meta{}) {
			t.Errorf("decodeMeta(%x) = %+v, %v", ok, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {metaFormatV1}, {9, 0x80}, {metaFormatV1, 0xc1}} {
		if _, err := decodeMeta(bad); err == nil {
			t.Errorf("decodeMeta(%x) accepted", bad)
		}
	}
}

func TestEventsDropOldestWhenFull(t *testing.T) {
	g := newGossip("x", quiet(), 2)
	for i := range 5 {
		g.emitLocked(Event{Type: EventJoin, Member: Member{Name: fmt.Sprint(i)}})
	}
	var got []string
	for range 2 {
		got = append(got, (<-g.events).Member.Name)
	}
	if !slices.Equal(got, []string{"3", "4"}) || g.dropped != 3 {
		t.Errorf("kept %v, dropped %d", got, g.dropped)
	}
}

func TestMemberlistLogLevels(t *testing.T) {
	rec := newRecorder()
	w := memberlistLog{slog.New(rec)}
	lines := []struct {
		in    string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Suspect b has failed, no acks received\n", slog.LevelDebug, "Suspect b has failed, no acks received"},
		{"[WARN] memberlist: Refuting a suspect message\n", slog.LevelWarn, "Refuting a suspect message"},
		{"[ERR] memberlist: Push/Pull with b failed: EOF\n", slog.LevelWarn, "Push/Pull with b failed: EOF"},
		{"no tag at all", slog.LevelInfo, "no tag at all"},
	}
	for _, l := range lines {
		if n, err := w.Write([]byte(l.in)); err != nil || n != len(l.in) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	got := rec.find(func(record) bool { return true })
	if len(got) != len(lines) {
		t.Fatalf("%d records", len(got))
	}
	for i, l := range lines {
		if got[i].level != l.level || got[i].msg != l.msg {
			t.Errorf("%q -> %v %q, want %v %q", l.in, got[i].level, got[i].msg, l.level, l.msg)
		}
	}
	if bytes.ContainsAny([]byte(got[0].msg), "\n") {
		t.Error("trailing newline kept")
	}
}

// The member table is driven here by calling the delegate's handlers directly,
// in orders that real networks produce only rarely.

func mlNode(name string, expect int) *memberlist.Node {
	meta, err := encodeMeta(testMeta(name, expect))
	if err != nil {
		panic(err)
	}
	return &memberlist.Node{Name: name, Addr: net.IPv4(127, 0, 0, 1), Port: 7946, Meta: meta}
}

func nextEvent(t *testing.T, g *Gossip) Event {
	t.Helper()
	select {
	case ev := <-g.events:
		return ev
	default:
		t.Fatal("no event queued")
		return Event{}
	}
}

func TestLeaveIntentDecidesLeftOrFailed(t *testing.T) {
	g := newGossip("a", quiet(), 16)
	d := delegate{g}
	intent := func(name string) { d.NotifyMsg(append([]byte{msgLeaveIntent}, name...)) }
	d.NotifyJoin(mlNode("a", 1))
	d.NotifyJoin(mlNode("b", 1))
	d.NotifyJoin(mlNode("c", 1))
	for range 3 {
		nextEvent(t, g)
	}

	// Intent first, as a graceful Leave sends it: left.
	intent("b")
	d.NotifyLeave(mlNode("b", 1))
	if ev := nextEvent(t, g); ev.Type != EventLeave || ev.Member.State != StateLeft {
		t.Errorf("b: %v %v", ev.Type, ev.Member.State)
	}

	// No intent: failed. A late intent corrects it.
	d.NotifyLeave(mlNode("c", 1))
	if ev := nextEvent(t, g); ev.Type != EventFail || ev.Member.State != StateDead {
		t.Errorf("c: %v %v", ev.Type, ev.Member.State)
	}
	intent("c")
	if ev := nextEvent(t, g); ev.Type != EventLeave || ev.Member.State != StateLeft {
		t.Errorf("c after late intent: %v %v", ev.Type, ev.Member.State)
	}

	// A rejoin clears an intent, so a later crash is a failure.
	d.NotifyJoin(mlNode("b", 1))
	if ev := nextEvent(t, g); ev.Type != EventJoin || ev.Member.State != StateAlive {
		t.Errorf("b rejoin: %v %v", ev.Type, ev.Member.State)
	}
	intent("b")
	d.NotifyJoin(mlNode("b", 1))
	nextEvent(t, g)
	d.NotifyLeave(mlNode("b", 1))
	if ev := nextEvent(t, g); ev.Type != EventFail {
		t.Errorf("b crash after rejoin: %v", ev.Type)
	}

	// Intents naming unknown members or ourselves change nothing.
	intent("zz")
	intent("a")
	select {
	case ev := <-g.events:
		t.Errorf("unexpected %v", ev)
	default:
	}
	if m, _ := memberNamed(g, "a"); m.State != StateAlive {
		t.Errorf("a is %v", m.State)
	}
}

func TestExpectReadyPicksFirstNByName(t *testing.T) {
	rec := newRecorder()
	g := newGossip("c", slog.New(rec), 16)
	d := delegate{g}
	for _, name := range []string{"d", "c", "b"} {
		d.NotifyJoin(mlNode(name, 3))
	}
	peers, ok := g.ExpectReady(3)
	if !ok || !slices.Equal(peerNames(peers), []string{"b", "c", "d"}) {
		t.Fatalf("ExpectReady(3) = %v, %v", peerNames(peers), ok)
	}

	// A fourth candidate: still the first three by name, with a warning.
	d.NotifyJoin(mlNode("a", 3))
	for range 3 {
		peers, ok = g.ExpectReady(3)
	}
	if !ok || !slices.Equal(peerNames(peers), []string{"a", "b", "c"}) {
		t.Fatalf("with a fourth: %v, %v", peerNames(peers), ok)
	}
	if n := len(rec.find(func(r record) bool { return strings.Contains(r.msg, "more nodes than bootstrap-expect") })); n != 1 {
		t.Errorf("%d warnings about extra nodes, want 1", n)
	}

	// Dead members do not count; a member without a Raft address blocks.
	d.NotifyLeave(mlNode("a", 3))
	d.NotifyLeave(mlNode("b", 3))
	if _, ok := g.ExpectReady(3); ok {
		t.Error("ready with two alive")
	}
	noRaft := mlNode("e", 3)
	m := testMeta("e", 3)
	m.RaftAddr = ""
	noRaft.Meta, _ = encodeMeta(m)
	d.NotifyJoin(noRaft)
	if _, ok := g.ExpectReady(3); ok {
		t.Error("ready although e advertises no Raft address")
	}
	// Metadata another program wrote keeps the member visible but not a candidate.
	d.NotifyJoin(&memberlist.Node{Name: "f", Addr: net.IPv4(127, 0, 0, 2), Port: 1, Meta: []byte("junk")})
	if m, ok := memberNamed(g, "f"); !ok || m.Meta != (Meta{}) {
		t.Errorf("f: %+v %v", m, ok)
	}
	if _, ok := g.ExpectReady(0); ok {
		t.Error("ExpectReady(0) true")
	}
}

func TestMetaCommandTypes(t *testing.T) {
	types := make([]byte, 32)
	for i := range types {
		types[i] = byte(i * 37) // 0x00, 0xff and everything between
	}
	types[31] = 0xff
	m := Meta{
		RaftAddr:        "[2001:db8::1234:5678]:7000",
		HTTPAddr:        "[2001:db8::1234:5678]:8080",
		SMTPAddr:        "[2001:db8::1234:5678]:25",
		Version:         "v1.23.4-rc.1+g0123456789ab",
		BootstrapExpect: 5,
		Formed:          true,
		Types:           string(types),
	}
	b, err := encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	without := m
	without.Types = ""
	bw, err := encodeMeta(without)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("metadata: %d bytes with the command types, %d without; memberlist allows %d", len(b), len(bw), memberlist.MetaMaxSize)
	if len(b)-len(bw) > 37 || len(b) > 200 {
		t.Errorf("command types cost %d bytes, %d in all", len(b)-len(bw), len(b))
	}
	got, err := decodeMeta(b)
	if err != nil || got != m {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// A node of an earlier release sends no types; they decode as empty,
	// which the reader takes as "the baseline only".
	got, err = decodeMeta(bw)
	if err != nil || got != without || got.Types != "" {
		t.Fatalf("without types: %+v, %v", got, err)
	}
	// A node of an earlier release reads a newer node's metadata with its
	// own fields and skips the new key.
	type oldWire struct {
		RaftAddr        string `codec:"r,omitempty"`
		HTTPAddr        string `codec:"h,omitempty"`
		SMTPAddr        string `codec:"s,omitempty"`
		Version         string `codec:"v,omitempty"`
		BootstrapExpect int    `codec:"b,omitempty"`
		Formed          bool   `codec:"f,omitempty"`
	}
	var old oldWire
	if err := codec.NewDecoderBytes(b[1:], &codec.MsgpackHandle{}).Decode(&old); err != nil {
		t.Fatalf("an older node cannot read the metadata: %v", err)
	}
	if old.RaftAddr != m.RaftAddr || old.Version != m.Version || !old.Formed {
		t.Errorf("an older node reads %+v", old)
	}
}
