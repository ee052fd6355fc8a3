// Package msglog is a node's message log: every SMTP transaction this node
// answered, every delivery attempt and notice it made, and every final
// state, kept on local disk with indexes for search and bounded by age and
// count. Each node logs what it did; a search asks every node and merges,
// the way an operator would grep the logs of every MX.
package msglog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	bolt "go.etcd.io/bbolt"
)

// Kinds of entries.
const (
	KindSMTP     = "smtp"
	KindDelivery = "delivery"
	KindNotice   = "notice"
	KindOperator = "operator"
)

// Entry is one logged event.
type Entry struct {
	At        int64    `codec:"t" json:"-"`
	Node      string   `codec:"n" json:"node"`
	Seq       uint32   `codec:"s" json:"-"`
	Kind      string   `codec:"k" json:"kind"`
	Status    string   `codec:"st" json:"status"`
	QueueID   string   `codec:"q,omitempty" json:"queue_id,omitempty"`
	MessageID string   `codec:"m,omitempty" json:"message_id,omitempty"`
	From      string   `codec:"f,omitempty" json:"from"`
	To        []string `codec:"to,omitempty" json:"to,omitempty"`
	Code      int      `codec:"c,omitempty" json:"code,omitempty"`
	Detail    string   `codec:"d,omitempty" json:"detail,omitempty"`
	Remote    string   `codec:"r,omitempty" json:"remote,omitempty"`
	Size      int64    `codec:"z,omitempty" json:"size,omitempty"`
}

// Time is when the event happened.
func (e *Entry) Time() time.Time { return time.Unix(0, e.At).UTC() }

// Domains are the lower-case domains of the sender and the recipients, by
// which an organisation's view is scoped.
func (e *Entry) Domains() []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range append([]string{e.From}, e.To...) {
		if d := domainOf(a); d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
}

var (
	bEntries = []byte("entries")
	bQueue   = []byte("by_queue_id")
	bMsgID   = []byte("by_message_id")
	bAddr    = []byte("by_address")
	bDomain  = []byte("by_domain")
	bStatus  = []byte("by_status")
)

func indexBuckets() [][]byte { return [][]byte{bQueue, bMsgID, bAddr, bDomain, bStatus} }

// Config bounds the log.
type Config struct {
	Path       string
	Node       string
	Retention  time.Duration
	MaxEntries int
	Logger     *slog.Logger
	Now        func() time.Time
}

// Log is one node's message log. Appends are buffered and written in
// batches by one goroutine, so logging never waits on the disk.
type Log struct {
	cfg  Config
	db   *bolt.DB
	in   chan Entry
	done chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	seq   uint32
	count atomic.Int64
}

// Open opens or creates the log.
func Open(cfg Config) (*Log, error) {
	if cfg.Retention == 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 5_000_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: 5 * time.Second, InitialMmapSize: 64 << 20, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("msglog: %w", err)
	}
	// A log is not a promise: losing the last moment of it in a power cut
	// is acceptable, and it must not compete with the spool for fsyncs.
	db.NoSync = true
	l := &Log{cfg: cfg, db: db, in: make(chan Entry, 4096), done: make(chan struct{})}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bEntries)
		if err != nil {
			return err
		}
		for _, name := range indexBuckets() {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		l.count.Store(int64(b.Stats().KeyN))
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	l.wg.Add(1)
	go l.writer()
	return l, nil
}

// Close flushes what is buffered and closes the file.
func (l *Log) Close() error {
	close(l.done)
	l.wg.Wait()
	l.db.Sync()
	return l.db.Close()
}

// Append logs an entry; it never blocks the caller for long. When the
// buffer is full (a flood of rejections) the entry is dropped and counted.
func (l *Log) Append(e Entry) {
	if e.At == 0 {
		e.At = l.cfg.Now().UnixNano()
	}
	e.Node = l.cfg.Node
	select {
	case l.in <- e:
	default:
		l.cfg.Logger.Warn("message log buffer full; entry dropped", "kind", e.Kind, "status", e.Status)
	}
}

func (l *Log) writer() {
	defer l.wg.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	var batch []Entry
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := l.write(batch); err != nil {
			l.cfg.Logger.Error("message log write failed", "err", err, "entries", len(batch))
		}
		batch = batch[:0]
	}
	for {
		select {
		case e := <-l.in:
			batch = append(batch, e)
			// Take whatever else is waiting, up to a sensible batch.
			for len(batch) < 1000 {
				select {
				case e := <-l.in:
					batch = append(batch, e)
					continue
				default:
				}
				break
			}
			flush()
		case <-t.C:
			l.db.Sync()
		case <-l.done:
			for {
				select {
				case e := <-l.in:
					batch = append(batch, e)
					continue
				default:
				}
				break
			}
			flush()
			return
		}
	}
}

func (l *Log) key(e *Entry) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, uint64(e.At))
	binary.BigEndian.PutUint32(k[8:], e.Seq)
	return k
}

func idxKey(val string, key []byte) []byte {
	return append(append([]byte(strings.ToLower(val)), 0), key...)
}

func indexes(e *Entry) map[string][]string {
	addrs := []string{}
	if e.From != "" {
		addrs = append(addrs, e.From)
	}
	addrs = append(addrs, e.To...)
	ix := map[string][]string{
		string(bAddr):   addrs,
		string(bDomain): e.Domains(),
		string(bStatus): {e.Status},
	}
	if e.QueueID != "" {
		ix[string(bQueue)] = []string{e.QueueID}
	}
	if e.MessageID != "" {
		ix[string(bMsgID)] = []string{strings.Trim(e.MessageID, "<>")}
	}
	return ix
}

// write stores a batch in one transaction. The count moves only once the
// transaction has committed, so Count never runs ahead of what a search
// can see, and a failed write does not change it.
func (l *Log) write(batch []Entry) error {
	var delta int64
	err := l.db.Update(func(tx *bolt.Tx) error {
		delta = 0
		b := tx.Bucket(bEntries)
		// Entries arrive in time order, so their pages can be packed full.
		b.FillPercent = 0.95
		for i := range batch {
			e := &batch[i]
			l.mu.Lock()
			l.seq++
			e.Seq = l.seq
			l.mu.Unlock()
			k := l.key(e)
			var buf bytes.Buffer
			if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(e); err != nil {
				return err
			}
			if err := b.Put(k, buf.Bytes()); err != nil {
				return err
			}
			for name, vals := range indexes(e) {
				ib := tx.Bucket([]byte(name))
				for _, v := range vals {
					if err := ib.Put(idxKey(v, k), nil); err != nil {
						return err
					}
				}
			}
			delta++
		}
		removed, err := l.prune(tx, delta)
		delta -= removed
		return err
	})
	if err == nil {
		l.count.Add(delta)
	}
	return err
}

// prune drops entries past the retention time or the count limit, oldest
// first, a bounded number per batch so a write never stalls on a purge.
// pending is what this transaction added so far; it returns how many it
// removed.
func (l *Log) prune(tx *bolt.Tx, pending int64) (int64, error) {
	b := tx.Bucket(bEntries)
	cutoff := uint64(l.cfg.Now().Add(-l.cfg.Retention).UnixNano())
	c := b.Cursor()
	var victims [][]byte
	var vals [][]byte
	over := int(l.count.Load()+pending) - l.cfg.MaxEntries
	for k, v := c.First(); k != nil && len(victims) < 2000; k, v = c.Next() {
		if over <= len(victims) && binary.BigEndian.Uint64(k) >= cutoff {
			break
		}
		victims = append(victims, append([]byte(nil), k...))
		vals = append(vals, append([]byte(nil), v...))
	}
	for i, k := range victims {
		var e Entry
		if err := codec.NewDecoderBytes(vals[i], &codec.MsgpackHandle{}).Decode(&e); err == nil {
			for name, vs := range indexes(&e) {
				ib := tx.Bucket([]byte(name))
				for _, v := range vs {
					ib.Delete(idxKey(v, k))
				}
			}
		}
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return int64(len(victims)), nil
}

// Count is how many entries the log holds.
func (l *Log) Count() int { return int(l.count.Load()) }

// DiskSize is the size of the log file.
func (l *Log) DiskSize() int64 {
	fi, err := os.Stat(l.cfg.Path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// ErrBadQuery is returned for a query that cannot be run.
var ErrBadQuery = errors.New("msglog: bad query")
