package fsm

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

func openTestFSM(t *testing.T) *FSM {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return New(s, nil)
}

type logFeeder struct {
	t     *testing.T
	index uint64
}

func (lf *logFeeder) entry(cmd any) *raft.Log {
	lf.t.Helper()
	data, err := Encode(cmd)
	if err != nil {
		lf.t.Fatal(err)
	}
	lf.index++
	return &raft.Log{Index: lf.index, Term: 1, Type: raft.LogCommand, Data: data}
}

func applyOK(t *testing.T, f *FSM, lf *logFeeder, cmds ...any) {
	t.Helper()
	var logs []*raft.Log
	for _, c := range cmds {
		logs = append(logs, lf.entry(c))
	}
	for i, r := range f.ApplyBatch(logs) {
		if r != nil {
			t.Fatalf("command %d (%T): %v", i, cmds[i], r)
		}
	}
}

func applyOne(t *testing.T, f *FSM, lf *logFeeder, cmd any) error {
	t.Helper()
	r := f.ApplyBatch([]*raft.Log{lf.entry(cmd)})[0]
	if r == nil {
		return nil
	}
	return r.(error)
}

func spool(id string, rcpts ...string) *SpoolAdd {
	c := &SpoolAdd{ID: id, From: "sender@example.net", BlobHash: "h-" + id, Size: 4096, ReceivedAt: 1_700_000_000_000_000_000, Ret: "HDRS", EnvID: "env-" + id}
	for _, r := range rcpts {
		c.Recipients = append(c.Recipients, Recipient{Address: r, Domain: r[bytes.IndexByte([]byte(r), '@')+1:], Notify: []string{"FAILURE"}, ORCPT: "rfc822;" + r})
	}
	return c
}

func TestReplayedEntriesAreSkipped(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	first := lf.entry(&DomainPut{Name: "a.com", Destination: "d1:25"})
	second := lf.entry(&DomainPut{Name: "a.com", Destination: "d2:25"})
	f.ApplyBatch([]*raft.Log{first, second})
	// A restart replays from the last snapshot; the older entry must not
	// undo the newer one.
	f.ApplyBatch([]*raft.Log{first})
	d, _, _ := f.Store().Domain("a.com")
	if d.Destination != "d2:25" {
		t.Fatalf("replay re-applied an old entry: %+v", d)
	}
}

func TestClosedStoreRefusesAndFailedStoreStaysFailed(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	f.Store().Close()
	res := f.ApplyBatch([]*raft.Log{lf.entry(spool("Q1", "a@x.com"))})
	if res[0] == nil {
		t.Fatal("closed store accepted a command")
	}
	if _, err := f.Snapshot(); err == nil {
		t.Fatal("closed store produced a snapshot")
	}
}

func TestUnknownCommandPanicsIgnorableIsSkipped(t *testing.T) {
	f := openTestFSM(t)
	f.ApplyBatch([]*raft.Log{{Index: 1, Type: raft.LogCommand, Data: []byte{byte(IgnorableFlag | 0x11), 0x80}}})
	if f.Store().AppliedIndex() != 1 {
		t.Fatal("ignorable entry not recorded as applied")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("unknown command did not panic")
		}
	}()
	f.ApplyBatch([]*raft.Log{{Index: 2, Type: raft.LogCommand, Data: []byte{0x7e, 0x80}}})
}

// A refused command changes nothing, even when it had written part of its
// change before it found the reason to refuse, and the entries beside it
// in the same batch still apply.
func TestRefusedCommandLeavesNoPartialWrite(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	applyOK(t, f, lf, spool("QA", "a@example.com"))
	logs := []*raft.Log{
		lf.entry(&DomainPut{Name: "before.com", Destination: "d1:25"}),
		// QA is held first, then "missing" refuses the whole command.
		lf.entry(&QueueOp{Op: OpHold, IDs: []string{"QA", "missing"}, At: 10}),
		lf.entry(&DomainPut{Name: "after.com", Destination: "d2:25"}),
	}
	resp := f.ApplyBatch(logs)
	if resp[0] != nil || resp[2] != nil {
		t.Fatalf("entries beside the refused one: %v, %v", resp[0], resp[2])
	}
	var verr *ValidationError
	if err, _ := resp[1].(error); !errors.As(err, &verr) {
		t.Fatalf("hold of a missing message answered %v, want a validation error", resp[1])
	}
	m, ok, err := f.Store().Message("QA")
	if err != nil || !ok {
		t.Fatalf("QA: %v %v", ok, err)
	}
	if m.Held {
		t.Fatal("a refused hold left QA held")
	}
	for _, name := range []string{"before.com", "after.com"} {
		if _, ok, _ := f.Store().Domain(name); !ok {
			t.Fatalf("%s was not applied", name)
		}
	}
	if got := f.AppliedIndex(); got != lf.index {
		t.Fatalf("applied index %d, want %d", got, lf.index)
	}
}
