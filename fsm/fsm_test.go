package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
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

func spool(id string, rcpts ...string) *SpoolAdd {
	c := &SpoolAdd{ID: id, From: "sender@example.net", BlobHash: "h-" + id, Size: 4096, ReceivedAt: 1_700_000_000_000_000_000, Ret: "HDRS", EnvID: "env-" + id}
	for _, r := range rcpts {
		c.Recipients = append(c.Recipients, Recipient{Address: r, Domain: r[bytes.IndexByte([]byte(r), '@')+1:], Notify: []string{"FAILURE"}, ORCPT: "rfc822;" + r})
	}
	return c
}

func TestApplyDomainsAndSpool(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	res := f.ApplyBatch([]*raft.Log{
		lf.entry(&DomainPut{Name: "example.com", Destination: "127.0.0.1:2525", At: 10}),
		lf.entry(&DomainPut{Name: "Upper.com", Destination: "x:1", At: 10}),
		lf.entry(&SpoolAdd{ID: "bad"}),
		lf.entry(spool("Q1", "a@example.com", "b@example.com")),
		lf.entry(&DomainRemove{Name: "nope.com"}),
	})
	if res[0] != nil || res[3] != nil {
		t.Fatalf("unexpected errors: %v", res)
	}
	var ve *ValidationError
	for _, i := range []int{1, 2, 4} {
		if err, _ := res[i].(error); !errors.As(err, &ve) {
			t.Fatalf("entry %d: want validation error, got %v", i, res[i])
		}
	}
	if got := f.Store().AppliedIndex(); got != 5 {
		t.Fatalf("applied index %d, want 5", got)
	}
	d, ok, err := f.Store().Domain("example.com")
	if err != nil || !ok || d.Destination != "127.0.0.1:2525" {
		t.Fatalf("domain: %+v %v %v", d, ok, err)
	}
	if _, ok, _ := f.Store().Domain("upper.com"); ok {
		t.Fatal("a refused command changed the state")
	}
	m, ok, err := f.Store().Message("Q1")
	if err != nil || !ok {
		t.Fatalf("message: %v %v", ok, err)
	}
	if len(m.Recipients) != 2 || m.Recipients[1].ORCPT != "rfc822;b@example.com" || m.Ret != "HDRS" || m.Recipients[0].State != StateQueued {
		t.Fatalf("message fields: %+v", m)
	}
	due, err := f.Store().Due(m.ReceivedAt, 10)
	if err != nil || len(due) != 2 || due[1].Recipient != 1 || due[0].MessageID != "Q1" {
		t.Fatalf("due: %+v %v", due, err)
	}
	if due, _ := f.Store().Due(m.ReceivedAt-1, 10); len(due) != 0 {
		t.Fatalf("due before arrival: %+v", due)
	}
	if ok, _ := f.Store().BlobReferenced("h-Q1"); !ok {
		t.Fatal("blob reference not counted")
	}

	res = f.ApplyBatch([]*raft.Log{lf.entry(&DomainRemove{Name: "example.com"})})
	if res[0] != nil {
		t.Fatal(res[0])
	}
	if _, ok, _ := f.Store().Domain("example.com"); ok {
		t.Fatal("domain not removed")
	}
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

func TestDuplicateSpoolAddQueuesOnce(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	f.ApplyBatch([]*raft.Log{lf.entry(spool("Q1", "a@x.com")), lf.entry(spool("Q1", "a@x.com"))})
	due, _ := f.Store().Due(1<<62, 100)
	if len(due) != 1 {
		t.Fatalf("duplicate spool add queued %d recipients", len(due))
	}
}

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

func TestPaging(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	var batch []*raft.Log
	for i := 0; i < 25; i++ {
		rcpt := "u@a.com"
		if i%5 == 0 {
			rcpt = "u@b.com"
		}
		batch = append(batch, lf.entry(spool(fmt.Sprintf("Q%02d", i), rcpt)))
	}
	f.ApplyBatch(batch)
	var all []Message
	cursor := ""
	for {
		page, next, err := f.Store().Messages(MessageFilter{Domain: "a.com"}, cursor, 7)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 20 {
		t.Fatalf("paged %d messages for a.com, want 20", len(all))
	}
	st, _ := f.Store().Stats()
	if st.Messages != 25 || st.ByDomain["b.com"] != 5 || st.Bytes != 25*4096 {
		t.Fatalf("stats %+v", st)
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

func TestCommandSizeLimit(t *testing.T) {
	c := spool("Q1")
	for i := 0; i < 2000; i++ {
		c.Recipients = append(c.Recipients, Recipient{Address: fmt.Sprintf("%040d@example.com", i), Domain: "example.com"})
	}
	if _, err := Encode(c); !errors.Is(err, ErrCommandTooLarge) {
		t.Fatalf("want ErrCommandTooLarge, got %v", err)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	c := spool("Q1", "a@x.com")
	data, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if CommandType(data[0]) != TypeSpoolAdd {
		t.Fatalf("type byte %d", data[0])
	}
	got, err := Decode(data)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }
