package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"lifeline/cluster"
	"lifeline/fsm"
	"lifeline/node/mailparse"
)

// PutBlob stores r as a blob and waits until a quorum holds it, so a draft
// attachment survives the loss of this node like a spooled body does.
func (n *Node) PutBlob(ctx context.Context, r io.Reader) (string, int64, error) {
	hash, size, err := n.cluster.StoreBlob(ctx, r, n.cfg.MaxMessageSize)
	if errors.Is(err, cluster.ErrBlobTooLarge) {
		return "", 0, errors.New("file larger than the message size limit")
	}
	return hash, size, err
}

// SendMail queues a message written in the Emergency Inbox. It takes the
// same path as received mail (docs/design.md §1.10): a recipient in a protected
// domain is spooled for that domain's server and shows in that person's
// Emergency Inbox; any other goes out by the transport map or MX.
func (n *Node) SendMail(ctx context.Context, from string, rcpts []string, body []byte) (string, error) {
	if int64(len(body)) > n.cfg.MaxMessageSize {
		return "", errors.New("message larger than the size limit")
	}
	now := n.cfg.Now()
	cmd := &fsm.SpoolAdd{ID: newQueueID(now), From: from, ReceivedAt: now.UnixNano(), SMTPUTF8: !isASCII(from)}
	for _, r := range rcpts {
		at := strings.LastIndexByte(r, '@')
		if at < 1 {
			return "", errors.New("not an address: " + r)
		}
		cmd.Recipients = append(cmd.Recipients, fsm.Recipient{Address: r, Domain: strings.ToLower(r[at+1:])})
		if !isASCII(r) {
			cmd.SMTPUTF8 = true
		}
	}
	if err := n.spool(ctx, cmd, body); err != nil {
		return "", err
	}
	n.wakeDelivery()
	return cmd.ID, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// MailHostname names this cluster in Message-IDs.
func (n *Node) MailHostname() string { return n.cfg.Hostname }

// summarize reads the header of a stored body for the inbox index.
func (n *Node) summarize(hash string) fsm.InboxSummary {
	f, err := n.blobs.Open(hash)
	if err != nil {
		return fsm.InboxSummary{}
	}
	defer f.Close()
	return mailparse.Summarize(f)
}

func summarizeBytes(body []byte) fsm.InboxSummary {
	return mailparse.Summarize(bytes.NewReader(body))
}

// ApplyVisible commits cmd and returns once this node's state shows the
// commit, so the page a user is redirected to after a post (a new draft, a
// session) reads its own write even on a follower. A follower learns the
// leader's commit index with the next append or heartbeat; the wait is
// bounded, and at worst the next page is a heartbeat stale.
func (n *Node) ApplyVisible(ctx context.Context, cmd any) error {
	before := n.store.AppliedIndex()
	if err := n.Apply(ctx, cmd); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st := n.cluster.Status()
		if st.State == "Leader" {
			return nil
		}
		applied := n.store.AppliedIndex()
		if applied > before && applied >= st.CommitIndex {
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}
