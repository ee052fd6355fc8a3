package fsm

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := openTestFSM(t)
	lf := &logFeeder{t: t}
	var batch []*raft.Log
	for i := 0; i < 500; i++ {
		batch = append(batch, lf.entry(spool(fmt.Sprintf("Q%04d", i), "u@a.com", "v@b.com")))
	}
	batch = append(batch, lf.entry(&DomainPut{Name: "a.com", Destination: "127.0.0.1:1"}), lf.entry(&SetAdminToken{Hash: "abc"}))
	src.ApplyBatch(batch)

	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := openTestFSM(t)
	dst.ApplyBatch([]*raft.Log{(&logFeeder{t: t}).entry(&DomainPut{Name: "stale.com", Destination: "x:1"})})
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if dst.Store().AppliedIndex() != src.Store().AppliedIndex() {
		t.Fatalf("applied index %d != %d", dst.Store().AppliedIndex(), src.Store().AppliedIndex())
	}
	if _, ok, _ := dst.Store().Domain("stale.com"); ok {
		t.Fatal("restore kept state that the snapshot does not have")
	}
	a, _, _ := src.Store().Messages(MessageFilter{}, "", 1000)
	b, _, _ := dst.Store().Messages(MessageFilter{}, "", 1000)
	if len(a) != 500 || !reflect.DeepEqual(a, b) {
		t.Fatalf("messages differ after restore: %d vs %d", len(a), len(b))
	}
	h, _ := dst.Store().AdminTokenHash()
	if h != "abc" {
		t.Fatalf("admin token hash %q", h)
	}
}

func TestRestoreRejectsGarbage(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	f.ApplyBatch([]*raft.Log{lf.entry(&DomainPut{Name: "keep.com", Destination: "x:1"})})
	if err := f.Restore(io.NopCloser(bytes.NewReader([]byte("not a snapshot at all")))); err == nil {
		t.Fatal("garbage restored")
	}
	if _, ok, _ := f.Store().Domain("keep.com"); !ok {
		t.Fatal("a failed restore changed the state")
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string { return "mem" }

func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func (s *memSink) Close() error { return nil }
