// Package node assembles one Lifeline appliance node: its configuration,
// the order in which its parts start and stop, and the duties it carries
// while it leads the cluster.
package node

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"

	"lifeline/smtp/outbound"
	"log/slog"
	"time"
)

// Config is every setting of one node. The CLI fills it from flags and the
// config file (docs/design.md §4).
type Config struct {
	ID              string
	DataDir         string
	SMTPAddr        string
	HTTPAddr        string
	RaftAddr        string
	GossipAddr      string
	Join            []string
	BootstrapExpect int
	// AdminToken, when set on the bootstrapping node, becomes the operator
	// token of a new cluster; only its hash is stored.
	AdminToken string
	// Hostname is the name this node uses in SMTP greetings and Received.
	Hostname string
	TLS      *tls.Config
	// Web, when set, builds what the HTTP listener serves besides
	// /healthz (the pages and the JSON API). It is called once, as the
	// listener starts, with this node and its logger; the node itself
	// knows nothing of the web side.
	Web func(n *Node, logger *slog.Logger) http.Handler

	RetrySchedule  []time.Duration
	DelayWarning   time.Duration
	QueueLifetime  time.Duration
	MaxMessageSize int64
	// MinFreeSpace is the free space in DataDir below which the node
	// takes no new mail and reports itself unhealthy (default 1.5 times
	// MaxMessageSize).
	MinFreeSpace  int64
	MaxRecipients int
	Transports    map[string]string

	// MaxConnections and MaxClientConnections bound concurrent MX
	// sessions in total and per client address; IdleTimeout is how long
	// a session may wait between commands, StressIdleTimeout how long once
	// more than 80% of MaxConnections are in use. Zero takes the smtp
	// package's defaults (1000, 50, 5m, 10s).
	MaxConnections       int
	MaxClientConnections int
	IdleTimeout          time.Duration
	StressIdleTimeout    time.Duration
	// Postmaster is the mailbox that mail to the bare <postmaster>
	// (RFC 5321 §4.5.1) goes to; empty means postmaster@ the first
	// protected domain in name order.
	Postmaster string

	// Dialer and Resolver carry every outbound connection and lookup, so
	// tests keep to loopback and never touch DNS.
	Dialer   outbound.Dialer
	Resolver outbound.Resolver
	// DeliveryLease is how long an attempt may run before a new leader
	// presumes it lost.
	DeliveryLease time.Duration
	// DeliveryPoll is how often the leader looks for due mail.
	DeliveryPoll time.Duration
	// ClusterKey (32 bytes) encrypts gossip and puts traffic between nodes
	// under mutual TLS. Without it the cluster runs in the clear.
	ClusterKey []byte
	// RemoveFailedAfter is how long a failed node stays a voter before the
	// leader removes it; 0 never removes failed nodes.
	RemoveFailedAfter time.Duration
	// LogRetention and LogMaxEntries bound this node's message log.
	LogRetention  time.Duration
	LogMaxEntries int
	// HeartbeatTimeout and ElectionTimeout tune Raft's failure detection.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration

	Logger *slog.Logger
	// RaftLog receives hashicorp/raft's and memberlist's own log lines;
	// nil discards them.
	RaftLog io.Writer
	// Now is the clock; tests inject a fake one.
	Now func() time.Time
	// BootID names the machine's current boot (default: the kernel's
	// boot_id); tests inject one to play a power failure.
	BootID func() (string, error)

	// leaderCh, when set, replaces Raft's leadership notifications, so a
	// test can make leadership come and go faster than an election.
	leaderCh <-chan bool
}

func (c *Config) setDefaults() {
	if c.BootstrapExpect == 0 {
		c.BootstrapExpect = 1
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 50 << 20
	}
	if c.MinFreeSpace == 0 {
		c.MinFreeSpace = c.MaxMessageSize + c.MaxMessageSize/2
	}
	if c.MaxRecipients == 0 {
		c.MaxRecipients = 1000
	}
	if c.DelayWarning == 0 {
		c.DelayWarning = 4 * time.Hour
	}
	if c.QueueLifetime == 0 {
		c.QueueLifetime = 720 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Hostname == "" {
		c.Hostname = c.ID
	}
	if c.HeartbeatTimeout == 0 {
		// Nodes of one appliance cluster sit in one data center; half a
		// second keeps failover well under the 3 seconds operators expect.
		c.HeartbeatTimeout = 500 * time.Millisecond
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = 500 * time.Millisecond
	}
	if c.Dialer == nil {
		c.Dialer = &net.Dialer{Timeout: 30 * time.Second}
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
}
