package cluster

import (
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Server is one member of the Raft configuration as this node sees it.
type Server struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
	Self     bool   `json:"self"`
}

// Status is the group as one node sees it.
type Status struct {
	ID           string    `json:"id"`
	State        string    `json:"state"`
	Leader       string    `json:"leader"`
	LeaderID     string    `json:"leader_id"`
	Term         uint64    `json:"term"`
	CommitIndex  uint64    `json:"commit_index"`
	AppliedIndex uint64    `json:"applied_index"`
	LastContact  time.Time `json:"last_contact"`
	Servers      []Server  `json:"servers"`
}

// Status reports the node's view of the group.
func (c *Cluster) Status() Status {
	stats := c.raft.Stats()
	leaderAddr, leaderID := c.raft.LeaderWithID()
	st := Status{
		ID:           c.cfg.ID,
		State:        c.raft.State().String(),
		Leader:       string(leaderAddr),
		LeaderID:     string(leaderID),
		Term:         parseUint(stats["term"]),
		CommitIndex:  parseUint(stats["commit_index"]),
		AppliedIndex: c.cfg.FSM.AppliedIndex(),
		LastContact:  c.raft.LastContact(),
	}
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Servers = append(st.Servers, Server{
				ID: string(s.ID), Address: string(s.Address), Suffrage: suffrage(s.Suffrage),
				Leader: s.ID == leaderID, Self: string(s.ID) == c.cfg.ID,
			})
		}
	}
	return st
}

func suffrage(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return "voter"
	}
	return "nonvoter"
}

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}
