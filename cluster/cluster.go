// Package cluster runs the Raft group of Lifeline nodes: the transport, the
// raft-boltdb log and stable stores, snapshots, bootstrap, and the write
// path that callers use. It knows nothing about mail; the state machine is
// handed in.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"lifeline/cluster/blob"
	"lifeline/fsm"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// StateMachine is the FSM plus the one fact the cluster needs to start
// safely: how far the durable state already got.
type StateMachine interface {
	raft.BatchingFSM
	AppliedIndex() uint64
	// Failed is not nil once the state store stopped applying; a leader
	// then proposes nothing (applyLocal).
	Failed() error
}

// Config describes one node of the group.
type Config struct {
	ID       string
	DataDir  string
	RaftAddr string // listen address for Raft and cluster RPC
	// Advertise is the address peers dial; defaults to RaftAddr.
	Advertise string
	// BootstrapExpect 1 makes a node without state form a cluster of its
	// own at start; any other value leaves forming to Bootstrap.
	BootstrapExpect int
	FSM             StateMachine
	// Blobs is this node's body store, served to and filled by peers.
	Blobs *blob.Store
	// MaxBlobSize bounds a body a peer may push.
	MaxBlobSize int64
	// Security, when set, puts every connection between nodes under
	// mutual TLS with the cluster's certificates.
	Security *Security
	Logger   *slog.Logger
	// LogOutput receives hashicorp/raft's own log lines.
	LogOutput io.Writer
	// Now is the node's clock, which peers read to estimate skew.
	Now func() time.Time
	// AppHandler answers application requests (op >= OpAppFirst) from
	// peers; see Call.
	AppHandler func(op byte, req []byte) ([]byte, error)
	// Advertised returns, in a new map keyed by server ID, the command
	// types each other node advertises (gossip metadata); a node left out
	// counts as knowing no gated type. It is asked only before proposing
	// a gated type (fsm.Gated); see CheckUpgraded.
	Advertised func() map[string]fsm.TypeSet

	// TrailingLogs and SnapshotThreshold override Raft's log compaction
	// (tests use small values to force snapshot installs).
	TrailingLogs      uint64
	SnapshotThreshold uint64

	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// ApplyTimeout bounds a write from enqueue to FSM response.
	ApplyTimeout time.Duration

	// wrapLogs lets tests put a faulty log store in front of the real one.
	wrapLogs func(raft.LogStore) raft.LogStore
}

// Errors a writer can see. All of them mean the outcome is "not committed,
// or unknown": SMTP answers 451 and the sender retries.
var (
	ErrNoLeader = errors.New("cluster: no leader")
	ErrTimeout  = errors.New("cluster: write timed out")
	ErrUnknown  = errors.New("cluster: leadership lost, outcome unknown")
)

// Cluster is a running Raft node.
type Cluster struct {
	cfg       Config
	logger    *slog.Logger
	raft      *raft.Raft
	mux       *mux
	transport *raft.NetworkTransport
	logs      *raftboltdb.BoltStore
	snaps     *raft.FileSnapshotStore
	pool      *peerPool
	// known is what this build can apply (fsm.KnownTypes), worked out
	// once.
	known fsm.TypeSet
}

// Start opens the stores, restores the state machine from the latest
// snapshot if its own store is behind, and starts Raft.
func Start(cfg Config) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = io.Discard
	}
	if cfg.Advertise == "" {
		adv, err := AdvertiseAddr(cfg.RaftAddr)
		if err != nil {
			return nil, err
		}
		cfg.Advertise = adv
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.MaxBlobSize == 0 {
		cfg.MaxBlobSize = 64 << 20
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, logger: cfg.Logger, known: fsm.KnownTypes()}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Output: cfg.LogOutput, Level: hclog.Info, JSONFormat: true})

	// NoFreelistSync: without it every commit also rewrites the free page
	// list, which in a log that is appended and truncated all day grows
	// large; it is rebuilt by a scan when the file is opened instead.
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: &bolt.Options{
		Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
	}})
	if err != nil {
		return nil, fmt.Errorf("cluster: raft log store: %w", err)
	}
	c.logs = logs
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	c.snaps = snaps
	if err := c.catchUpFromSnapshot(); err != nil {
		logs.Close()
		return nil, err
	}

	adv, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("cluster: advertise address: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("cluster: listen %s: %w", cfg.RaftAddr, err)
	}
	if adv.Port == 0 {
		adv.Port = ln.Addr().(*net.TCPAddr).Port
	}
	if cfg.Security != nil {
		ln = tls.NewListener(ln, cfg.Security.Server)
	}
	c.mux = newMux(ln, c.serveRPC)
	c.pool = &peerPool{idle: map[string][]net.Conn{}, dial: c.dialPeer}
	layer := &raftLayer{m: c.mux, advertise: adv, dial: func(addr string, timeout time.Duration) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return c.dialPeer(ctx, addr)
	}}
	c.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 5, Timeout: 10 * time.Second, Logger: hlog,
		// No pipelined replication. hashicorp/raft v1.7 can wedge a
		// follower's replication when the follower answers a pipelined
		// AppendEntries with a failure (its log store refused a write: a
		// full disk): the decoder stops, the sender blocks, and the leader
		// keeps heartbeating a follower it never sends another entry to
		// (hashicorp/raft#612; the fault campaign met it as a follower
		// that never caught up after its disk was freed). One request at a
		// time of up to MaxAppendEntries entries recovers from any failure,
		// and with batching costs nothing measurable (make bench).
		MaxRPCsInFlight: 1,
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	// The store keeps its own applied index, so a restart replays only what
	// it has not applied instead of rebuilding from a snapshot (docs/design.md §3.4).
	rc.NoSnapshotRestoreOnStart = true
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.TrailingLogs = 2048
	rc.SnapshotThreshold = 8192
	// Raft looks at the threshold only this often (and up to twice as
	// long); at a busy MX's rate a minute lets tens of thousands of
	// entries pile up in raft.db, whose file never shrinks and whose
	// pages count in the node's memory once read.
	rc.SnapshotInterval = 10 * time.Second
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
		rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	var logStore raft.LogStore = logs
	if cfg.wrapLogs != nil {
		logStore = cfg.wrapLogs(logs)
	}
	r, err := raft.NewRaft(rc, cfg.FSM, logStore, logs, snaps, c.transport)
	if err != nil {
		c.transport.Close()
		logs.Close()
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	c.raft = r
	if cfg.BootstrapExpect == 1 {
		if err := c.bootstrapSelf(); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	return c, nil
}

// dialPeer opens a connection to another node, under TLS when the cluster
// has a key.
func (c *Cluster) dialPeer(ctx context.Context, addr string) (net.Conn, error) {
	// Peers sit on one LAN: a connection that takes seconds is a peer that
	// is gone, and a write waiting on it should fail while the client still
	// waits for its answer.
	d := net.Dialer{Timeout: 3 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || c.cfg.Security == nil {
		return conn, err
	}
	tc := tls.Client(conn, c.cfg.Security.Client)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("cluster: TLS with %s: %w", addr, err)
	}
	return tc, nil
}

// catchUpFromSnapshot covers a state store that is behind the newest
// snapshot (lost or replaced file): with NoSnapshotRestoreOnStart, Raft
// would otherwise replay only the entries after that snapshot.
func (c *Cluster) catchUpFromSnapshot() error {
	list, err := c.snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	latest := list[0]
	if c.cfg.FSM.AppliedIndex() >= latest.Index {
		return nil
	}
	c.logger.Info("state store behind snapshot, restoring", "applied", c.cfg.FSM.AppliedIndex(), "snapshot", latest.Index)
	_, rc, err := c.snaps.Open(latest.ID)
	if err != nil {
		return fmt.Errorf("cluster: open snapshot: %w", err)
	}
	return c.cfg.FSM.Restore(rc)
}

func (c *Cluster) bootstrapSelf() error {
	has, err := raft.HasExistingState(c.logs, c.logs, c.snaps)
	if err != nil || has {
		return err
	}
	f := c.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
		ID: raft.ServerID(c.cfg.ID), Address: c.transport.LocalAddr(), Suffrage: raft.Voter,
	}}})
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	return nil
}

// Apply commits one encoded command from any node: the leader applies it,
// a follower forwards it to the leader. An error means the command may or
// may not be committed; without a leader it fails at once.
//
// A command of a type that some server may not know is refused with
// *UpgradeRequiredError before anything is proposed; see CheckUpgraded.
func (c *Cluster) Apply(ctx context.Context, cmd []byte) (any, error) {
	if err := c.checkUpgraded(cmd); err != nil {
		return nil, err
	}
	if c.raft.State() == raft.Leader {
		return c.applyLocal(ctx, cmd)
	}
	addr, _ := c.raft.LeaderWithID()
	if addr == "" {
		return nil, ErrNoLeader
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.ApplyTimeout)
		defer cancel()
	}
	err := c.pool.call(ctx, string(addr), opApply, cmd, nil, nil)
	if err != nil {
		var ve *fsm.ValidationError
		var ue *UpgradeRequiredError
		if !errors.As(err, &ve) && !errors.As(err, &ue) && !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrTimeout) {
			// A broken connection after the request left: the leader may
			// have committed it.
			err = fmt.Errorf("%w: %v", ErrUnknown, err)
		}
	}
	return nil, err
}

func (c *Cluster) applyLocal(ctx context.Context, cmd []byte) (any, error) {
	if c.raft.State() != raft.Leader {
		return nil, ErrNoLeader
	}
	if err := c.cfg.FSM.Failed(); err != nil {
		// The entry would commit on the other nodes while this one
		// answered with its own store's error: the sender would retry a
		// message that is delivered all the same. Refusing before
		// proposing commits nothing; the node hands leadership on.
		return nil, fmt.Errorf("%w: %v", ErrNoLeader, err)
	}
	timeout := c.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, ErrTimeout
		}
	}
	f := c.raft.Apply(cmd, timeout)
	// raft's timeout covers only enqueueing (docs/design.md §5); the context
	// bounds the wait for the commit as well.
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, mapRaftErr(err)
		}
	case <-ctx.Done():
		return nil, ErrTimeout
	}
	resp := f.Response()
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

func mapRaftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return ErrNoLeader
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return ErrUnknown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrTimeout
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrNoLeader
	}
	return err
}

// KnownTypes is the set of command types this node's build can apply,
// for its gossip metadata.
func (c *Cluster) KnownTypes() fsm.TypeSet { return c.known }

// HasLeader reports whether this node knows a leader right now.
func (c *Cluster) HasLeader() bool {
	addr, _ := c.raft.LeaderWithID()
	return addr != ""
}

// IsLeader reports whether this node leads the group now.
func (c *Cluster) IsLeader() bool { return c.raft.State() == raft.Leader }

// LeaderCh delivers true when this node becomes leader and false when it
// stops being leader.
func (c *Cluster) LeaderCh() <-chan bool { return c.raft.LeaderCh() }

// Barrier waits until every entry committed before it is applied here.
func (c *Cluster) Barrier(timeout time.Duration) error {
	return c.raft.Barrier(timeout).Error()
}

// Snapshot forces a snapshot now.
func (c *Cluster) Snapshot() error { return c.raft.Snapshot().Error() }

// Shutdown stops Raft and closes the stores.
func (c *Cluster) Shutdown() error {
	var err error
	if c.raft != nil {
		err = c.raft.Shutdown().Error()
	}
	if c.transport != nil {
		c.transport.Close()
	}
	if c.pool != nil {
		c.pool.closeAll()
	}
	if c.logs != nil {
		c.logs.Close()
	}
	return err
}
