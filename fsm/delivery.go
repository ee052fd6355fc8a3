package fsm

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// Outcomes of one delivery attempt for one recipient.
const (
	OutcomeDelivered = "delivered"
	OutcomeDeferred  = "deferred"
	OutcomeFailed    = "failed"
)

// AttemptStart is written by the leader before it dials, so a new leader
// knows an attempt was under way (DESIGN.md §3.7). The recipients' next
// attempt moves to LeaseUntil: if no result arrives by then, the attempt is
// presumed lost and the recipient is due again.
type AttemptStart struct {
	Items      []AttemptItem `codec:"i"`
	At         int64         `codec:"t"`
	LeaseUntil int64         `codec:"l"`
}

// AttemptItem names the recipients of one message that an attempt covers.
// One command carries a whole connection's worth of messages, so marking
// attempts costs one commit per batch, not one per message.
type AttemptItem struct {
	ID         string `codec:"id"`
	Recipients []int  `codec:"r"`
}

// RecipientResult is the outcome of one attempt for one recipient.
type RecipientResult struct {
	Recipient int    `codec:"r"`
	Outcome   string `codec:"o"`
	Reply     string `codec:"rp,omitempty"`
	RemoteMTA string `codec:"m,omitempty"`
	// NextAttempt is decided by the leader, jitter included, for deferred
	// recipients.
	NextAttempt int64 `codec:"n,omitempty"`
	// Skipped: no connection was tried (the destination is known to be
	// down); the recipient is only rescheduled.
	Skipped bool `codec:"sk,omitempty"`
}

// AttemptRecord is one attempt in a recipient's history.
type AttemptRecord struct {
	At    int64  `codec:"t" json:"at"`
	Reply string `codec:"r" json:"reply"`
}

// MaxHistory bounds the attempts kept per recipient; a month of hourly
// retries would otherwise grow a message's record past any use.
const MaxHistory = 20

// AttemptResult records what an attempt achieved. A message whose
// recipients are all done retires in the same command.
type AttemptResult struct {
	Messages []MessageResult `codec:"m"`
	At       int64           `codec:"t"`
}

// MessageResult is the outcome for the recipients of one message.
type MessageResult struct {
	ID      string            `codec:"id"`
	Results []RecipientResult `codec:"rs"`
}

// DomainState marks a domain as spooling (its destination keeps failing)
// or delivering again.
type DomainState struct {
	Name      string `codec:"n"`
	Spooling  bool   `codec:"s"`
	At        int64  `codec:"t"`
	LastError string `codec:"e,omitempty"`
}

// DelayNotified records that the delayed DSN for these recipients has been
// queued, so it goes out once, even across a change of leader.
type DelayNotified struct {
	ID         string `codec:"id"`
	Recipients []int  `codec:"r"`
}

// Queue operations.
const (
	OpHold    = "hold"
	OpRelease = "release"
	OpRetry   = "retry"
	OpDelete  = "delete"
	// OpBounce deletes with a failure notice: the leader returns the
	// message to its sender, then retires it.
	OpBounce = "bounce"
)

// QueueOp is an operator action on messages. With no IDs, retry applies
// to every queued message (postqueue -f).
type QueueOp struct {
	Op  string   `codec:"op"`
	IDs []string `codec:"ids,omitempty"`
	// Domain narrows a retry of every message to the recipients of one
	// domain: how a spool drains once its destination answers again.
	Domain string `codec:"d,omitempty"`
	At     int64  `codec:"t"`
	// Lenient skips IDs that left the queue meanwhile instead of refusing
	// the whole command: a flush of a large spool goes in chunks of IDs,
	// and a message may retire between listing and applying.
	Lenient bool `codec:"len,omitempty"`
}

// RetiredKeep bounds the message log of retired messages: records older
// than this, counted from the newest retirement, are pruned as new ones
// arrive, so the store stays bounded.
const RetiredKeep = int64(7 * 24 * 3600 * 1e9)

func getMessage(tx *bolt.Tx, id string) (*Message, error) {
	v := tx.Bucket(bucketMessages).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var m Message
	if err := decodeValue(v, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func putMessage(tx *bolt.Tx, m *Message) error {
	v, err := encodeValue(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMessages).Put([]byte(m.ID), v)
}

// setNext moves a recipient in the due index.
func setNext(tx *bolt.Tx, m *Message, i int, next int64) error {
	due := tx.Bucket(bucketDue)
	r := &m.Recipients[i]
	if !r.Done() && !m.Held {
		if err := due.Delete(dueKey(r.NextAttempt, m.ID, i)); err != nil {
			return err
		}
	}
	r.NextAttempt = next
	if next == 0 || r.Done() || m.Held {
		return nil
	}
	return due.Put(dueKey(next, m.ID, i), nil)
}

func applyAttemptStart(tx *bolt.Tx, c *AttemptStart) error {
	for _, it := range c.Items {
		if err := attemptStartOne(tx, it, c.At, c.LeaseUntil); err != nil {
			return err
		}
	}
	return nil
}

func attemptStartOne(tx *bolt.Tx, it AttemptItem, at, lease int64) error {
	m, err := getMessage(tx, it.ID)
	if err != nil || m == nil {
		return err
	}
	for _, i := range it.Recipients {
		if i < 0 || i >= len(m.Recipients) || m.Recipients[i].Done() {
			continue
		}
		m.Recipients[i].Attempts++
		m.Recipients[i].LastAttempt = at
		if err := setNext(tx, m, i, lease); err != nil {
			return err
		}
	}
	return putMessage(tx, m)
}

func applyAttemptResult(tx *bolt.Tx, c *AttemptResult) error {
	for _, mr := range c.Messages {
		if err := attemptResultOne(tx, mr, c.At); err != nil {
			return err
		}
	}
	return nil
}

func attemptResultOne(tx *bolt.Tx, mr MessageResult, at int64) error {
	m, err := getMessage(tx, mr.ID)
	if err != nil || m == nil {
		// Retired or deleted meanwhile: a late result changes nothing.
		return err
	}
	for _, res := range mr.Results {
		i := res.Recipient
		if i < 0 || i >= len(m.Recipients) || m.Recipients[i].Done() {
			continue
		}
		r := &m.Recipients[i]
		if !res.Skipped {
			r.LastReply = res.Reply
			r.RemoteMTA = res.RemoteMTA
			r.History = append(r.History, AttemptRecord{At: at, Reply: res.Reply})
			if len(r.History) > MaxHistory {
				r.History = append(r.History[:0:0], r.History[len(r.History)-MaxHistory:]...)
			}
		}
		switch res.Outcome {
		case OutcomeDelivered, OutcomeFailed:
			if err := setNext(tx, m, i, 0); err != nil {
				return err
			}
			r.State = res.Outcome
		case OutcomeDeferred:
			if err := setNext(tx, m, i, res.NextAttempt); err != nil {
				return err
			}
		default:
			return &ValidationError{Msg: "unknown outcome " + res.Outcome}
		}
	}
	for _, r := range m.Recipients {
		if !r.Done() {
			// Delivered to some: they leave their Emergency Inbox now.
			if err := indexDrop(tx, m, false); err != nil {
				return err
			}
			return putMessage(tx, m)
		}
	}
	return retire(tx, m, at, "")
}

// retire moves a finished message out of the spool into the bounded log of
// retired messages and drops its blob reference; each node's blob
// collector then removes the body.
func retire(tx *bolt.Tx, m *Message, at int64, reason string) error {
	if err := indexDrop(tx, m, true); err != nil {
		return err
	}
	due := tx.Bucket(bucketDue)
	for i := range m.Recipients {
		if !m.Recipients[i].Done() && !m.Held {
			if err := due.Delete(dueKey(m.Recipients[i].NextAttempt, m.ID, i)); err != nil {
				return err
			}
		}
	}
	if reason == "" {
		reason = OutcomeDelivered
		for _, r := range m.Recipients {
			if r.State == StateFailed {
				reason = OutcomeFailed
			}
		}
	}
	rec := Retired{ID: m.ID, From: m.From, Recipients: m.Recipients, Size: m.Size, ReceivedAt: m.ReceivedAt, RetiredAt: at, Reason: reason}
	v, err := encodeValue(&rec)
	if err != nil {
		return err
	}
	rb := tx.Bucket(bucketRetired)
	if err := rb.Put(retiredKey(at, m.ID), v); err != nil {
		return err
	}
	// Prune the oldest records; at most a few per command, so no single
	// apply has to walk a large log.
	var old [][]byte
	c := rb.Cursor()
	for k, _ := c.First(); k != nil && len(old) < 16; k, _ = c.Next() {
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) >= at-RetiredKeep {
			break
		}
		old = append(old, append([]byte(nil), k...))
	}
	for _, k := range old {
		if err := rb.Delete(k); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketMessages).Delete([]byte(m.ID)); err != nil {
		return err
	}
	return addBlobRef(tx, m.BlobHash, -1)
}

func applyDomainState(tx *bolt.Tx, c *DomainState) error {
	b := tx.Bucket(bucketDomains)
	v := b.Get([]byte(c.Name))
	if v == nil {
		return nil
	}
	var d Domain
	if err := decodeValue(v, &d); err != nil {
		return err
	}
	if c.Spooling && !d.Spooling {
		d.SpoolingSince = c.At
	}
	if !c.Spooling {
		d.SpoolingSince = 0
		d.LastDelivered = c.At
	}
	d.Spooling = c.Spooling
	d.LastError = c.LastError
	nv, err := encodeValue(&d)
	if err != nil {
		return err
	}
	return b.Put([]byte(c.Name), nv)
}

func applyDelayNotified(tx *bolt.Tx, c *DelayNotified) error {
	m, err := getMessage(tx, c.ID)
	if err != nil || m == nil {
		return err
	}
	for _, i := range c.Recipients {
		if i >= 0 && i < len(m.Recipients) {
			m.Recipients[i].DelayNotified = true
		}
	}
	return putMessage(tx, m)
}

func applyQueueOp(tx *bolt.Tx, c *QueueOp) error {
	if c.Op == OpRetry || c.Op == OpRelease {
		// The leader probes spooling destinations at once after an
		// operator asks for a retry, whichever node took the request.
		if err := putUint64(tx.Bucket(bucketMeta), keyLastRetry, uint64(c.At)); err != nil {
			return err
		}
	}
	ids := c.IDs
	if len(ids) == 0 {
		if c.Op != OpRetry {
			return &ValidationError{Msg: c.Op + " needs message IDs"}
		}
		err := tx.Bucket(bucketMessages).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, id := range ids {
		m, err := getMessage(tx, id)
		if err != nil {
			return err
		}
		if m == nil {
			if len(c.IDs) > 0 && !c.Lenient {
				return &ValidationError{Msg: "no such message: " + id}
			}
			continue
		}
		switch c.Op {
		case OpHold:
			if !m.Held {
				due := tx.Bucket(bucketDue)
				for i, r := range m.Recipients {
					if r.Done() {
						continue
					}
					if err := due.Delete(dueKey(r.NextAttempt, m.ID, i)); err != nil {
						return err
					}
				}
				m.Held = true
			}
		case OpRelease, OpRetry:
			if c.Op == OpRetry && m.Held {
				continue
			}
			if c.Domain != "" && !hasQueuedIn(m, c.Domain) {
				continue
			}
			wasHeld := m.Held
			m.Held = false
			for i := range m.Recipients {
				if m.Recipients[i].Done() {
					continue
				}
				if wasHeld {
					// Not in the index while held; put it back directly.
					m.Recipients[i].NextAttempt = c.At
					if err := tx.Bucket(bucketDue).Put(dueKey(c.At, m.ID, i), nil); err != nil {
						return err
					}
					continue
				}
				if err := setNext(tx, m, i, c.At); err != nil {
					return err
				}
			}
		case OpDelete:
			if err := retire(tx, m, c.At, "deleted"); err != nil {
				return err
			}
			continue
		case OpBounce:
			if m.Bounce {
				continue
			}
			m.Bounce = true
			m.Held = false
			for i := range m.Recipients {
				if m.Recipients[i].Done() {
					continue
				}
				if wasHeld(tx, m, i) {
					m.Recipients[i].NextAttempt = c.At
					if err := tx.Bucket(bucketDue).Put(dueKey(c.At, m.ID, i), nil); err != nil {
						return err
					}
					continue
				}
				if err := setNext(tx, m, i, c.At); err != nil {
					return err
				}
			}
		default:
			return &ValidationError{Msg: "unknown queue operation " + c.Op}
		}
		if err := putMessage(tx, m); err != nil {
			return err
		}
	}
	return nil
}

func hasQueuedIn(m *Message, domain string) bool {
	for _, r := range m.Recipients {
		if !r.Done() && r.Domain == domain {
			return true
		}
	}
	return false
}

// wasHeld reports whether recipient i is missing from the due index, as a
// held message's recipients are.
func wasHeld(tx *bolt.Tx, m *Message, i int) bool {
	return tx.Bucket(bucketDue).Get(dueKey(m.Recipients[i].NextAttempt, m.ID, i)) == nil
}
