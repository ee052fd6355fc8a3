package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"lifeline/cluster/blob"
	"lifeline/fsm"
	"lifeline/node/delivery"
	"lifeline/smtp/outbound"
)

// OpenBody opens a message body, fetching it from a peer when this node
// missed it (it was down, or joined later).
func (n *Node) OpenBody(ctx context.Context, hash string) (io.ReadCloser, error) {
	f, err := n.blobs.Open(hash)
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, blob.ErrNotFound) {
		return nil, err
	}
	if err := n.cluster.FetchBlob(ctx, hash); err != nil {
		return nil, fmt.Errorf("body %s is not on this node and no peer sent it: %w", hash, err)
	}
	return n.blobs.Open(hash)
}

// spool queues a message composed on this node (a DSN, a message written
// in the Emergency Inbox) through the same path as received mail.
func (n *Node) spool(ctx context.Context, cmd *fsm.SpoolAdd, body []byte) error {
	return n.spoolWith(ctx, cmd, nil, body)
}

// spoolNotice queues a delay notice and marks its message notified in one
// commit.
func (n *Node) spoolNotice(ctx context.Context, cmd *fsm.SpoolAdd, notified *fsm.DelayNotified, body []byte) error {
	return n.spoolWith(ctx, cmd, notified, body)
}

func (n *Node) spoolWith(ctx context.Context, cmd *fsm.SpoolAdd, notified *fsm.DelayNotified, body []byte) error {
	hash, size, err := n.cluster.StoreBlob(ctx, bytes.NewReader(body), 0)
	if err != nil {
		return err
	}
	cmd.BlobHash, cmd.Size, cmd.Node = hash, size, n.cfg.ID
	// With its header summary, so it lists at once in the Emergency Inbox
	// of a recipient in a protected domain.
	add := fsm.SpoolAddSummary{Add: *cmd, Summary: summarizeBytes(body)}
	if notified != nil {
		return n.Apply(ctx, &fsm.NoticeAdd{Add: add, Notified: *notified})
	}
	return n.Apply(ctx, &add)
}

func (n *Node) newEngine() *delivery.Engine {
	seed := uint64(time.Now().UnixNano())
	return delivery.New(delivery.Config{
		Store:       n.store,
		Apply:       n.Apply,
		OpenBody:    n.OpenBody,
		Spool:       n.spool,
		SpoolNotice: n.spoolNotice,
		Client: &outbound.Client{
			Dialer:    n.cfg.Dialer,
			LocalName: n.cfg.Hostname,
			Logger:    n.logger,
		},
		Router:        &outbound.Router{Resolver: n.cfg.Resolver, Transport: n.cfg.Transports},
		Now:           n.now,
		Rand:          rand.New(rand.NewPCG(seed, seed>>1|1)),
		Schedule:      n.cfg.RetrySchedule,
		DelayWarning:  n.cfg.DelayWarning,
		QueueLifetime: n.cfg.QueueLifetime,
		Lease:         n.cfg.DeliveryLease,
		Poll:          n.cfg.DeliveryPoll,
		Hostname:      n.cfg.Hostname,
		OnOutcome:     n.metrics.Delivery,
		Log:           n.msglog.Append,
		OnDomainState: func(string, bool) { n.wakeAlerts() },
		Logger:        n.logger.With("part", "delivery"),
	})
}
