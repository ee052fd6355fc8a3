package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
// same member list, so concurrent bootstraps agree (docs/design.md §4).
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
	inRaft := map[string]string{}
	for _, s := range servers {
		inRaft[string(s.ID)] = string(s.Address)
	}
	plan := planReconcile(reconcileInput{
		self: n.cfg.ID, servers: inRaft, members: n.gossip.Members(), deadSince: deadSince,
		recentlyRemoved: n.recentlyRemoved, now: time.Now(), removeFailedAfter: n.cfg.RemoveFailedAfter,
	})
	for _, p := range plan.add {
		n.logger.Info("adding voter", "id", p.ID, "raft", p.Address)
		if err := n.cluster.AddVoter(p); err != nil {
			n.logger.Warn("cannot add voter", "id", p.ID, "err", err)
		}
	}
	for _, r := range plan.remove {
		if r.left {
			n.logger.Info("removing server that left", "id", r.id)
		} else {
			n.logger.Warn("removing server that failed", "id", r.id, "down_since", deadSince[r.id])
		}
		if err := n.cluster.RemoveServer(r.id); err != nil {
			n.logger.Warn("cannot remove server", "id", r.id, "err", err)
		}
	}
}

type reconcileInput struct {
	self    string
	servers map[string]string // Raft configuration: ID to Raft address
	members []gossip.Member
	// deadSince remembers, across rounds, since when each server has not
	// been alive in gossip; planReconcile updates it.
	deadSince         map[string]time.Time
	recentlyRemoved   func(id string) bool
	now               time.Time
	removeFailedAfter time.Duration
}

type removal struct {
	id   string
	left bool // said goodbye, rather than failed
}

type reconcilePlan struct {
	add    []cluster.Peer
	remove []removal
}

// planReconcile decides how the Raft configuration follows gossip: an
// alive member that is not a voter (or moved its Raft address) is added;
// a server that left gracefully is removed at once; one that failed is
// removed only after removeFailedAfter (0: never), since a node that is
// rebooting or cut off for a while should come back as the voter it was.
// A server the operator just removed is not added straight back while
// gossip still counts it alive.
func planReconcile(in reconcileInput) reconcilePlan {
	var plan reconcilePlan
	members := map[string]gossip.Member{}
	for _, m := range in.members {
		members[m.Name] = m
	}
	for _, m := range in.members {
		if m.State != gossip.StateAlive || m.Meta.RaftAddr == "" {
			continue
		}
		addr, ok := in.servers[m.Name]
		if ok && addr == m.Meta.RaftAddr {
			continue
		}
		if !ok && in.recentlyRemoved != nil && in.recentlyRemoved(m.Name) {
			continue
		}
		plan.add = append(plan.add, cluster.Peer{ID: m.Name, Address: m.Meta.RaftAddr})
	}
	for id := range in.servers {
		if id == in.self {
			continue
		}
		m, known := members[id]
		switch {
		case known && m.State == gossip.StateAlive:
			delete(in.deadSince, id)
			continue
		case known && m.State == gossip.StateLeft:
			plan.remove = append(plan.remove, removal{id: id, left: true})
			continue
		}
		if _, ok := in.deadSince[id]; !ok {
			in.deadSince[id] = in.now
		}
		if in.removeFailedAfter > 0 && in.now.Sub(in.deadSince[id]) >= in.removeFailedAfter {
			plan.remove = append(plan.remove, removal{id: id})
		}
	}
	slices.SortFunc(plan.add, func(a, b cluster.Peer) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(plan.remove, func(a, b removal) int { return strings.Compare(a.id, b.id) })
	return plan
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
