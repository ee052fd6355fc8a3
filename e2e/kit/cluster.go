package kit

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// JoinArgs are the flags that make node i of nodes form one cluster with
// the others from gossip alone, as an operator starts them.
func JoinArgs(nodes []*Node, i int) []string {
	var join []string
	for j, m := range nodes {
		if j != i {
			join = append(join, m.Gossip)
		}
	}
	return []string{"--bootstrap-expect", fmt.Sprint(len(nodes)), "--join", strings.Join(join, ",")}
}

// Cluster is the set of nodes a program started; it stops them all.
type Cluster struct {
	mu    sync.Mutex
	nodes []*Node
	// Key is LIFELINE_CLUSTER_KEY and Token the operator token of every
	// node.
	Key, Token string
}

// NewCluster makes size nodes on free loopback ports, node i with
// ID prefix<i+1> under dir/prefix<i+1> (its data in data/, its log in
// node.log), joined to each other; none is started yet.
func NewCluster(bin, dir, prefix string, size int, args ...string) (*Cluster, error) {
	c := &Cluster{Key: RandomHex(32), Token: RandomHex(24)}
	for i := range size {
		n, err := c.NewNode(bin, dir, fmt.Sprintf("%s%d", prefix, i+1))
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	for i, n := range c.nodes {
		n.Args = append(JoinArgs(c.nodes, i), args...)
	}
	return c, nil
}

// NewNode makes a node with the cluster's key and token under dir/id, on
// free loopback ports; the caller sets its Args, adds it and starts it.
func (c *Cluster) NewNode(bin, dir, id string) (*Node, error) {
	ports, err := FreePorts(4)
	if err != nil {
		return nil, err
	}
	d := dir + "/" + id
	return &Node{
		ID: id, Bin: bin, DataDir: d + "/data", LogPath: d + "/node.log",
		SMTP: ports[0], HTTP: ports[1], Raft: ports[2], Gossip: ports[3],
		Token: c.Token, Env: []string{"LIFELINE_CLUSTER_KEY=" + c.Key}, SysProcAttr: Detached(),
	}, nil
}

// Add makes n one of the cluster's nodes.
func (c *Cluster) Add(n *Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes = append(c.nodes, n)
}

// Nodes lists the nodes in the order they were added.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// Start launches every node that is not running.
func (c *Cluster) Start() error {
	for _, n := range c.Nodes() {
		if n.Running() {
			continue
		}
		if _, err := n.Launch(); err != nil {
			return err
		}
	}
	return nil
}

// Stop ends every node at once: one after the other, each survivor would
// wait for a quorum that is going away.
func (c *Cluster) Stop() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes() {
		wg.Go(func() { n.Stop(15 * time.Second) })
	}
	wg.Wait()
}

// Crashed reports the first node whose latest launch has ended.
func (c *Cluster) Crashed() error {
	for _, n := range c.Nodes() {
		if err := n.ExitErr(); err != nil {
			return err
		}
	}
	return nil
}

// LogTails is the end of every node's log, for an error message.
func (c *Cluster) LogTails() string {
	var b strings.Builder
	for _, n := range c.Nodes() {
		b.WriteString(n.LogTail(30))
	}
	return b.String()
}

// WaitFormed waits until every node is healthy and sees all of them as
// voters and the same leader; a node that exits ends the wait.
func (c *Cluster) WaitFormed(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	nodes := c.Nodes()
	last := ""
	return Poll(ctx, 100*time.Millisecond, func() string { return "cluster forming: " + last }, func() (bool, error) {
		if err := c.Crashed(); err != nil {
			return false, err
		}
		leader := ""
		for _, n := range nodes {
			code, h, err := n.Health(ctx)
			if err != nil || code != http.StatusOK {
				last = fmt.Sprintf("%s /healthz: %d %v %s", n.ID, code, err, h.Error)
				return false, nil
			}
			st, err := n.APIStatus(ctx)
			if err != nil {
				last = fmt.Sprintf("%s /api/v1/status: %v", n.ID, err)
				return false, nil
			}
			if st.Voters() != len(nodes) || st.Cluster.LeaderID == "" {
				last = fmt.Sprintf("%s sees %d voters, leader %q", n.ID, st.Voters(), st.Cluster.LeaderID)
				return false, nil
			}
			if leader != "" && st.Cluster.LeaderID != leader {
				last = fmt.Sprintf("nodes disagree on the leader: %s, %s", leader, st.Cluster.LeaderID)
				return false, nil
			}
			leader = st.Cluster.LeaderID
		}
		return true, nil
	})
}

// AgreedLeader waits until the running ones of nodes answer /healthz 200
// and agree on a leader that is one of them, and returns it.
func AgreedLeader(ctx context.Context, nodes []*Node, limit time.Duration) (*Node, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var found *Node
	last := ""
	err := Poll(ctx, 50*time.Millisecond, func() string { return "waiting for one agreed leader: " + last }, func() (bool, error) {
		found = nil
		agreed := ""
		for _, n := range nodes {
			if !n.Running() {
				continue
			}
			code, h, err := n.Health(ctx)
			if err != nil || code != http.StatusOK {
				last = fmt.Sprintf("%s: healthz %d %v", n.ID, code, err)
				return false, nil
			}
			if agreed == "" {
				agreed = h.Leader
			}
			if h.Leader == "" || h.Leader != agreed {
				last = fmt.Sprintf("%s sees leader %q, another node %q", n.ID, h.Leader, agreed)
				return false, nil
			}
			if n.ID == agreed {
				found = n
			}
		}
		if found == nil {
			last = fmt.Sprintf("the leader %q is none of the running nodes", agreed)
		}
		return found != nil, nil
	})
	return found, err
}

// AddDomain protects domain with `lifeline admin domain add` through the
// first of nodes, retried while a young cluster settles its first term,
// and waits until every node has applied it, so that none answers 554.
func AddDomain(ctx context.Context, nodes []*Node, domain, dest string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	last := ""
	err := Poll(ctx, 200*time.Millisecond, func() string { return "lifeline admin domain add: " + last }, func() (bool, error) {
		_, err := nodes[0].CLI(ctx, "admin", "domain", "add", domain, "--destination", dest)
		if err == nil {
			return true, nil
		}
		last = err.Error()
		// A retry after an attempt whose answer was lost finds the domain
		// already there, which is what was wanted.
		return strings.Contains(strings.ToLower(last), "exist"), nil
	})
	if err != nil {
		return fmt.Errorf("%w%s", err, nodes[0].LogTail(30))
	}
	return Poll(ctx, 100*time.Millisecond, func() string { return "domain " + domain + " on every node: " + last }, func() (bool, error) {
		for _, n := range nodes {
			if err := n.API(ctx, http.MethodGet, "/api/v1/domains/"+domain, nil, nil); err != nil {
				last = n.ID + ": " + err.Error()
				return false, nil
			}
		}
		return true, nil
	})
}
