package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"lifeline/cluster"
	"lifeline/cluster/blob"
	"lifeline/cluster/gossip"
	"lifeline/fsm"
	"lifeline/node/metrics"
	"lifeline/node/msglog"
	"lifeline/smtp"
)

// Node is one running appliance node.
type Node struct {
	cfg    Config
	logger *slog.Logger

	store   *fsm.Store
	fsm     *fsm.FSM
	blobs   *blob.Store
	cluster *cluster.Cluster
	smtp    *smtp.Server
	http    *http.Server

	smtpLn net.Listener
	httpLn net.Listener

	// leaderCh tells this node when it gains and loses leadership
	// (cluster.LeaderCh unless a test drives it).
	leaderCh <-chan bool
	// term is the current term of leadership, nil while this node
	// follows (leader.go).
	term atomic.Pointer[leaderTerm]

	removedMu sync.Mutex
	removed   map[string]time.Time

	security    *cluster.Security
	gossip      *gossip.Gossip
	reconcileCh chan struct{}
	disk        *diskGauge
	// gossipView is gossip for the write path, which can run on a
	// forwarded command before startGossip has set n.gossip.
	gossipView atomic.Pointer[gossip.Gossip]

	// blobLag counts spooled messages whose body this node lacks.
	blobLag atomic.Int64
	// clock corrects this node's clock to the cluster's median, so one
	// node with a wrong clock does not date mail or notices wrongly.
	clock *clusterClock

	metrics *metrics.Metrics
	msglog  *msglog.Log
	statsMu sync.Mutex
	stats   fsm.QueueStats
	statsAt time.Time

	// alertWake and smsWake nudge the leader's alert and SMS loops.
	alertWake chan struct{}
	// alertPasses counts finished alert passes (AlertPasses).
	alertPasses atomic.Uint64
	smsWake     chan struct{}

	stop chan struct{}
	wg   sync.WaitGroup
}

// Start brings a node up: state first, then Raft, then the listeners, so
// nothing answers before it can keep a promise.
func Start(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if cfg.ID == "" {
		return nil, errors.New("node: an ID is required")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("node: a data directory is required")
	}
	if cfg.Postmaster != "" {
		if _, err := smtp.ParseRecipient(cfg.Postmaster, true, func(string) (bool, error) { return true, nil }); err != nil {
			return nil, fmt.Errorf("node: postmaster %q is not a mailbox with an ASCII domain: %v", cfg.Postmaster, err)
		}
	}
	n := &Node{cfg: cfg, logger: cfg.Logger.With("node", cfg.ID), stop: make(chan struct{}), reconcileCh: make(chan struct{}, 1), removed: map[string]time.Time{},
		clock: newClusterClock(cfg.Now), alertWake: make(chan struct{}, 1), smsWake: make(chan struct{}, 1)}
	ok := false
	defer func() {
		if !ok {
			n.Close()
		}
	}()

	var err error
	// The state store is rebuilt from the Raft log after a crash of the
	// machine, so it need not sync each commit (fsm.Options.DeferSync).
	if n.store, err = fsm.OpenWith(filepath.Join(cfg.DataDir, "state.db"), fsm.Options{DeferSync: true, BootID: cfg.BootID}); err != nil {
		return nil, err
	}
	if aside := n.store.SetAside(); aside != "" {
		n.logger.Warn("the state store had unsynced writes when the machine went down; it was set aside and the state is rebuilt from the Raft snapshot and log", "set_aside", aside)
	}
	n.fsm = fsm.New(n.store, n.logger)
	n.metrics = metrics.New(n)
	// A cache over a fact of this host, so the host's clock.
	n.disk = &diskGauge{dir: cfg.DataDir, min: cfg.MinFreeSpace, now: time.Now, statfs: statfsFree}
	if n.blobs, err = blob.Open(filepath.Join(cfg.DataDir, "blobs")); err != nil {
		return nil, err
	}
	if n.msglog, err = msglog.Open(msglog.Config{Path: filepath.Join(cfg.DataDir, "msglog.db"), Node: cfg.ID,
		Retention: cfg.LogRetention, MaxEntries: cfg.LogMaxEntries, Logger: n.logger, Now: n.now}); err != nil {
		return nil, err
	}
	if cfg.ClusterKey != nil {
		if n.security, err = cluster.NewSecurity(cfg.ClusterKey, cfg.ID); err != nil {
			return nil, err
		}
	} else {
		n.logger.Warn("no cluster key: traffic between nodes is neither encrypted nor authenticated")
	}
	expect := cfg.BootstrapExpect
	if expect == 1 && len(cfg.Join) > 0 {
		// A node told where its peers are joins their cluster rather
		// than forming one of its own.
		expect = 0
	}
	n.cluster, err = cluster.Start(cluster.Config{
		ID: cfg.ID, DataDir: cfg.DataDir, RaftAddr: cfg.RaftAddr, BootstrapExpect: expect,
		FSM: n.fsm, Blobs: n.blobs, Now: cfg.Now, AppHandler: n.appHandler, MaxBlobSize: cfg.MaxMessageSize + 64<<10, Security: n.security,
		Advertised:       n.advertisedTypes,
		HeartbeatTimeout: cfg.HeartbeatTimeout, ElectionTimeout: cfg.ElectionTimeout,
		Logger: n.logger, LogOutput: cfg.RaftLog,
	})
	if err != nil {
		return nil, err
	}
	if n.leaderCh = cfg.leaderCh; n.leaderCh == nil {
		n.leaderCh = n.cluster.LeaderCh()
	}

	if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("node: http listen: %w", err)
	}
	n.http = &http.Server{
		Handler:           n.httpHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.http.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("http server stopped", "err", err)
		}
	}()

	if n.smtpLn, err = net.Listen("tcp", cfg.SMTPAddr); err != nil {
		return nil, fmt.Errorf("node: smtp listen: %w", err)
	}
	n.smtp = smtp.NewServer(smtp.Config{
		Hostname:        cfg.Hostname,
		MaxMessageBytes: cfg.MaxMessageSize,
		MaxRecipients:   cfg.MaxRecipients,
		// Limits of concurrent sessions and the idle waits, with
		// Postfix's stress mode (docs/design.md §1 step 1).
		MaxConnections:       cfg.MaxConnections,
		MaxClientConnections: cfg.MaxClientConnections,
		ReadTimeout:          cfg.IdleTimeout,
		StressReadTimeout:    cfg.StressIdleTimeout,
		TLSConfig:            cfg.TLS,
		Logger:               n.logger,
		Now:                  n.now,
		NewID:                func() string { return newQueueID(n.now()) },
		Queue:                &mxQueue{n: n},
		OnReply:              n.metrics.SMTPReply,
		OnRefusal:            n.logRefusal,
	})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.smtp.Serve(n.smtpLn); err != nil && !errors.Is(err, net.ErrClosed) {
			n.logger.Error("smtp server stopped", "err", err)
		}
	}()

	if cfg.GossipAddr != "" {
		if err := n.startGossip(); err != nil {
			return nil, err
		}
	}
	n.wg.Add(4)
	go n.clockLoop()
	go n.leaderLoop()
	go n.gcLoop()
	go n.repairLoop()
	ok = true
	n.logger.Info("node started", "smtp", n.SMTPAddr(), "http", n.HTTPAddr(), "raft", cfg.RaftAddr)
	return n, nil
}

// SMTPAddr is the address the MX listens on.
func (n *Node) SMTPAddr() string { return n.smtpLn.Addr().String() }

// HTTPAddr is the address the web UI and API listen on.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// Store implements webui.Backend.
func (n *Node) Store() *fsm.Store { return n.store }

// Now implements webui.Backend: the node's clock corrected to the
// cluster's.
func (n *Node) Now() time.Time { return n.now() }

func (n *Node) now() time.Time {
	return n.clock.now()
}

// clockLoop keeps the clock offset current.
func (n *Node) clockLoop() {
	defer n.wg.Done()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	warned := false
	var steps time.Duration
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stepped := n.clock.stepped()
		if d := stepped - steps; d > time.Minute || d < -time.Minute {
			n.logger.Warn("this node's clock was stepped; keeping the cluster's time until the peers confirm it",
				"step", d.String())
		}
		steps = stepped
		delta, err := n.cluster.ClockOffsetFrom(ctx, n.clock.now)
		cancel()
		// Without a majority of agreeing clocks, keep the last estimate;
		// a node that has none yet takes the earliest plausible time.
		if err == nil || (errors.Is(err, cluster.ErrNoClockMajority) && !n.clock.measured()) {
			n.clock.adjust(delta)
			off := n.clock.offsetNow()
			if big := off > time.Minute || off < -time.Minute; big && !warned {
				n.logger.Warn("this node's clock differs from the cluster's; using the cluster's time", "offset", off.String())
				warned = true
			} else if !big {
				warned = false
			}
		}
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// ClusterStatus implements webui.Backend.
func (n *Node) ClusterStatus() cluster.Status { return n.cluster.Status() }

// Healthy is nil when the node can take mail: its store works and the
// cluster has a leader.
func (n *Node) Healthy() error {
	if err := n.store.Failed(); err != nil {
		return err
	}
	// A full disk also costs the leader (its log cannot be written), so
	// it is named first: it is the cause an operator can act on.
	if err := n.disk.room(0); err != nil {
		return err
	}
	if n.cluster.Status().Leader == "" {
		return errors.New("no leader")
	}
	return nil
}

// Apply encodes a command and commits it through Raft.
func (n *Node) Apply(ctx context.Context, cmd any) error {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	start := time.Now()
	_, err = n.cluster.Apply(ctx, data)
	if err == nil {
		n.metrics.Commit(time.Since(start))
	}
	return err
}

// QueueStats summarises the spool, at most every few seconds: a scrape or
// a status page must not walk a large spool each time.
func (n *Node) QueueStats() (fsm.QueueStats, error) {
	n.statsMu.Lock()
	defer n.statsMu.Unlock()
	if time.Since(n.statsAt) < 2*time.Second {
		return n.stats, nil
	}
	st, err := n.store.Stats()
	if err != nil {
		return st, err
	}
	n.stats, n.statsAt = st, time.Now()
	return st, nil
}

// BlobLag is how many spooled messages lack their body on this node.
func (n *Node) BlobLag() int64 { return n.blobLag.Load() }

// MetricsHandler serves /metrics.
func (n *Node) MetricsHandler() http.Handler { return n.metrics.Handler() }

func (n *Node) ensureAdminToken(ctx context.Context) {
	if n.cfg.AdminToken == "" {
		return
	}
	if h, err := n.store.AdminTokenHash(); err != nil || h != "" {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.Apply(cctx, &fsm.SetAdminToken{Hash: fsm.HashAdminToken(n.cfg.AdminToken)}); err != nil {
		n.logger.Error("storing operator token failed", "err", err)
		return
	}
	n.logger.Info("operator token set")
}

// Close stops the listeners, then Raft, then the stores.
func (n *Node) Close() error {
	select {
	case <-n.stop:
		return nil
	default:
		close(n.stop)
	}
	if n.smtp != nil {
		n.smtp.Close()
	} else if n.smtpLn != nil {
		n.smtpLn.Close()
	}
	if n.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n.http.Shutdown(ctx)
		cancel()
	} else if n.httpLn != nil {
		n.httpLn.Close()
	}
	if n.gossip != nil {
		// No Leave: a stopping node is usually restarting (an upgrade, a
		// reboot) and should stay a voter. Removing a node for good is
		// an operator's decision.
		n.gossip.Shutdown()
	}
	if n.store != nil {
		// A batch waiting for the disk to have room again would keep Raft
		// from shutting down.
		n.store.StopRetrying()
	}
	if n.cluster != nil {
		n.cluster.Shutdown()
	}
	n.wg.Wait()
	if n.store != nil {
		n.store.Close()
	}
	if n.msglog != nil {
		n.msglog.Close()
	}
	if n.blobs != nil {
		n.blobs.Close()
	}
	return nil
}
