package node

import (
	"context"

	"lifeline/cluster"
	"lifeline/cluster/blob"
	"lifeline/fsm"
	"lifeline/node/msglog"
	"lifeline/smtp"
)

// mxQueue connects the SMTP listener to the replicated spool.
type mxQueue struct {
	n *Node
}

func (q *mxQueue) Protected(domain string) (bool, error) {
	_, ok, err := q.n.store.Domain(domain)
	return ok, err
}

// Postmaster names the mailbox of the bare <postmaster>: the configured
// one, else postmaster@ the first protected domain in name order, so that
// every node routes it alike; "" while no domain is protected.
func (q *mxQueue) Postmaster() (string, error) {
	if q.n.cfg.Postmaster != "" {
		return q.n.cfg.Postmaster, nil
	}
	ds, err := q.n.store.Domains()
	if err != nil || len(ds) == 0 {
		return "", err
	}
	return "postmaster@" + ds[0].Name, nil
}

// Room refuses a transaction the data directory has no room for.
func (q *mxQueue) Room(size int64) error { return q.n.disk.room(size) }

func (q *mxQueue) NewBlob() (smtp.BlobWriter, error) {
	return q.n.blobs.Create()
}

// Enqueue commits a SpoolAdd once the body is durable. Bodies never travel
// in the Raft log (docs/design.md §3.3); the command carries the hash.
func (q *mxQueue) Enqueue(ctx context.Context, env *smtp.Envelope, hash string, size int64) error {
	cmd := &fsm.SpoolAdd{
		ID: env.ID, From: env.From, Ret: env.Ret, EnvID: env.EnvID, Body: env.Body,
		SMTPUTF8: env.SMTPUTF8, Helo: env.Helo, RemoteAddr: env.RemoteAddr, TLS: env.TLS,
		Node: q.n.cfg.ID, BlobHash: hash, Size: size, ReceivedAt: env.ReceivedAt.UnixNano(),
	}
	for _, r := range env.Recipients {
		cmd.Recipients = append(cmd.Recipients, fsm.Recipient{Address: r.Address, Domain: r.Domain, Notify: r.Notify, ORCPT: r.ORCPT})
	}
	if !q.n.cluster.HasLeader() {
		// Without a leader nothing can commit; say so at once rather
		// than after pushing the body to peers.
		return cluster.ErrNoLeader
	}
	// The body must be on a majority before the command that references
	// it can commit; otherwise losing this node could lose the body of an
	// acknowledged message (docs/design.md §3.1).
	if err := q.n.cluster.ReplicateBlob(ctx, hash); err != nil {
		return err
	}
	// The header summary lets the Emergency Inbox list the message without
	// reading its body; the blob was just written, so this reads the page
	// cache.
	if err := q.n.Apply(ctx, &fsm.SpoolAddSummary{Add: *cmd, Summary: q.n.summarize(hash)}); err != nil {
		return err
	}
	q.n.wakeDelivery()
	var to []string
	for _, r := range env.Recipients {
		to = append(to, r.Address)
	}
	q.n.msglog.Append(msglog.Entry{
		At: env.ReceivedAt.UnixNano(), Kind: msglog.KindSMTP, Status: "accepted", QueueID: env.ID,
		MessageID: q.n.messageID(hash), From: env.From, To: to, Code: 250, Remote: env.RemoteAddr, Size: size,
	})
	return nil
}

var _ smtp.BlobWriter = (*blob.Writer)(nil)
