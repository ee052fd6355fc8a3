package cluster

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Peer is a node that should be in the Raft configuration.
type Peer struct {
	ID      string
	Address string // Raft address
}

// Bootstrap forms a new cluster from exactly these peers. Every node that
// sees the same set calls it with the same configuration; hashicorp/raft
// accepts identical bootstraps, and a node that already has state refuses
// (ErrCantBootstrap), which is not an error here.
func (c *Cluster) Bootstrap(peers []Peer) error {
	has, err := raft.HasExistingState(c.logs, c.logs, c.snaps)
	if err != nil || has {
		return err
	}
	var conf raft.Configuration
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address), Suffrage: raft.Voter})
	}
	if err := c.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	return nil
}

// HasState reports whether this node already belongs to a cluster.
func (c *Cluster) HasState() bool {
	has, _ := raft.HasExistingState(c.logs, c.logs, c.snaps)
	return has
}

// Servers returns the current Raft configuration.
func (c *Cluster) Servers() ([]raft.Server, error) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// AddVoter adds (or re-addresses) a voter. Only the leader can.
func (c *Cluster) AddVoter(p Peer) error {
	err := c.raft.AddVoter(raft.ServerID(p.ID), raft.ServerAddress(p.Address), 0, 10*time.Second).Error()
	return mapRaftErr(err)
}

// RemoveServer takes a node out of the Raft configuration. Only the
// leader can.
func (c *Cluster) RemoveServer(id string) error {
	return mapRaftErr(c.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error())
}

// TransferLeadership hands leadership to another voter, for rolling
// upgrades; with id empty raft picks the most up-to-date follower.
func (c *Cluster) TransferLeadership(id, addr string) error {
	if id == "" {
		return mapRaftErr(c.raft.LeadershipTransfer().Error())
	}
	return mapRaftErr(c.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr)).Error())
}

// LocalAddr is the Raft address peers dial.
func (c *Cluster) LocalAddr() string { return string(c.transport.LocalAddr()) }
