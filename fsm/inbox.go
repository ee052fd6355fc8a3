package fsm

import (
	"bytes"
	"encoding/binary"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// The Emergency Inbox of a user is the set of spooled messages that still
// have a not-yet-done recipient equal to the user's address. The inbox
// index keeps that set sorted by arrival per address, so the first page of
// a user with 50,000 spooled messages is one cursor seek and a few dozen
// reads, never a scan of the spool. Apply maintains it on SpoolAdd, when a
// recipient is done, and when a message retires.

// InboxSummary is what the inbox list shows of a message, taken from its
// header by the node that accepted it, so listing and searching by sender
// and subject need no body.
type InboxSummary struct {
	From       string `codec:"f,omitempty"`
	Subject    string `codec:"s,omitempty"`
	Attachment bool   `codec:"a,omitempty"`
	// Size and ReceivedAt repeat the message's, so a page needs only
	// the index.
	Size       int64  `codec:"sz,omitempty"`
	ReceivedAt int64  `codec:"at,omitempty"`
	ID         string `codec:"id,omitempty"`
}

// Limits on summary fields keep SpoolAddSummary commands small whatever
// the header held.
const (
	MaxSummaryFrom    = 256
	MaxSummarySubject = 512
)

// MarkRead sets or clears the read state of messages in one inbox.
type MarkRead struct {
	Address string   `codec:"e"`
	IDs     []string `codec:"ids"`
	Read    bool     `codec:"r"`
}

// InboxAddress is how an address is kept in the inbox index: lower case,
// as user logins are.
func InboxAddress(addr string) string { return strings.ToLower(addr) }

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

func indexAdd(tx *bolt.Tx, m *Message, sum InboxSummary) error {
	sum.From = truncateUTF8(sum.From, MaxSummaryFrom)
	sum.Subject = truncateUTF8(sum.Subject, MaxSummarySubject)
	sum.Size, sum.ReceivedAt, sum.ID = m.Size, m.ReceivedAt, m.ID
	v, err := encodeValue(&sum)
	if err != nil {
		return err
	}
	b := tx.Bucket(bucketInbox)
	seen := map[string]bool{}
	for _, r := range m.Recipients {
		a := InboxAddress(r.Address)
		if seen[a] || r.Done() {
			continue
		}
		seen[a] = true
		if err := b.Put(inboxKey(a, m.ReceivedAt, m.ID), v); err != nil {
			return err
		}
		if err := addInboxCount(tx, a, 1); err != nil {
			return err
		}
	}
	return nil
}

func addInboxCount(tx *bolt.Tx, addr string, delta int64) error {
	b := tx.Bucket(bucketInboxCount)
	var n int64
	if v := b.Get([]byte(addr)); len(v) == 8 {
		n = int64(beUint64(v))
	}
	n += delta
	if n <= 0 {
		return b.Delete([]byte(addr))
	}
	return putUint64(b, []byte(addr), uint64(n))
}

// indexDrop removes m from the inbox of every address whose recipients in
// m are all done (all of them when all is set: the message retires).
func indexDrop(tx *bolt.Tx, m *Message, all bool) error {
	pending := map[string]bool{}
	if !all {
		for _, r := range m.Recipients {
			if !r.Done() {
				pending[InboxAddress(r.Address)] = true
			}
		}
	}
	b := tx.Bucket(bucketInbox)
	done := map[string]bool{}
	for _, r := range m.Recipients {
		a := InboxAddress(r.Address)
		if pending[a] || done[a] {
			continue
		}
		done[a] = true
		k := inboxKey(a, m.ReceivedAt, m.ID)
		if b.Get(k) == nil {
			continue
		}
		if err := b.Delete(k); err != nil {
			return err
		}
		if err := addInboxCount(tx, a, -1); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSeen).Delete(seenKey(a, m.ID)); err != nil {
			return err
		}
	}
	return nil
}

func applyMarkRead(tx *bolt.Tx, c *MarkRead) error {
	b := tx.Bucket(bucketSeen)
	for _, id := range c.IDs {
		m, err := getMessage(tx, id)
		if err != nil {
			return err
		}
		// Only a message in this inbox gets a read mark; otherwise the
		// mark would outlive the message.
		if m == nil || tx.Bucket(bucketInbox).Get(inboxKey(c.Address, m.ReceivedAt, m.ID)) == nil {
			return &ValidationError{Msg: "no such message in this inbox: " + id}
		}
		if c.Read {
			err = b.Put(seenKey(c.Address, id), nil)
		} else {
			err = b.Delete(seenKey(c.Address, id))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// InboxItem is one line of an inbox listing.
type InboxItem struct {
	InboxSummary
	Read bool
}

// InboxCursor marks a place in an inbox: the arrival time and ID of the
// last item of the previous page.
type InboxCursor struct {
	At int64
	ID string
}

// InboxPage returns up to limit messages of addr, newest first, older than
// the cursor (the newest when it is zero). match, when set, filters items
// (a search); scanned bounds how many index entries one call reads, and
// next says where to continue. total is the size of the whole inbox.
func (s *Store) InboxPage(addr string, before InboxCursor, limit, maxScan int, match func(*InboxItem) bool) (items []InboxItem, next InboxCursor, total int, err error) {
	addr = InboxAddress(addr)
	if maxScan <= 0 {
		maxScan = 1 << 30
	}
	err = s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketInboxCount).Get([]byte(addr)); len(v) == 8 {
			total = int(beUint64(v))
		}
		prefix := inboxPrefix(addr)
		seen := tx.Bucket(bucketSeen)
		c := tx.Bucket(bucketInbox).Cursor()
		var k, v []byte
		if before.At == 0 && before.ID == "" {
			// Seek just past the last key with this prefix.
			end := append(append([]byte(nil), prefix[:len(prefix)-1]...), 1)
			k, v = c.Seek(end)
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		} else {
			k, v = c.Seek(inboxKey(addr, before.At, before.ID))
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		for scanned := 0; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
			if scanned >= maxScan || len(items) == limit {
				next = cursorOf(k, prefix)
				if len(items) == limit && len(items) > 0 {
					last := items[len(items)-1]
					next = InboxCursor{At: last.ReceivedAt, ID: last.ID}
				}
				return nil
			}
			scanned++
			var it InboxItem
			if err := decodeValue(v, &it.InboxSummary); err != nil {
				return err
			}
			if it.ID == "" {
				// Indexed from a plain SpoolAdd: the key holds the rest.
				cur := cursorOf(k, prefix)
				it.ID, it.ReceivedAt = cur.ID, cur.At
			}
			it.Read = seen.Get(seenKey(addr, it.ID)) != nil
			if match != nil && !match(&it) {
				continue
			}
			items = append(items, it)
		}
		return nil
	})
	return items, next, total, err
}

// cursorOf returns the cursor just above key k, so a page continuing from
// it starts at k itself.
func cursorOf(k, prefix []byte) InboxCursor {
	rest := k[len(prefix):]
	if len(rest) < 8 {
		return InboxCursor{}
	}
	at := int64(binary.BigEndian.Uint64(rest))
	// Seek lands on the key and Prev steps below it; make the cursor the
	// smallest key above k by appending a zero byte to the ID.
	return InboxCursor{At: at, ID: string(rest[8:]) + "\x00"}
}

// InboxHas reports whether message id is in addr's inbox.
func (s *Store) InboxHas(addr, id string) (bool, error) {
	addr = InboxAddress(addr)
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		m, err := getMessage(tx, id)
		if err != nil || m == nil {
			return err
		}
		ok = tx.Bucket(bucketInbox).Get(inboxKey(addr, m.ReceivedAt, m.ID)) != nil
		return nil
	})
	return ok, err
}

// InboxRead reports whether id is marked read in addr's inbox.
func (s *Store) InboxRead(addr, id string) bool {
	var ok bool
	_ = s.view(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketSeen).Get(seenKey(InboxAddress(addr), id)) != nil
		return nil
	})
	return ok
}

// InboxCount is how many messages addr's inbox holds.
func (s *Store) InboxCount(addr string) int {
	var n int
	_ = s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketInboxCount).Get([]byte(InboxAddress(addr))); len(v) == 8 {
			n = int(beUint64(v))
		}
		return nil
	})
	return n
}
