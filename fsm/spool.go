package fsm

import (
	"bytes"
	"encoding/binary"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// The spool holds every accepted message until each of its recipients is
// delivered or has failed: the message and its recipients' states, the
// due index that orders recipients by their next attempt, and a count of
// the messages that reference each body. A finished message retires into
// a short record, kept for a bounded time.

// Recipient is one envelope recipient with its RFC 3461 parameters.
type Recipient struct {
	Address string   `codec:"a"`
	Domain  string   `codec:"d"`
	Notify  []string `codec:"n,omitempty"`
	ORCPT   string   `codec:"o,omitempty"`
}

// SpoolAdd commits an accepted message. The body is already durable on a
// quorum under BlobHash; the log carries only the envelope.
type SpoolAdd struct {
	ID         string      `codec:"id"`
	From       string      `codec:"f"`
	Recipients []Recipient `codec:"r"`
	Ret        string      `codec:"ret,omitempty"`
	EnvID      string      `codec:"env,omitempty"`
	Body       string      `codec:"b,omitempty"`
	SMTPUTF8   bool        `codec:"u,omitempty"`
	Helo       string      `codec:"h,omitempty"`
	RemoteAddr string      `codec:"ra,omitempty"`
	TLS        bool        `codec:"tls,omitempty"`
	Node       string      `codec:"node,omitempty"`
	BlobHash   string      `codec:"blob"`
	Size       int64       `codec:"sz"`
	ReceivedAt int64       `codec:"at"` // unix nanoseconds
}

// SpoolAddSummary is a SpoolAdd with the header summary the inbox lists.
// It is a separate type because it is a changed shape (docs/design.md §3.3).
type SpoolAddSummary struct {
	Add     SpoolAdd     `codec:"a"`
	Summary InboxSummary `codec:"s"`
}

// Recipient states.
const (
	StateQueued    = "queued"
	StateDelivered = "delivered"
	StateFailed    = "failed"
)

// RecipientState is a recipient and where its delivery stands.
type RecipientState struct {
	Recipient
	State       string `codec:"s"`
	Attempts    int    `codec:"at,omitempty"`
	NextAttempt int64  `codec:"na,omitempty"`
	LastAttempt int64  `codec:"la,omitempty"`
	LastReply   string `codec:"lr,omitempty"`
	RemoteMTA   string `codec:"rm,omitempty"`
	// DelayNotified records that the one delayed DSN went out.
	DelayNotified bool `codec:"dn,omitempty"`
	// History holds the latest attempts, oldest first.
	History []AttemptRecord `codec:"hi,omitempty"`
}

// Done reports whether the recipient needs no more attempts.
func (r *RecipientState) Done() bool {
	return r.State == StateDelivered || r.State == StateFailed
}

// Message is a spooled message: the envelope of its SpoolAdd plus the state
// of each recipient.
type Message struct {
	ID         string           `codec:"id"`
	From       string           `codec:"f"`
	Recipients []RecipientState `codec:"r"`
	Ret        string           `codec:"ret,omitempty"`
	EnvID      string           `codec:"env,omitempty"`
	Body       string           `codec:"b,omitempty"`
	SMTPUTF8   bool             `codec:"u,omitempty"`
	Helo       string           `codec:"h,omitempty"`
	RemoteAddr string           `codec:"ra,omitempty"`
	TLS        bool             `codec:"tls,omitempty"`
	Node       string           `codec:"node,omitempty"`
	BlobHash   string           `codec:"blob"`
	Size       int64            `codec:"sz"`
	ReceivedAt int64            `codec:"at"`
	// Held messages get no attempts until released.
	Held bool `codec:"held,omitempty"`
	// Bounce asks the leader to return the message to its sender.
	Bounce bool `codec:"bounce,omitempty"`
}

// Retired is the short record kept after a message leaves the spool.
type Retired struct {
	ID         string           `codec:"id"`
	From       string           `codec:"f"`
	Recipients []RecipientState `codec:"r"`
	Size       int64            `codec:"sz"`
	ReceivedAt int64            `codec:"at"`
	RetiredAt  int64            `codec:"rt"`
	// Reason is "delivered", "failed", "deleted" or a mix per recipient.
	Reason string `codec:"why"`
}

// RetiredKeep bounds the message log of retired messages: records older
// than this, counted from the newest retirement, are pruned as new ones
// arrive, so the store stays bounded.
const RetiredKeep = int64(7 * 24 * 3600 * 1e9)

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

func applySpoolAdd(tx *bolt.Tx, c *SpoolAdd) error {
	return addToSpool(tx, c, InboxSummary{})
}

func applySpoolAddSummary(tx *bolt.Tx, c *SpoolAddSummary) error {
	return addToSpool(tx, &c.Add, c.Summary)
}

// addToSpool queues a message and indexes it in the Emergency Inbox of
// each recipient with sum, what the inbox lists of it.
func addToSpool(tx *bolt.Tx, c *SpoolAdd, sum InboxSummary) error {
	if c.ID == "" || c.BlobHash == "" || len(c.Recipients) == 0 {
		return &ValidationError{Msg: "spool entry needs an ID, a blob and a recipient"}
	}
	msgs := tx.Bucket(bucketMessages)
	if msgs.Get([]byte(c.ID)) != nil {
		// A forwarded command retried after an unknown outcome: the first
		// one won, and the message is queued once.
		return nil
	}
	m := Message{
		ID: c.ID, From: c.From, Ret: c.Ret, EnvID: c.EnvID, Body: c.Body,
		SMTPUTF8: c.SMTPUTF8, Helo: c.Helo, RemoteAddr: c.RemoteAddr, TLS: c.TLS,
		Node: c.Node, BlobHash: c.BlobHash, Size: c.Size, ReceivedAt: c.ReceivedAt,
	}
	due := tx.Bucket(bucketDue)
	for i, r := range c.Recipients {
		m.Recipients = append(m.Recipients, RecipientState{Recipient: r, State: StateQueued, NextAttempt: c.ReceivedAt})
		if err := due.Put(dueKey(c.ReceivedAt, c.ID, i), nil); err != nil {
			return err
		}
	}
	v, err := encodeValue(&m)
	if err != nil {
		return err
	}
	if err := msgs.Put([]byte(c.ID), v); err != nil {
		return err
	}
	if err := indexAdd(tx, &m, sum); err != nil {
		return err
	}
	return addBlobRef(tx, c.BlobHash, 1)
}

// addBlobRef counts the messages that reference a body, so identical bodies
// share one blob and it is dropped only when the last reference retires.
func addBlobRef(tx *bolt.Tx, hash string, delta int64) error {
	b := tx.Bucket(bucketBlobRefs)
	var n int64
	if v := b.Get([]byte(hash)); len(v) == 8 {
		n = int64(beUint64(v))
	}
	n += delta
	if n <= 0 {
		return b.Delete([]byte(hash))
	}
	return putUint64(b, []byte(hash), uint64(n))
}

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

// Message returns one spooled message.
func (s *Store) Message(id string) (m Message, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMessages).Get([]byte(id))
		if v == nil {
			return nil
		}
		ok = true
		return decodeValue(v, &m)
	})
	return m, ok, err
}

// MessageFilter narrows a queue listing. Empty fields match everything;
// matches are case-insensitive substrings, like `postqueue -p | grep`.
type MessageFilter struct {
	Domain    string
	Sender    string
	Recipient string
	// State is "held", "deferred" (tried and not done), "new" (not tried
	// yet) or "" for any.
	State string
	// ReceivedBefore and ReceivedAfter bound the arrival time (unix
	// nanoseconds); zero means no bound.
	ReceivedBefore int64
	ReceivedAfter  int64
}

// ValidState reports whether s is a state a filter understands.
func ValidState(s string) bool {
	return s == "" || s == "held" || s == "deferred" || s == "new"
}

func (f MessageFilter) matchState(m *Message) bool {
	tried := false
	for _, r := range m.Recipients {
		if !r.Done() && r.Attempts > 0 {
			tried = true
		}
	}
	switch f.State {
	case "held":
		return m.Held
	case "deferred":
		return !m.Held && tried
	case "new":
		return !m.Held && !tried
	}
	return true
}

func (f MessageFilter) match(m *Message) bool {
	if f.ReceivedBefore != 0 && m.ReceivedAt >= f.ReceivedBefore {
		return false
	}
	if f.ReceivedAfter != 0 && m.ReceivedAt <= f.ReceivedAfter {
		return false
	}
	if !f.matchState(m) {
		return false
	}
	if f.Sender != "" && !strings.Contains(strings.ToLower(m.From), strings.ToLower(f.Sender)) {
		return false
	}
	if f.Domain == "" && f.Recipient == "" {
		return true
	}
	for _, r := range m.Recipients {
		if f.Domain != "" && r.Domain != strings.ToLower(f.Domain) {
			continue
		}
		if f.Recipient != "" && !strings.Contains(strings.ToLower(r.Address), strings.ToLower(f.Recipient)) {
			continue
		}
		return true
	}
	return false
}

// Messages lists spooled messages in queue-ID order, starting after the ID
// `after`, at most limit of them. next is the cursor for the following
// page, or "" at the end.
func (s *Store) Messages(f MessageFilter, after string, limit int) (out []Message, next string, err error) {
	if limit <= 0 {
		limit = 100
	}
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		var k, v []byte
		if after == "" {
			k, v = c.First()
		} else {
			k, v = c.Seek([]byte(after))
			if k != nil && bytes.Equal(k, []byte(after)) {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			var m Message
			if err := decodeValue(v, &m); err != nil {
				return err
			}
			if !f.match(&m) {
				continue
			}
			if len(out) == limit {
				next = out[len(out)-1].ID
				return nil
			}
			out = append(out, m)
		}
		return nil
	})
	return out, next, err
}

// MessagesIn is Messages limited to messages with a recipient in one of
// domains: an organisation's share of the queue. No domains, no messages.
func (s *Store) MessagesIn(domains []string, f MessageFilter, after string, limit int) (out []Message, next string, err error) {
	if len(domains) == 0 {
		return nil, "", nil
	}
	if limit <= 0 {
		limit = 100
	}
	in := map[string]bool{}
	for _, d := range domains {
		in[strings.ToLower(d)] = true
	}
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		var k, v []byte
		if after == "" {
			k, v = c.First()
		} else {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			var m Message
			if err := decodeValue(v, &m); err != nil {
				return err
			}
			mine := false
			for _, r := range m.Recipients {
				if in[r.Domain] {
					mine = true
					break
				}
			}
			if !mine || !f.match(&m) {
				continue
			}
			if len(out) == limit {
				next = out[len(out)-1].ID
				return nil
			}
			out = append(out, m)
		}
		return nil
	})
	return out, next, err
}

// QueueStats summarises the spool.
type QueueStats struct {
	Messages       int              `json:"messages"`
	Bytes          int64            `json:"bytes"`
	OldestReceived int64            `json:"oldest_received_unix_nano,omitempty"`
	ByDomain       map[string]int64 `json:"by_domain"`
}

// Stats counts the spool. It walks the messages bucket; callers that poll
// it often should cache the result.
func (s *Store) Stats() (QueueStats, error) {
	st := QueueStats{ByDomain: map[string]int64{}}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMessages).ForEach(func(_, v []byte) error {
			var m Message
			if err := decodeValue(v, &m); err != nil {
				return err
			}
			st.Messages++
			st.Bytes += m.Size
			if st.OldestReceived == 0 || m.ReceivedAt < st.OldestReceived {
				st.OldestReceived = m.ReceivedAt
			}
			seen := map[string]bool{}
			for _, r := range m.Recipients {
				if r.State == StateQueued && !seen[r.Domain] {
					seen[r.Domain] = true
					st.ByDomain[r.Domain]++
				}
			}
			return nil
		})
	})
	return st, err
}

// BlobReferenced reports whether any spooled message references hash.
func (s *Store) BlobReferenced(hash string) (bool, error) {
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketBlobRefs).Get([]byte(hash)) != nil
		return nil
	})
	return ok, err
}

// DueEntry is one recipient waiting for a delivery attempt.
type DueEntry struct {
	At        int64
	MessageID string
	Recipient int
}

// Due returns up to limit recipients whose next attempt is at or before
// now, oldest first, read from the due index.
func (s *Store) Due(now int64, limit int) ([]DueEntry, error) {
	var out []DueEntry
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDue).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			at, id, rcpt, ok := parseDueKey(k)
			if !ok {
				continue
			}
			if at > now {
				break
			}
			out = append(out, DueEntry{At: at, MessageID: id, Recipient: rcpt})
		}
		return nil
	})
	return out, err
}

// RetiredMessages returns up to limit records of retired messages, newest
// first.
func (s *Store) RetiredMessages(limit int) ([]Retired, error) {
	var out []Retired
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRetired).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var r Retired
			if err := decodeValue(v, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// LastRetry is the time of the latest operator retry or release, in unix
// nanoseconds.
func (s *Store) LastRetry() int64 {
	var v int64
	_ = s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(keyLastRetry); len(b) == 8 {
			v = int64(beUint64(b))
		}
		return nil
	})
	return v
}
