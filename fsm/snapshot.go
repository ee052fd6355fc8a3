package fsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// snapshotMagic starts every snapshot so a restore of something else fails
// loudly instead of replacing the store with garbage.
var snapshotMagic = []byte("LIFELINE-FSM-1\n")

type snapshot struct {
	tx *bolt.Tx
}

func (s *Store) snapshot() (raft.FSMSnapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.failed != nil {
		// A snapshot now would claim entries the store never applied, and
		// log compaction would then drop them for good.
		return nil, s.failed
	}
	if s.db == nil {
		return nil, ErrClosed
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, err
	}
	return &snapshot{tx: tx}, nil
}

func (sn *snapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	_, err := w.Write(snapshotMagic)
	if err == nil {
		_, err = sn.tx.WriteTo(w)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (sn *snapshot) Release() {
	_ = sn.tx.Rollback()
}

// WriteSnapshot streams a consistent copy of the store to w, in the format
// Restore reads.
func (s *Store) WriteSnapshot(w io.Writer) error {
	fs, err := s.snapshot()
	if err != nil {
		return err
	}
	defer fs.Release()
	if _, err := w.Write(snapshotMagic); err != nil {
		return err
	}
	_, err = fs.(*snapshot).tx.WriteTo(w)
	return err
}

// Restore replaces the store with a snapshot stream. The new file is
// written and fsynced beside the old one and renamed over it, so a crash
// mid-restore leaves either the old state or the new one.
func (s *Store) Restore(r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	head := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, head); err != nil || string(head) != string(snapshotMagic) {
		return errors.New("fsm: restore: not a Lifeline state snapshot")
	}
	tmp := s.path + ".restore"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, br)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fsm: restore: %w", err)
	}
	// Check the copy opens before giving up the current store.
	check, err := openBolt(tmp)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fsm: restore: %w", err)
	}
	check.Close()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			return err
		}
		s.db = nil
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if err := syncDir(s.path); err != nil {
		return err
	}
	db, err := s.openBolt(s.path)
	if err != nil {
		return err
	}
	s.db = db
	s.failed = nil
	s.stalled = nil
	return nil
}

func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
