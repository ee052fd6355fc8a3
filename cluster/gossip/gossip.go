package gossip

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config describes one gossip member.
type Config struct {
	// Name identifies the node in the cluster; the cluster layer uses the
	// same string as the Raft server ID.
	Name string
	// BindAddr is the host:port memberlist listens on, TCP and UDP alike.
	// Port 0 picks a free port. Ignored when Transport is set.
	BindAddr string
	// AdvertiseAddr is the ip:port peers should use, when it differs from
	// BindAddr (a wildcard bind, NAT). Optional.
	AdvertiseAddr string
	// Join lists gossip addresses of peers; see the package doc.
	Join []string
	// Meta is advertised to every peer.
	Meta Meta
	// SecretKey (16, 24 or 32 bytes, AES) encrypts and authenticates all
	// gossip; nodes without it cannot join. Empty means plaintext.
	SecretKey []byte
	// Logger receives this layer's and memberlist's logs. Default slog.Default().
	Logger *slog.Logger
	// Transport replaces the UDP/TCP transport, e.g. with a
	// memberlist.MockNetwork transport in tests.
	Transport memberlist.Transport

	// Failure detection timing; zero keeps memberlist.DefaultLANConfig
	// (probe every 1s with a 500ms timeout, gossip every 200ms), which suits
	// appliances on one LAN. Tests shorten them.
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	GossipInterval time.Duration

	// Background join backoff; zero means 1s growing to 10s.
	RetryJoinInterval time.Duration
	RetryJoinMax      time.Duration
}

// State is a member's health as this node knows it.
type State int

const (
	StateAlive State = iota
	// StateSuspect is never reported with memberlist v0.5.4; see the package doc.
	StateSuspect
	StateDead
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Member is a snapshot of one node.
type Member struct {
	Name  string
	Addr  string // gossip host:port
	Meta  Meta
	State State
}

// EventType says what happened to a member.
type EventType int

// The zero EventType is deliberately invalid, so a zero Event is never
// mistaken for a join.
const (
	EventJoin EventType = iota + 1
	EventLeave
	EventUpdate
	EventFail
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventUpdate:
		return "update"
	case EventFail:
		return "fail"
	}
	return "EventType(" + strconv.Itoa(int(t)) + ")"
}

// Event reports a change to Member, which holds the state after the change.
type Event struct {
	Type   EventType
	Member Member
}

// ErrShutdown is returned by calls made after Shutdown.
var ErrShutdown = errors.New("gossip: shut down")

const (
	// eventBuffer bounds memory when nobody reads Events. Events are hints:
	// a consumer that may have missed some reconciles from Members.
	eventBuffer = 256
	// leaveIntentTTL bounds how long a leave intent can turn a departure
	// into "left": long enough to cover memberlist's dead broadcast, short
	// enough that an old intent cannot excuse a later crash.
	leaveIntentTTL = 30 * time.Second
	// forgetAfter drops dead and left members from Members, so names that
	// never come back do not accumulate.
	forgetAfter = 24 * time.Hour
	// defaultTimeout replaces a non-positive timeout, because memberlist
	// would otherwise wait forever for its broadcast.
	defaultTimeout = 5 * time.Second
	// msgLeaveIntent tags the user message a node sends before it leaves.
	msgLeaveIntent byte = 1
)

// Gossip is one running member.
type Gossip struct {
	name     string
	log      *slog.Logger
	ml       *memberlist.Memberlist
	retryMin time.Duration
	retryMax time.Duration

	metaMu sync.Mutex
	meta   []byte

	// lifeMu keeps memberlist calls from racing with Shutdown: memberlist
	// panics on Leave after Shutdown.
	lifeMu sync.RWMutex
	shut   bool

	// mu guards the member table. memberlist calls the delegate with its
	// own lock held, so nothing under mu may call into memberlist.
	mu      sync.Mutex
	members map[string]*entry
	intents map[string]time.Time
	warned  map[string]string
	leaving bool
	joined  bool
	closed  bool
	events  chan Event
	dropped uint64

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	joinAttempts atomic.Int64
	joinDone     chan struct{}
}

type entry struct {
	member Member
	raw    []byte // metadata as received, to decode only on change
	ip     net.IP
	port   uint16
	since  time.Time // of the last state change
}

// Start creates the local member, listening at once, and begins joining
// cfg.Join in the background.
func Start(cfg Config) (*Gossip, error) {
	if cfg.Name == "" {
		return nil, errors.New("gossip: Config.Name is required")
	}
	meta, err := encodeMeta(cfg.Meta)
	if err != nil {
		return nil, err
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	if cfg.Transport != nil {
		mc.Transport = cfg.Transport
	} else if cfg.BindAddr == "" {
		return nil, errors.New("gossip: Config.BindAddr (host:port) is required without a Transport")
	} else {
		host, port, err := splitHostPort(cfg.BindAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip: BindAddr: %w", err)
		}
		if host == "" {
			host = "0.0.0.0"
		}
		mc.BindAddr, mc.BindPort = host, port
	}
	if cfg.AdvertiseAddr != "" {
		host, port, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip: AdvertiseAddr: %w", err)
		}
		if net.ParseIP(host) == nil {
			return nil, fmt.Errorf("gossip: AdvertiseAddr %q: host must be an IP address", cfg.AdvertiseAddr)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = host, port
	}
	if len(cfg.SecretKey) > 0 {
		kr, err := memberlist.NewKeyring(nil, cfg.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("gossip: SecretKey: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
	}
	if cfg.ProbeTimeout > 0 {
		mc.ProbeTimeout = cfg.ProbeTimeout
	}
	if cfg.GossipInterval > 0 {
		mc.GossipInterval = cfg.GossipInterval
	}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("gossip", cfg.Name)
	mc.Logger = log.New(memberlistLog{logger.With("component", "memberlist")}, "", 0)

	g := newGossip(cfg.Name, logger, eventBuffer)
	g.meta = meta
	if cfg.RetryJoinInterval > 0 {
		g.retryMin = cfg.RetryJoinInterval
	}
	if cfg.RetryJoinMax > 0 {
		g.retryMax = cfg.RetryJoinMax
	}
	g.retryMax = max(g.retryMax, g.retryMin)
	d := delegate{g}
	mc.Delegate = d
	mc.Events = d

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: start memberlist: %w", err)
	}
	g.ml = ml

	join := slices.Clone(cfg.Join)
	if len(join) == 0 {
		close(g.joinDone)
	} else {
		g.wg.Add(1)
		go g.retryJoin(join)
	}
	return g, nil
}

// newGossip builds everything but the memberlist, so the member table can
// be tested on its own.
func newGossip(name string, logger *slog.Logger, buffer int) *Gossip {
	return &Gossip{
		name:     name,
		log:      logger,
		retryMin: time.Second,
		retryMax: 10 * time.Second,
		members:  make(map[string]*entry),
		intents:  make(map[string]time.Time),
		warned:   make(map[string]string),
		events:   make(chan Event, buffer),
		stop:     make(chan struct{}),
		joinDone: make(chan struct{}),
	}
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, int(port), nil
}

// retryJoin keeps trying every configured address until each has answered
// once (see the package doc for why not just the first).
func (g *Gossip) retryJoin(addrs []string) {
	defer g.wg.Done()
	defer close(g.joinDone)

	wait := g.retryMin
	pending := addrs
	for round := 1; ; round++ {
		var failed []string
		var lastErr error
		for _, addr := range pending {
			n, err := g.joinOnce(addr)
			if errors.Is(err, ErrShutdown) {
				return
			}
			if n > 0 {
				g.log.Debug("reached join address", "addr", addr)
				continue
			}
			failed = append(failed, addr)
			lastErr = err
		}
		pending = failed
		if len(pending) == 0 {
			g.log.Info("joined cluster", "members", g.aliveCount())
			return
		}

		// Waiting for peers is normal at startup, so say it once; keep
		// repeating it, rarely, in case an address is simply wrong.
		level := slog.LevelDebug
		switch {
		case round == 1:
			level = slog.LevelInfo
		case round%30 == 0:
			level = slog.LevelWarn
		}
		g.log.Log(context.Background(), level, "join addresses not reachable yet, retrying",
			"pending", strings.Join(pending, ","), "retry_in", wait, "round", round, "err", oneLine(lastErr))

		t := time.NewTimer(wait)
		select {
		case <-g.stop:
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, g.retryMax)
	}
}

// oneLine flattens memberlist's multi-line join errors ("1 error occurred:\n\t*
// ...") so a log line stays one line.
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(strings.TrimLeft(l, "\t* "))
		if l != "" && !strings.HasSuffix(l, "occurred:") {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// joinOnce returns ErrShutdown once the node is leaving or stopping.
func (g *Gossip) joinOnce(addr string) (int, error) {
	g.lifeMu.RLock()
	defer g.lifeMu.RUnlock()
	select {
	case <-g.stop:
		return 0, ErrShutdown
	default:
	}
	if g.shut {
		return 0, ErrShutdown
	}
	g.joinAttempts.Add(1)
	return g.ml.Join([]string{addr})
}

func (g *Gossip) stopJoining() {
	g.stopOnce.Do(func() { close(g.stop) })
}

// Joined reports whether this node has seen another member, i.e. it is part
// of a cluster of more than itself (or was).
func (g *Gossip) Joined() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.joined
}

// Events delivers membership changes, the local node's own join first. The
// channel never blocks memberlist: when it is full the oldest event is
// dropped (and a warning logged). It is closed by Shutdown.
func (g *Gossip) Events() <-chan Event {
	return g.events
}

// Members returns every known member, sorted by name, including recently
// dead and left ones.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.forgetLocked(time.Now())
	out := make([]Member, 0, len(g.members))
	for _, e := range g.members {
		out = append(out, e.member)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// LocalMember returns this node as its peers see it.
func (g *Gossip) LocalMember() Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e := g.members[g.name]; e != nil {
		return e.member
	}
	return Member{Name: g.name}
}

// ExpectReady reports whether the cluster can be bootstrapped with n voters
// and which members they are; see the package doc for the rule and why every
// node may act on it concurrently. A caller must bootstrap only if its own
// name is in peers.
func (g *Gossip) ExpectReady(n int) (peers []Member, ok bool) {
	if n < 1 {
		return nil, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()

	var alive []Member
	for _, e := range g.members {
		if e.member.State == StateAlive {
			alive = append(alive, e.member)
		}
	}
	slices.SortFunc(alive, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })

	for _, m := range alive {
		if m.Meta.Formed {
			// A cluster exists already: forming another beside it would
			// split the nodes in two. The leader adds newcomers instead.
			return nil, false
		}
		if m.Meta.BootstrapExpect != n {
			g.warnOnceLocked("expect/"+m.Name, strconv.Itoa(m.Meta.BootstrapExpect),
				"bootstrap-expect mismatch, not forming the cluster",
				"member", m.Name, "member_expects", m.Meta.BootstrapExpect, "expected", n)
			return nil, false
		}
		if m.Meta.RaftAddr == "" {
			g.warnOnceLocked("raftaddr/"+m.Name, "", "member advertises no Raft address, not forming the cluster",
				"member", m.Name)
			return nil, false
		}
	}
	if len(alive) < n {
		return nil, false
	}
	if len(alive) > n {
		names := make([]string, len(alive))
		for i, m := range alive {
			names[i] = m.Name
		}
		all := strings.Join(names, ",")
		g.warnOnceLocked("expect/extra", all,
			"more nodes than bootstrap-expect; using the first by name, but nodes that saw a different set may disagree",
			"expected", n, "members", all)
	}
	return slices.Clone(alive[:n]), true
}

// warnOnceLocked logs msg unless the same key last logged the same value,
// because ExpectReady is polled and would otherwise repeat itself.
func (g *Gossip) warnOnceLocked(key, value, msg string, args ...any) {
	if prev, ok := g.warned[key]; ok && prev == value {
		return
	}
	g.warned[key] = value
	g.log.Warn(msg, args...)
}

// UpdateMeta replaces the advertised metadata and waits up to timeout
// (non-positive: 5s) for the change to be broadcast.
func (g *Gossip) UpdateMeta(m Meta, timeout time.Duration) error {
	b, err := encodeMeta(m)
	if err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	g.lifeMu.RLock()
	defer g.lifeMu.RUnlock()
	if g.shut {
		return ErrShutdown
	}
	g.metaMu.Lock()
	g.meta = b
	g.metaMu.Unlock()
	if err := g.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("gossip: update metadata: %w", err)
	}
	return nil
}

// Leave tells the cluster this node is going away on purpose, so peers report
// EventLeave instead of EventFail, and stops background joining. It waits at
// most timeout (non-positive: 5s). The node keeps gossiping until Shutdown.
func (g *Gossip) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	deadline := time.Now().Add(timeout)

	g.lifeMu.RLock()
	defer g.lifeMu.RUnlock()
	if g.shut {
		return ErrShutdown
	}
	g.stopJoining()

	g.mu.Lock()
	g.leaving = true
	var peers []memberlist.Node
	for name, e := range g.members {
		if name != g.name && e.member.State == StateAlive {
			peers = append(peers, memberlist.Node{Name: name, Addr: e.ip, Port: e.port})
		}
	}
	g.mu.Unlock()

	// Half the budget for the intents, the rest for memberlist's broadcast.
	g.sendLeaveIntents(peers, timeout/2)

	remaining := max(time.Until(deadline), time.Millisecond)
	if err := g.ml.Leave(remaining); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	g.log.Info("left cluster")
	return nil
}

func (g *Gossip) sendLeaveIntents(peers []memberlist.Node, wait time.Duration) {
	if len(peers) == 0 {
		return
	}
	msg := append([]byte{msgLeaveIntent}, g.name...)
	done := make(chan struct{}, len(peers))
	for _, p := range peers {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if err := g.ml.SendReliable(&p, msg); err != nil {
				g.log.Debug("leave intent not delivered; the peer will report a failure", "peer", p.Name, "err", err)
			}
			done <- struct{}{}
		}()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for range peers {
		select {
		case <-done:
		case <-t.C:
			return
		}
	}
}

// Shutdown stops the node without telling anyone (call Leave first for a
// graceful exit); peers will report it failed. Safe to call more than once.
func (g *Gossip) Shutdown() error {
	g.lifeMu.Lock()
	if g.shut {
		g.lifeMu.Unlock()
		return nil
	}
	g.shut = true
	g.lifeMu.Unlock()

	g.stopJoining()
	err := g.ml.Shutdown()
	g.wg.Wait()

	g.mu.Lock()
	g.closed = true
	close(g.events)
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}

func (g *Gossip) aliveCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, e := range g.members {
		if e.member.State == StateAlive {
			n++
		}
	}
	return n
}

func (g *Gossip) forgetLocked(now time.Time) {
	for name, e := range g.members {
		if e.member.State != StateAlive && now.Sub(e.since) > forgetAfter {
			delete(g.members, name)
		}
	}
	for name, t := range g.intents {
		if now.Sub(t) > leaveIntentTTL {
			delete(g.intents, name)
		}
	}
}

// emitLocked queues ev, dropping the oldest queued event when full, so that
// memberlist, which calls the delegate with its node lock held, never waits
// for a slow consumer.
func (g *Gossip) emitLocked(ev Event) {
	if g.closed {
		return
	}
	for {
		select {
		case g.events <- ev:
			return
		default:
		}
		select {
		case <-g.events:
			g.dropped++
			if g.dropped == 1 || g.dropped%100 == 0 {
				g.log.Warn("membership events not consumed, dropping the oldest", "dropped", g.dropped)
			}
		default:
		}
	}
}

// entryLocked returns the table entry for n, refreshing its address and
// metadata.
func (g *Gossip) entryLocked(n *memberlist.Node) *entry {
	e := g.members[n.Name]
	isNew := e == nil
	if isNew {
		e = &entry{member: Member{Name: n.Name}}
		g.members[n.Name] = e
	}
	g.refreshMetaLocked(e, n.Meta, isNew)
	e.ip = slices.Clone(n.Addr)
	e.port = n.Port
	e.member.Addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	return e
}

func (g *Gossip) refreshMetaLocked(e *entry, raw []byte, force bool) {
	if !force && slices.Equal(e.raw, raw) {
		return
	}
	e.raw = slices.Clone(raw)
	m, err := decodeMeta(raw)
	if err != nil {
		// A node of another version or another program; keep it visible
		// with empty metadata, which also keeps it from counting towards
		// bootstrap.
		g.log.Warn("cannot read member metadata", "member", e.member.Name, "err", err)
	}
	e.member.Meta = m
}

func (g *Gossip) nodeAlive(n *memberlist.Node, join bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.entryLocked(n)
	if e.member.State != StateAlive || join {
		e.since = time.Now()
	}
	e.member.State = StateAlive
	typ := EventUpdate
	if join {
		typ = EventJoin
		delete(g.intents, n.Name)
		if n.Name != g.name {
			g.joined = true
			g.log.Info("member joined", "member", n.Name, "addr", e.member.Addr, "version", e.member.Meta.Version)
		}
	} else {
		g.log.Log(context.Background(), g.selfLevel(n.Name), "member updated", "member", n.Name, "version", e.member.Meta.Version)
	}
	g.emitLocked(Event{Type: typ, Member: e.member})
}

func (g *Gossip) nodeGone(n *memberlist.Node) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	e := g.entryLocked(n)
	left := n.Name == g.name && g.leaving
	if t, ok := g.intents[n.Name]; ok && now.Sub(t) <= leaveIntentTTL {
		left = true
	}
	delete(g.intents, n.Name)
	e.since = now
	if left {
		e.member.State = StateLeft
		g.log.Log(context.Background(), g.selfLevel(n.Name), "member left", "member", n.Name)
		g.emitLocked(Event{Type: EventLeave, Member: e.member})
		return
	}
	e.member.State = StateDead
	g.log.Info("member failed", "member", n.Name)
	g.emitLocked(Event{Type: EventFail, Member: e.member})
}

// selfLevel keeps news about the local node, which its own caller already
// knows, out of the info log.
func (g *Gossip) selfLevel(name string) slog.Level {
	if name == g.name {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

func (g *Gossip) leaveIntent(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.members[name]
	if e == nil || name == g.name {
		return
	}
	now := time.Now()
	switch e.member.State {
	case StateAlive:
		g.intents[name] = now
	case StateDead:
		// The intent lost the race with memberlist's dead broadcast.
		if now.Sub(e.since) <= leaveIntentTTL {
			e.member.State = StateLeft
			e.since = now
			g.log.Info("member left", "member", name)
			g.emitLocked(Event{Type: EventLeave, Member: e.member})
		}
	}
}

// delegate keeps memberlist's callback methods off Gossip's public API.
type delegate struct{ g *Gossip }

func (d delegate) NodeMeta(limit int) []byte {
	d.g.metaMu.Lock()
	defer d.g.metaMu.Unlock()
	return slices.Clone(d.g.meta)
}

func (d delegate) NotifyMsg(b []byte) {
	if len(b) > 1 && b[0] == msgLeaveIntent {
		d.g.leaveIntent(string(b[1:]))
	}
}

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d delegate) LocalState(join bool) []byte                { return nil }
func (d delegate) MergeRemoteState(buf []byte, join bool)     {}
func (d delegate) NotifyJoin(n *memberlist.Node)              { d.g.nodeAlive(n, true) }
func (d delegate) NotifyUpdate(n *memberlist.Node)            { d.g.nodeAlive(n, false) }
func (d delegate) NotifyLeave(n *memberlist.Node)             { d.g.nodeGone(n) }
