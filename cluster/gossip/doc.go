// Package gossip is Lifeline's membership layer: a thin wrapper around
// hashicorp/memberlist that finds the other nodes, carries each node's
// addresses and version as metadata, reports joins, updates, graceful leaves
// and failures, and tells the cluster layer when enough nodes are present to
// form the Raft cluster. It knows nothing about mail or Raft, and holds no
// package-level state, so several nodes can run in one process.
//
// # Joining
//
// Nodes start in any order. Start returns as soon as the local listener is
// up; the addresses in Config.Join are then tried in the background, each
// until it has been reached once, with a backoff from Config.RetryJoinInterval
// up to Config.RetryJoinMax. Every address is retried (not just until the
// first one answers) because a seed node started without --join would
// otherwise stay split from nodes that reached each other before it came up.
// Joined reports whether any other member has been seen, whichever side
// initiated the contact.
//
// # Leave and fail
//
// memberlist v0.5.4 tells its event delegate that a node is gone without
// saying whether it left or failed (Node.State is never filled in). A leaving
// node therefore first sends a leave intent to every live peer over
// memberlist's reliable (TCP) user-message channel and then calls
// memberlist's Leave; a peer that holds the intent when the node goes reports
// EventLeave and StateLeft, otherwise EventFail and StateDead. An intent that
// arrives just after the failure was reported corrects it with an EventLeave.
// A peer that missed the intent entirely reports a failure: the cluster layer
// must treat "failed" as the safe default (keep the voter) and "left" as
// permission to remove it. For the same reason StateSuspect exists for
// completeness but is not produced: memberlist v0.5.4 does not expose
// suspicion, so a suspected node stays alive here until it is declared dead.
//
// # Bootstrap with --bootstrap-expect N
//
// Every node started with --bootstrap-expect N polls ExpectReady(N). It turns
// true once at least N members are alive and every alive member advertises
// BootstrapExpect == N and a Raft address; peers is then the first N alive
// members sorted by name. The cluster layer, if its own name is among peers
// and its Raft has no state yet, calls BootstrapCluster with exactly those
// peers as voters (ID = Name, Address = Meta.RaftAddr).
//
// All N nodes may do this at the same moment, and that is the intended use:
// hashicorp/raft v1.7.3 documents BootstrapCluster as "called at the
// beginning of time for the cluster with an identical configuration listing
// all Voter servers", a repeated bootstrap fails with ErrCantBootstrap "that
// can be safely ignored", and raft's own test harness (testing.go,
// MakeCluster) bootstraps every server with the same configuration. Each node
// writes the same entry (index 1, term 1, the same configuration) and an
// election follows as usual; a live bootstrap on a node that is not a voter
// in the configuration is refused with ErrNotVoter. Because every node applies
// the same rule to the same membership, they compute identical
// configurations, so no single "bootstrapper" has to be chosen.
//
// What is not harmless is two different configurations: their index-1
// entries would differ while raft believes them equal. That can only happen
// when more than N nodes with the same --bootstrap-expect N start together and
// different nodes see different first-N sets. Start exactly N nodes with
// --bootstrap-expect N; add later nodes to the formed cluster. ExpectReady
// logs a warning when it sees more than N candidates, and a member advertising
// a different value blocks readiness on every node that sees it, so a
// misconfigured node delays formation instead of splitting it.
package gossip
