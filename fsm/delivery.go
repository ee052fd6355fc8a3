package fsm

import bolt "go.etcd.io/bbolt"

// The leader's delivery engine records each attempt in two commands: one
// before it dials (AttemptStart) and one with what the attempt achieved
// (AttemptResult). Between them, a new leader knows an attempt may have
// happened, and delivery stays at least once (docs/design.md §3.7).

// Outcomes of one delivery attempt for one recipient.
const (
	OutcomeDelivered = "delivered"
	OutcomeDeferred  = "deferred"
	OutcomeFailed    = "failed"
)

// AttemptStart is written by the leader before it dials, so a new leader
// knows an attempt was under way (docs/design.md §3.7). The recipients' next
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

// NoticeAdd queues a delay notice and marks its message's recipients as
// notified in one entry.
//
// Found by the fault campaign (e2e/chaos_test.go, seed 36453333): the
// notice (a SpoolAdd) and the mark (DelayNotified) were two entries. A
// leader that queued the notice and lost leadership before the mark
// committed left the message unmarked; the notice was delivered and
// retired meanwhile, so when the message was deferred again, the next
// leader queued the same notice ID anew and the sender got it twice.
// Committed together, the mark and the notice exist both or neither, and
// a notice for recipients already marked is not queued again.
type NoticeAdd struct {
	Add      SpoolAddSummary `codec:"a"`
	Notified DelayNotified   `codec:"n"`
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

func applyNoticeAdd(tx *bolt.Tx, c *NoticeAdd) error {
	m, err := getMessage(tx, c.Notified.ID)
	if err != nil {
		return err
	}
	if m != nil {
		pending := false
		for _, i := range c.Notified.Recipients {
			if i >= 0 && i < len(m.Recipients) && !m.Recipients[i].DelayNotified {
				pending = true
			}
		}
		if !pending {
			return nil
		}
	}
	if err := applyDelayNotified(tx, &c.Notified); err != nil {
		return err
	}
	return applySpoolAddSummary(tx, &c.Add)
}
