package fsm

import (
	"bytes"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// AdminTokenHash returns the stored hash of the operator token, or "".
func (s *Store) AdminTokenHash() (string, error) {
	var h string
	err := s.view(func(tx *bolt.Tx) error {
		h = string(tx.Bucket(bucketMeta).Get(keyAdminToken))
		return nil
	})
	return h, err
}

// Domain returns the named domain; ok is false when it is not protected.
// name must already be lower case.
func (s *Store) Domain(name string) (d Domain, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDomains).Get([]byte(name))
		if v == nil {
			return nil
		}
		ok = true
		return decodeValue(v, &d)
	})
	return d, ok, err
}

// Domains lists every protected domain in name order.
func (s *Store) Domains() ([]Domain, error) {
	var out []Domain
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDomains).ForEach(func(_, v []byte) error {
			var d Domain
			if err := decodeValue(v, &d); err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
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
