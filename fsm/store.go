package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	bolt "go.etcd.io/bbolt"
)

// Bucket names. The store keeps state on disk, indexed, so a spool of a
// million messages needs no million Go objects (DESIGN.md §3.4).
var (
	bucketMeta     = []byte("meta")
	bucketDomains  = []byte("domains")
	bucketMessages = []byte("messages")
	bucketDue      = []byte("due")
	bucketBlobRefs = []byte("blobrefs")

	keyApplied    = []byte("applied")
	keyAdminToken = []byte("admin_token")
)

func allBuckets() [][]byte {
	return append([][]byte{bucketMeta, bucketDomains, bucketMessages, bucketDue, bucketBlobRefs, bucketRetired,
		bucketInbox, bucketInboxCount, bucketSeen,
		bucketOrgs, bucketUsers, bucketOrgUsers, bucketSessions, bucketSessExp, bucketAudit, bucketDrafts}, consoleBuckets()...)
}

// ErrStoreFailed is returned for every command once a store transaction has
// failed to commit. The node must restart; on restart the Raft log replays
// from the last index the store did commit.
var ErrStoreFailed = errors.New("fsm: state store failed; restart required")

// ErrClosed is returned by a closed store.
var ErrClosed = errors.New("fsm: state store closed")

// Store is the bbolt file that holds the replicated state of one node.
type Store struct {
	path string

	mu     sync.RWMutex // guards db against Restore swapping the file
	db     *bolt.DB
	failed error
}

// Open opens or creates the store file at path.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	return &Store{path: path, db: db}, nil
}

func openBolt(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 5 * time.Second,
		// A large initial map keeps writers from waiting for a remap while a
		// snapshot holds a long read transaction.
		InitialMmapSize: 256 << 20,
		FreelistType:    bolt.FreelistMapType,
		// Each applied batch is a commit; not writing the free list with
		// every one halves the pages written, and opening the file
		// rebuilds it with a scan.
		NoFreelistSync: true,
	})
	if err != nil {
		return nil, fmt.Errorf("fsm: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets() {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("fsm: init %s: %w", path, err)
	}
	return db, nil
}

// Close closes the store. Later calls fail with ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

// Failed reports the error that stopped the store from applying, if any.
func (s *Store) Failed() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.failed == nil && s.db == nil {
		return ErrClosed
	}
	return s.failed
}

func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	return s.db.View(fn)
}

// AppliedIndex is the index of the last Raft entry the store committed.
func (s *Store) AppliedIndex() uint64 {
	var idx uint64
	_ = s.view(func(tx *bolt.Tx) error {
		idx = appliedIndex(tx)
		return nil
	})
	return idx
}

func appliedIndex(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyApplied)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint64(b *bolt.Bucket, key []byte, v uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return b.Put(key, buf[:])
}

func encodeValue(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, msgpackHandle()).Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeValue(data []byte, v any) error {
	return codec.NewDecoderBytes(data, msgpackHandle()).Decode(v)
}

// dueKey orders recipients by their next attempt, so the scheduler reads the
// head of an index instead of scanning every message.
func dueKey(next int64, id string, rcpt int) []byte {
	k := make([]byte, 8+len(id)+1+2)
	binary.BigEndian.PutUint64(k, uint64(next))
	copy(k[8:], id)
	k[8+len(id)] = 0
	binary.BigEndian.PutUint16(k[9+len(id):], uint16(rcpt))
	return k
}

func parseDueKey(k []byte) (next int64, id string, rcpt int, ok bool) {
	if len(k) < 8+1+2 {
		return 0, "", 0, false
	}
	next = int64(binary.BigEndian.Uint64(k))
	id = string(k[8 : len(k)-3])
	rcpt = int(binary.BigEndian.Uint16(k[len(k)-2:]))
	return next, id, rcpt, true
}
