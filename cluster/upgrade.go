package cluster

import (
	"errors"
	"fmt"

	"lifeline/fsm"
)

// UpgradeRequiredError refuses a command of a type that some server of
// the Raft configuration may not know. Nothing was proposed, so nothing
// is committed; the same command succeeds once every server runs a
// release that knows the type.
type UpgradeRequiredError struct {
	Type fsm.CommandType
	// Node is the first server found lacking the type.
	Node string
	// Unseen: the node advertises nothing through gossip (it is down,
	// starting, or cut off), so whether it knows the type is unknown.
	Unseen bool
}

func (e *UpgradeRequiredError) Error() string {
	if e.Unseen {
		return fmt.Sprintf("command type %d needs every node upgraded; node %s is not reachable through gossip, so it may not know it", e.Type, e.Node)
	}
	return fmt.Sprintf("command type %d needs every node upgraded; node %s does not know it", e.Type, e.Node)
}

// CheckUpgraded decides whether a command whose gated types (see
// fsm.GatedTypes) are types may be proposed to a Raft configuration of
// servers, given the command types each server advertises. A server
// missing from advertised counts as knowing none of them.
//
// Committing a type that one server lacks would stop that server for good:
// it panics on an unknown non-ignorable type rather than diverge
// (docs/design.md §3.2, §3.3), and would panic again on every restart while the
// entry stays in its log. So the check is strict: every server, voter or
// not, up or down, must advertise every type.
func CheckUpgraded(types []fsm.CommandType, servers []string, advertised map[string]fsm.TypeSet) error {
	for _, t := range types {
		for _, id := range servers {
			set, ok := advertised[id]
			if !ok {
				return &UpgradeRequiredError{Type: t, Node: id, Unseen: true}
			}
			if !set.Has(t) {
				return &UpgradeRequiredError{Type: t, Node: id}
			}
		}
	}
	return nil
}

// checkUpgraded runs CheckUpgraded for an encoded command against the
// current configuration. It runs where a command enters the cluster and
// again on the leader for a forwarded one: the leader may see a server the
// proposer does not yet, and a follower of a newer release must not rely
// on a leader of an older one to refuse a type that leader cannot judge.
func (c *Cluster) checkUpgraded(cmd []byte) error {
	types := fsm.GatedTypes(cmd)
	if len(types) == 0 {
		return nil
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return mapRaftErr(err)
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		ids = append(ids, string(s.ID))
	}
	advertised := map[string]fsm.TypeSet{}
	if c.cfg.Advertised != nil {
		advertised = c.cfg.Advertised()
	}
	// This node's own build needs no gossip to be known.
	advertised[c.cfg.ID] = c.known
	return CheckUpgraded(types, ids, advertised)
}

// encodeUpgradeRequired and decodeUpgradeRequired carry the error from a
// leader to the follower that forwarded the command: type, unseen, node.
func encodeUpgradeRequired(e *UpgradeRequiredError) []byte {
	unseen := byte(0)
	if e.Unseen {
		unseen = 1
	}
	return append([]byte{byte(e.Type), unseen}, e.Node...)
}

func decodeUpgradeRequired(msg []byte) error {
	if len(msg) < 2 {
		return errors.New("cluster: peer: malformed upgrade refusal")
	}
	return &UpgradeRequiredError{Type: fsm.CommandType(msg[0]), Unseen: msg[1] == 1, Node: string(msg[2:])}
}
