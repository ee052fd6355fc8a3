package msglog

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/hashicorp/go-msgpack/v2/codec"
	bolt "go.etcd.io/bbolt"
)

// Query selects entries, newest first. Empty fields match everything.
type Query struct {
	// ID matches a queue ID or a Message-ID.
	ID        string `codec:"id"`
	Sender    string `codec:"f"`
	Recipient string `codec:"r"`
	Status    string `codec:"s"`
	// Since and Until bound the time (unix nanoseconds, inclusive, 0 = open).
	Since int64 `codec:"a"`
	Until int64 `codec:"b"`
	// Domains, when set, limits entries to those touching one of them:
	// an organisation's view.
	Domains []string `codec:"d"`
	// Before is the cursor: only entries strictly older than it.
	Before Cursor `codec:"c"`
	Limit  int    `codec:"l"`
}

// Cursor orders entries across nodes: time, then node, then sequence.
type Cursor struct {
	At   int64  `codec:"t"`
	Node string `codec:"n"`
	Seq  uint32 `codec:"s"`
}

// Zero reports an unset cursor.
func (c Cursor) Zero() bool { return c.At == 0 && c.Node == "" && c.Seq == 0 }

// Less orders entries newest first.
func Less(a, b *Entry) bool {
	if a.At != b.At {
		return a.At > b.At
	}
	if a.Node != b.Node {
		return a.Node > b.Node
	}
	return a.Seq > b.Seq
}

// CursorOf is the cursor that continues after e.
func CursorOf(e *Entry) Cursor { return Cursor{At: e.At, Node: e.Node, Seq: e.Seq} }

func (c Cursor) after(e *Entry) bool {
	// true when e comes after the cursor in newest-first order.
	ce := Entry{At: c.At, Node: c.Node, Seq: c.Seq}
	return Less(&ce, e)
}

func (q *Query) match(e *Entry) bool {
	if q.Since != 0 && e.At < q.Since || q.Until != 0 && e.At > q.Until {
		return false
	}
	if !q.Before.Zero() && !q.Before.after(e) {
		return false
	}
	if q.Status != "" && !strings.EqualFold(e.Status, q.Status) {
		return false
	}
	if q.ID != "" && !strings.EqualFold(e.QueueID, q.ID) && !strings.EqualFold(strings.Trim(e.MessageID, "<>"), strings.Trim(q.ID, "<>")) {
		return false
	}
	if q.Sender != "" && !strings.EqualFold(e.From, q.Sender) {
		return false
	}
	if q.Recipient != "" && !hasFold(e.To, q.Recipient) {
		return false
	}
	if len(q.Domains) > 0 {
		ok := false
		for _, d := range e.Domains() {
			if hasFold(q.Domains, d) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func hasFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// Search runs a query on this node's log. It walks the most selective
// index it can, newest first, and checks the rest of the query on each
// entry, so a search by ID or address reads only that address's entries.
func (l *Log) Search(q Query) ([]Entry, error) {
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 100
	}
	var out []Entry
	err := l.db.View(func(tx *bolt.Tx) error {
		entries := tx.Bucket(bEntries)
		visit := func(k []byte) (bool, error) {
			v := entries.Get(k)
			if v == nil {
				return true, nil
			}
			var e Entry
			if err := codec.NewDecoderBytes(v, &codec.MsgpackHandle{}).Decode(&e); err != nil {
				return false, err
			}
			if q.match(&e) {
				out = append(out, e)
			}
			return len(out) < q.Limit, nil
		}
		var idx []byte
		var vals []string
		switch {
		case q.ID != "":
			// A queue ID or a Message-ID: look in both indexes.
			return l.walkIDs(tx, q, visit)
		case q.Recipient != "":
			idx, vals = bAddr, []string{q.Recipient}
		case q.Sender != "":
			idx, vals = bAddr, []string{q.Sender}
		case len(q.Domains) > 0:
			idx, vals = bDomain, q.Domains
		case q.Status != "":
			idx, vals = bStatus, []string{q.Status}
		}
		if idx == nil {
			return walkTime(entries, q, visit)
		}
		if len(vals) == 1 {
			return walkIndex(tx.Bucket(idx), vals[0], q, visit)
		}
		return walkIndexes(tx.Bucket(idx), vals, q, visit)
	})
	return out, err
}

// walkIndexes walks several values of one index at once, newest first,
// merging their cursors so a page costs about a page of reads whatever
// the number of values (an organisation with many domains).
func walkIndexes(b *bolt.Bucket, vals []string, q Query, visit func([]byte) (bool, error)) error {
	type head struct {
		c      *bolt.Cursor
		prefix []byte
		key    []byte // entry key under the cursor, nil when done
	}
	entryKey := func(h *head, k []byte) []byte {
		if k == nil || !bytes.HasPrefix(k, h.prefix) || len(k) != len(h.prefix)+12 {
			return nil
		}
		return k[len(h.prefix):]
	}
	var heads []*head
	for _, v := range vals {
		h := &head{c: b.Cursor(), prefix: append([]byte(strings.ToLower(v)), 0)}
		seek := append(append([]byte(nil), h.prefix...), startKey(q)...)
		k, _ := h.c.Seek(seek)
		if k == nil {
			k, _ = h.c.Last()
		} else if bytes.Compare(k, seek) > 0 {
			k, _ = h.c.Prev()
		}
		h.key = entryKey(h, k)
		heads = append(heads, h)
	}
	var last []byte
	for {
		var best *head
		for _, h := range heads {
			if h.key != nil && (best == nil || bytes.Compare(h.key, best.key) > 0) {
				best = h
			}
		}
		if best == nil {
			return nil
		}
		k := best.key
		nk, _ := best.c.Prev()
		best.key = entryKey(best, nk)
		if q.Since != 0 && int64(binary.BigEndian.Uint64(k)) < q.Since {
			best.key = nil
			continue
		}
		if bytes.Equal(k, last) {
			continue
		}
		last = k
		more, err := visit(k)
		if err != nil || !more {
			return err
		}
	}
}

func (l *Log) walkIDs(tx *bolt.Tx, q Query, visit func([]byte) (bool, error)) error {
	var keys [][]byte
	for _, b := range [][]byte{bQueue, bMsgID} {
		walkIndex(tx.Bucket(b), strings.Trim(q.ID, "<>"), q, func(k []byte) (bool, error) {
			keys = append(keys, append([]byte(nil), k...))
			return true, nil
		})
	}
	sortKeysDesc(keys)
	for _, k := range keys {
		more, err := visit(k)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// startKey is where a newest-first walk begins: just past Until or the
// cursor's time.
func startKey(q Query) []byte {
	until := uint64(1<<63 - 1)
	if q.Until != 0 {
		until = uint64(q.Until)
	}
	if !q.Before.Zero() && uint64(q.Before.At) < until {
		until = uint64(q.Before.At)
	}
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, until)
	binary.BigEndian.PutUint32(k[8:], 1<<32-1)
	return k
}

func walkTime(b *bolt.Bucket, q Query, visit func([]byte) (bool, error)) error {
	c := b.Cursor()
	start := startKey(q)
	k, _ := c.Seek(start)
	if k == nil {
		k, _ = c.Last()
	} else if bytes.Compare(k, start) > 0 {
		k, _ = c.Prev()
	}
	for ; k != nil; k, _ = c.Prev() {
		if q.Since != 0 && int64(binary.BigEndian.Uint64(k)) < q.Since {
			return nil
		}
		more, err := visit(k)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

func walkIndex(b *bolt.Bucket, val string, q Query, visit func([]byte) (bool, error)) error {
	prefix := append([]byte(strings.ToLower(val)), 0)
	c := b.Cursor()
	seek := append(append([]byte(nil), prefix...), startKey(q)...)
	k, _ := c.Seek(seek)
	if k == nil {
		k, _ = c.Last()
	} else if bytes.Compare(k, seek) > 0 {
		k, _ = c.Prev()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
		ek := k[len(prefix):]
		if len(ek) != 12 {
			continue
		}
		if q.Since != 0 && int64(binary.BigEndian.Uint64(ek)) < q.Since {
			return nil
		}
		more, err := visit(ek)
		if err != nil || !more {
			return err
		}
	}
	return nil
}
