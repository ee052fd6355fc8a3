package fsm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// FSM adapts the Store to hashicorp/raft. It implements raft.BatchingFSM so
// a batch of committed entries becomes one store transaction and one fsync.
type FSM struct {
	store  *Store
	logger *slog.Logger
}

// New returns the state machine over store.
func New(store *Store, logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{store: store, logger: logger}
}

// Store returns the store this FSM applies to.
func (f *FSM) Store() *Store { return f.store }

// ValidationError is a command that was well-formed on the wire but is
// refused by the state; it changes nothing.
type ValidationError struct{ Msg string }

func (e *ValidationError) Error() string { return e.Msg }

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM. Each response is nil or an error.
// Entries at or below the stored applied index were applied before a
// restart and are skipped, so nothing is applied twice (docs/design.md §3.4).
//
// A batch whose commit fails (the disk is full, say) is retried until it
// commits: the entries are committed in the Raft log, so skipping them
// would diverge from the other nodes, and applying later ones on top
// would too. Meanwhile the node applies nothing, says so (Failed), and
// takes no writes; once the disk has room it carries on by itself.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	s := f.store
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		resp, err := f.tryBatch(logs)
		if err == nil {
			if attempt > 0 {
				f.logger.Info("state store commits again; applying resumed", "first_index", logs[0].Index, "attempts", attempt+1)
			}
			return resp
		}
		if attempt == 0 {
			f.logger.Error("state store commit failed; applying pauses until it succeeds", "err", err, "first_index", logs[0].Index)
		}
		for slept := time.Duration(0); slept < wait; slept += 50 * time.Millisecond {
			if s.stopRetry.Load() {
				// Shutting down: the entries stay in the Raft log and are
				// applied after the restart.
				s.mu.Lock()
				if s.failed == nil {
					s.failed = fmt.Errorf("%w: %v", ErrStoreFailed, err)
				}
				s.stalled = nil
				failed := s.failed
				s.mu.Unlock()
				for i := range resp {
					resp[i] = failed
				}
				return resp
			}
			time.Sleep(50 * time.Millisecond)
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// tryBatch applies logs in one transaction. A nil error means the batch
// is done with, applied or answered (a closed store); an error means the
// commit failed and the batch must be tried again.
//
// The entries of a batch share one bbolt transaction, and bbolt has no
// savepoints, so a command that wrote part of its change before it found
// a reason to refuse would leave that part behind (docs/design.md §3.8: a
// refused command changes nothing). When a command answers with an
// error, the whole transaction is rolled back and the batch is applied
// again with that entry answered and skipped. Refusals depend only on
// the state and the entries before them, so every node skips the same
// entries; the rerun costs something only on the error path.
func (f *FSM) tryBatch(logs []*raft.Log) ([]interface{}, error) {
	s := f.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil || s.db == nil {
		err := s.failed
		if err == nil {
			err = ErrClosed
		}
		resp := make([]interface{}, len(logs))
		for i := range resp {
			resp[i] = err
		}
		return resp, nil
	}
	refused := map[int]error{}
	for {
		resp, err := f.applyLogs(logs, refused)
		var r *refusal
		if errors.As(err, &r) {
			refused[r.entry] = r.err
			continue
		}
		if err != nil {
			s.stalled = err
			return resp, err
		}
		s.stalled = nil
		return resp, nil
	}
}

// refusal aborts a batch's transaction when one of its entries is
// refused, so that the entry's partial writes are rolled back.
type refusal struct {
	entry int
	err   error
}

func (r *refusal) Error() string { return fmt.Sprintf("entry %d refused: %v", r.entry, r.err) }

// applyLogs runs one transaction over logs, answering the entries in
// refused with their error without applying them.
func (f *FSM) applyLogs(logs []*raft.Log, refused map[int]error) ([]interface{}, error) {
	resp := make([]interface{}, len(logs))
	s := f.store
	err := s.db.Update(func(tx *bolt.Tx) error {
		if s.commitFault != nil {
			if err := s.commitFault(); err != nil {
				return err
			}
		}
		a := &applier{tx: tx, logger: f.logger, applyEntry: applyEntry}
		applied := appliedIndex(tx)
		last := applied
		for i, l := range logs {
			if l.Index <= applied {
				continue
			}
			last = l.Index
			if l.Type != raft.LogCommand {
				continue
			}
			if err, ok := refused[i]; ok {
				resp[i] = err
				continue
			}
			if err := applyEntry(a, l.Data); err != nil {
				return &refusal{entry: i, err: err}
			}
		}
		if last == applied {
			return nil
		}
		return putUint64(tx.Bucket(bucketMeta), keyApplied, last)
	})
	return resp, err
}

// applyEntry applies one encoded command inside the batch's transaction.
func applyEntry(a *applier, data []byte) error {
	cmd, err := Decode(data)
	if err != nil {
		var unknown *UnknownCommandError
		if errors.As(err, &unknown) {
			// A newer release wrote a command this one cannot apply; going on
			// would silently diverge from the nodes that can.
			panic(err)
		}
		return err
	}
	if cmd == nil {
		// An ignorable type of a newer release.
		return nil
	}
	return commands[data[0]].apply(a, cmd)
}

// Snapshot implements raft.FSM. The returned snapshot holds one read
// transaction and streams the store file from it, so Apply keeps running
// while the snapshot is written.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return f.store.snapshot()
}

// Restore implements raft.FSM: it replaces the whole store with the stream.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.store.Restore(rc)
}

// AppliedIndex is the index of the last entry the store committed.
func (f *FSM) AppliedIndex() uint64 { return f.store.AppliedIndex() }

// Failed is not nil once the store stopped applying (see Store.Failed),
// or after it was closed.
func (f *FSM) Failed() error { return f.store.Failed() }
