package node

import (
	"context"
	"fmt"
	"time"

	"lifeline/cluster"
	"lifeline/cluster/gossip"
	"lifeline/fsm"
)

// Version is this release's name in gossip metadata.
const Version = "0.1.0"

func (n *Node) startGossip() error {
	var key []byte
	if n.security != nil {
		key = n.security.GossipKey
	}
	g, err := gossip.Start(gossip.Config{
		Name:      n.cfg.ID,
		BindAddr:  n.cfg.GossipAddr,
		Join:      n.cfg.Join,
		SecretKey: key,
		Logger:    n.logger.With("part", "gossip"),
		Meta:      n.meta(),
	})
	if err != nil {
		return err
	}
	n.gossip = g
	n.gossipView.Store(g)
	n.wg.Add(1)
	go n.watchGossip()
	return nil
}

func (n *Node) meta() gossip.Meta {
	httpAddr, _ := cluster.AdvertiseAddr(n.HTTPAddr())
	smtpAddr, _ := cluster.AdvertiseAddr(n.SMTPAddr())
	known := n.cluster.KnownTypes()
	return gossip.Meta{
		RaftAddr:        n.cluster.LocalAddr(),
		HTTPAddr:        httpAddr,
		SMTPAddr:        smtpAddr,
		Version:         Version,
		BootstrapExpect: n.cfg.BootstrapExpect,
		Formed:          n.cluster.HasState(),
		Types:           string(known[:]),
	}
}

// advertisedTypes is what every live peer says its build can apply, for
// the cluster's upgrade check before a gated command type is proposed
// (cluster.CheckUpgraded). A peer that gossip does not count alive is left
// out: the metadata it last sent may predate a downgrade, and a node that
// comes back without a type the log already holds could not start.
func (n *Node) advertisedTypes() map[string]fsm.TypeSet {
	out := map[string]fsm.TypeSet{}
	g := n.gossipView.Load()
	if g == nil {
		return out
	}
	for _, m := range g.Members() {
		if m.State != gossip.StateAlive {
			continue
		}
		out[m.Name] = typesOf(m.Meta)
	}
	return out
}

// typesOf reads a member's advertised command types. A node of a release
// before the field existed sends none and is taken to know the baseline,
// which every release applies; so is one whose field cannot be read.
func typesOf(m gossip.Meta) fsm.TypeSet {
	if s, ok := fsm.ParseTypeSet([]byte(m.Types)); ok {
		return s
	}
	return fsm.BaselineTypes()
}

// watchGossip turns membership events into a reconcile on the leader and
// keeps this node's own metadata current.
func (n *Node) watchGossip() {
	defer n.wg.Done()
	formed := n.cluster.HasState()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case _, ok := <-n.gossip.Events():
			if !ok {
				return
			}
			n.poke()
		case <-t.C:
			if !formed && n.cluster.HasState() {
				formed = true
				if err := n.gossip.UpdateMeta(n.meta(), 5*time.Second); err != nil {
					n.logger.Warn("cannot update gossip metadata", "err", err)
				}
			}
			if !formed {
				n.tryBootstrap()
			}
		}
	}
}

// tryBootstrap forms a new cluster once --bootstrap-expect nodes see each
// other and none of them belongs to a cluster yet. Every node computes the
// same member list, so concurrent bootstraps agree (DESIGN.md §4).
func (n *Node) tryBootstrap() {
	if n.cfg.BootstrapExpect < 2 {
		return
	}
	peers, ok := n.gossip.ExpectReady(n.cfg.BootstrapExpect)
	if !ok {
		return
	}
	var list []cluster.Peer
	self := false
	for _, m := range peers {
		list = append(list, cluster.Peer{ID: m.Name, Address: m.Meta.RaftAddr})
		self = self || m.Name == n.cfg.ID
	}
	if !self {
		return
	}
	n.logger.Info("forming the cluster", "peers", len(list))
	if err := n.cluster.Bootstrap(list); err != nil {
		n.logger.Error("bootstrap failed", "err", err)
	}
}

func (n *Node) poke() {
	select {
	case n.reconcileCh <- struct{}{}:
	default:
	}
}

// reconcileLoop runs on the leader: gossip members become Raft voters, a
// member that left is removed at once, and one that failed is removed only
// after RemoveFailedAfter, because removing a voter shrinks the quorum.
func (n *Node) reconcileLoop(ctx context.Context) {
	deadSince := map[string]time.Time{}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		n.reconcile(deadSince)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.reconcileCh:
		}
	}
}

func (n *Node) reconcile(deadSince map[string]time.Time) {
	if n.gossip == nil || !n.cluster.IsLeader() {
		return
	}
	servers, err := n.cluster.Servers()
	if err != nil {
		return
	}
	members := map[string]gossip.Member{}
	for _, m := range n.gossip.Members() {
		members[m.Name] = m
	}
	inRaft := map[string]string{}
	for _, s := range servers {
		inRaft[string(s.ID)] = string(s.Address)
	}
	for _, m := range members {
		if m.State != gossip.StateAlive || m.Meta.RaftAddr == "" {
			continue
		}
		if addr, ok := inRaft[m.Name]; ok && addr == m.Meta.RaftAddr {
			continue
		}
		if _, ok := inRaft[m.Name]; !ok && n.recentlyRemoved(m.Name) {
			continue
		}
		n.logger.Info("adding voter", "id", m.Name, "raft", m.Meta.RaftAddr)
		if err := n.cluster.AddVoter(cluster.Peer{ID: m.Name, Address: m.Meta.RaftAddr}); err != nil {
			n.logger.Warn("cannot add voter", "id", m.Name, "err", err)
		}
	}
	now := time.Now()
	for id := range inRaft {
		if id == n.cfg.ID {
			continue
		}
		m, known := members[id]
		switch {
		case known && m.State == gossip.StateAlive:
			delete(deadSince, id)
			continue
		case known && m.State == gossip.StateLeft:
			n.logger.Info("removing server that left", "id", id)
			if err := n.cluster.RemoveServer(id); err != nil {
				n.logger.Warn("cannot remove server", "id", id, "err", err)
			}
			continue
		}
		if _, ok := deadSince[id]; !ok {
			deadSince[id] = now
		}
		if n.cfg.RemoveFailedAfter > 0 && now.Sub(deadSince[id]) >= n.cfg.RemoveFailedAfter {
			n.logger.Warn("removing server that failed", "id", id, "down_since", deadSince[id])
			if err := n.cluster.RemoveServer(id); err != nil {
				n.logger.Warn("cannot remove server", "id", id, "err", err)
			}
		}
	}
}

// Members is the gossip view, for the status page.
func (n *Node) Members() []gossip.Member {
	if n.gossip == nil {
		return nil
	}
	return n.gossip.Members()
}

// TransferLeadership hands leadership to the node named to, or to the
// most up-to-date follower when to is empty.
func (n *Node) TransferLeadership(to string) error {
	if to == "" {
		return n.cluster.TransferLeadership("", "")
	}
	servers, err := n.cluster.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if string(s.ID) == to {
			return n.cluster.TransferLeadership(to, string(s.Address))
		}
	}
	return fmt.Errorf("no such server: %s", to)
}

// RemoveServer takes a node out of the voters for good. Gossip may still
// count the node alive for a few seconds after it stopped; the reconcile
// loop leaves it out meanwhile instead of adding it straight back.
func (n *Node) RemoveServer(id string) error {
	if err := n.cluster.RemoveServer(id); err != nil {
		return err
	}
	n.removedMu.Lock()
	n.removed[id] = time.Now()
	n.removedMu.Unlock()
	return nil
}

// recentlyRemoved reports whether an operator removed id in the last ten
// minutes.
func (n *Node) recentlyRemoved(id string) bool {
	n.removedMu.Lock()
	defer n.removedMu.Unlock()
	at, ok := n.removed[id]
	return ok && time.Since(at) < 10*time.Minute
}

// Snapshot writes a Raft snapshot of this node's state now.
func (n *Node) Snapshot() (time.Duration, error) {
	start := time.Now()
	err := n.cluster.Snapshot()
	return time.Since(start), err
}
