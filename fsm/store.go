package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	bolt "go.etcd.io/bbolt"
)

// ErrStoreFailed is returned for every command once a store transaction has
// failed to commit. The node must restart; on restart the Raft log replays
// from the last index the store did commit.
var ErrStoreFailed = errors.New("fsm: state store failed; restart required")

// ErrStoreStalled is reported while a commit keeps failing (a full disk):
// the store applies nothing until it succeeds.
var ErrStoreStalled = errors.New("fsm: state store cannot write; applying is paused until it can")

// ErrClosed is returned by a closed store.
var ErrClosed = errors.New("fsm: state store closed")

// Store is the bbolt file that holds the replicated state of one node.
type Store struct {
	path string
	opts Options
	// setAside is where an untrustworthy store was moved on open.
	setAside string

	mu     sync.RWMutex // guards db against Restore swapping the file
	db     *bolt.DB
	failed error
	// stalled is the error of the last failed commit while a batch is
	// being retried.
	stalled error
	// stopRetry ends the retries of a stalled batch, for shutdown.
	stopRetry atomic.Bool
	// commitFault, in tests, fails the next commits as a full disk does.
	commitFault func() error
}

// Options choose how the store makes its writes durable.
type Options struct {
	// DeferSync skips the fdatasyncs of each applied batch. The Raft log
	// is durable on a quorum before an entry is applied, so the store is
	// a cache of it: what matters is that a store that may be torn is
	// never trusted. A process that dies leaves its writes in the page
	// cache, whole; only a crash of the kernel or the machine can lose
	// them. So the store records the boot it has unsynced writes in, and
	// a store left unsynced in an earlier boot is set aside on open: the
	// node then rebuilds from the newest Raft snapshot and the log after
	// it, which is what Raft does without a local store.
	DeferSync bool
	// BootID names the running kernel's boot (default: read
	// /proc/sys/kernel/random/boot_id). Where it cannot be told, the
	// store syncs every commit after all.
	BootID func() (string, error)
}

// Open opens or creates the store file at path, syncing every commit.
func Open(path string) (*Store, error) { return OpenWith(path, Options{}) }

// OpenWith opens or creates the store file at path.
func OpenWith(path string, opts Options) (*Store, error) {
	if opts.BootID == nil {
		opts.BootID = kernelBootID
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	s := &Store{path: path, opts: opts}
	if opts.DeferSync {
		if err := s.checkBoot(); err != nil {
			return nil, err
		}
	}
	db, err := s.openBolt(path)
	if err != nil {
		return nil, err
	}
	s.db = db
	return s, nil
}

// SetAside returns where Open moved a store that a crash of the machine
// may have torn, or "" if it did not.
func (s *Store) SetAside() string { return s.setAside }

func kernelBootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b)), err
}

// bootMark is the file that says in which boot the store last had
// unsynced writes; it is absent after a clean close.
func (s *Store) bootMark() string { return s.path + ".boot" }

// checkBoot sets aside a store that had unsynced writes in an earlier
// boot, then marks the store as having them in this one.
func (s *Store) checkBoot() error {
	boot, err := s.opts.BootID()
	if err != nil || boot == "" {
		// Without a boot ID a process crash cannot be told from a machine
		// crash: sync every commit instead.
		s.opts.DeferSync = false
		return nil
	}
	if b, err := os.ReadFile(s.bootMark()); err == nil && strings.TrimSpace(string(b)) != boot {
		aside := fmt.Sprintf("%s.unsafe-%d", s.path, time.Now().Unix())
		if err := os.Rename(s.path, aside); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("fsm: set aside a store left unsynced by a crash: %w", err)
		}
		if _, err := os.Stat(aside); err == nil {
			s.setAside = aside
		}
	}
	if err := os.WriteFile(s.bootMark(), []byte(boot+"\n"), 0o600); err != nil {
		return err
	}
	if err := syncFile(s.bootMark()); err != nil {
		return err
	}
	return syncDir(s.path)
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func (s *Store) openBolt(path string) (*bolt.DB, error) {
	db, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	db.NoSync = s.opts.DeferSync
	return db, nil
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
	var err error
	if s.opts.DeferSync && s.failed == nil {
		// Everything is on disk now: the mark can go, and a reboot
		// before the next open does not cost a rebuild.
		if err = s.db.Sync(); err == nil {
			if err = os.Remove(s.bootMark()); err == nil {
				err = syncDir(s.path)
			}
		}
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	s.db = nil
	return err
}

// StopRetrying makes a batch that cannot commit give up instead of
// retrying, so that Raft can shut down; call it before stopping Raft.
func (s *Store) StopRetrying() { s.stopRetry.Store(true) }

// Failed reports the error that stopped the store from applying, if any.
func (s *Store) Failed() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.failed == nil && s.db == nil {
		return ErrClosed
	}
	if s.failed == nil && s.stalled != nil {
		return fmt.Errorf("%w: %v", ErrStoreStalled, s.stalled)
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

func getValue[T any](b *bolt.Bucket, key string) (*T, error) {
	v := b.Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	var out T
	if err := decodeValue(v, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func putValue(b *bolt.Bucket, key string, v any) error {
	data, err := encodeValue(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
