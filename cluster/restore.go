package cluster

import (
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// RestoreState replaces the state of the whole group with a state
// snapshot stream of size bytes, in the format the FSM's Restore reads.
// Only the leader can do it: it installs the stream as a new Raft snapshot
// and restores its own state machine from it; followers receive it through
// Raft's InstallSnapshot. appliedIndex is the index the stream's state had
// reached; the new snapshot is placed above both it and the current log,
// so no entry at or below it is ever applied on top (docs/design.md §3.4).
func (c *Cluster) RestoreState(appliedIndex uint64, size int64, r io.Reader, timeout time.Duration) error {
	if c.raft.State() != raft.Leader {
		return ErrNoLeader
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: appliedIndex, Size: size}
	if err := c.raft.Restore(meta, r, timeout); err != nil {
		return mapRaftErr(err)
	}
	return nil
}
