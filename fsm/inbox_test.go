package fsm

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func spoolSum(id string, at int64, subject string, rcpts ...string) *SpoolAddSummary {
	c := spool(id, rcpts...)
	c.ReceivedAt = at
	return &SpoolAddSummary{Add: *c, Summary: InboxSummary{From: "Sender <sender@example.net>", Subject: subject}}
}

func inboxIDs(t *testing.T, f *FSM, addr string) []string {
	t.Helper()
	items, _, _, err := f.Store().InboxPage(addr, InboxCursor{}, 1000, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	return ids
}

func TestInboxIndexFollowsDelivery(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	applyOK(t, f, lf,
		spoolSum("Q1", 100, "first", "Alice@example.com", "bob@example.com"),
		spoolSum("Q2", 200, "second", "alice@example.com"),
		spool("Q3", "alice@example.com"), // a plain SpoolAdd is indexed too
	)
	if got := inboxIDs(t, f, "alice@example.com"); strings.Join(got, ",") != "Q3,Q2,Q1" {
		t.Fatalf("alice's inbox: %v", got)
	}
	items, _, total, _ := f.Store().InboxPage("alice@example.com", InboxCursor{}, 10, 0, nil)
	if total != 3 || items[1].Subject != "second" || items[1].Size != 4096 {
		t.Fatalf("items: %+v total %d", items, total)
	}
	if got := inboxIDs(t, f, "bob@example.com"); strings.Join(got, ",") != "Q1" {
		t.Fatalf("bob's inbox: %v", got)
	}
	applyOK(t, f, lf, &MarkRead{Address: "alice@example.com", IDs: []string{"Q1"}, Read: true})
	if !f.Store().InboxRead("alice@example.com", "Q1") {
		t.Fatal("read mark not kept")
	}
	if err := f.ApplyBatch([]*raft.Log{lf.entry(&MarkRead{Address: "carol@example.com", IDs: []string{"Q1"}, Read: true})})[0]; err == nil {
		t.Fatal("a read mark for a message outside the inbox was accepted")
	}
	// Alice's copy of Q1 is delivered: it leaves her inbox, not Bob's.
	applyOK(t, f, lf, &AttemptResult{At: 300, Messages: []MessageResult{{ID: "Q1", Results: []RecipientResult{{Recipient: 0, Outcome: OutcomeDelivered}}}}})
	if got := inboxIDs(t, f, "alice@example.com"); strings.Join(got, ",") != "Q3,Q2" {
		t.Fatalf("after delivery to alice: %v", got)
	}
	if f.Store().InboxRead("alice@example.com", "Q1") {
		t.Fatal("read mark outlived the message")
	}
	if ok, _ := f.Store().InboxHas("bob@example.com", "Q1"); !ok {
		t.Fatal("bob lost Q1")
	}
	applyOK(t, f, lf, &AttemptResult{At: 300, Messages: []MessageResult{{ID: "Q1", Results: []RecipientResult{{Recipient: 1, Outcome: OutcomeDelivered}}}}})
	applyOK(t, f, lf, &QueueOp{Op: OpDelete, IDs: []string{"Q2", "Q3"}, At: 400})
	if got := inboxIDs(t, f, "alice@example.com"); len(got) != 0 {
		t.Fatalf("inbox after retirement: %v", got)
	}
	if got := inboxIDs(t, f, "bob@example.com"); len(got) != 0 {
		t.Fatalf("bob's inbox after retirement: %v", got)
	}
	_, _, total, _ = f.Store().InboxPage("alice@example.com", InboxCursor{}, 10, 0, nil)
	if total != 0 {
		t.Fatalf("count after drain: %d", total)
	}
}

func TestInboxPagingAndSearch(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	var cmds []any
	for i := 0; i < 25; i++ {
		cmds = append(cmds, spoolSum(fmt.Sprintf("M%02d", i), int64(1000+i), fmt.Sprintf("subject %d", i), "u@example.com"))
	}
	cmds = append(cmds, spoolSum("X1", 5000, "other", "v@example.com"))
	applyOK(t, f, lf, cmds...)
	var all []string
	cur := InboxCursor{}
	for {
		items, next, total, err := f.Store().InboxPage("u@example.com", cur, 10, 0, nil)
		if err != nil || total != 25 {
			t.Fatal(err, total)
		}
		for _, it := range items {
			all = append(all, it.ID)
		}
		if len(items) < 10 || next == (InboxCursor{}) {
			break
		}
		cur = next
	}
	if len(all) != 25 || all[0] != "M24" || all[24] != "M00" {
		t.Fatalf("paged: %v", all)
	}
	// A search with a scan bound returns a cursor to continue from.
	match := func(it *InboxItem) bool {
		return strings.HasSuffix(it.Subject, " 3") || strings.HasSuffix(it.Subject, " 13")
	}
	items, next, _, _ := f.Store().InboxPage("u@example.com", InboxCursor{}, 10, 12, match)
	if len(items) != 1 || items[0].ID != "M13" {
		t.Fatalf("first search slice: %+v", items)
	}
	items, _, _, _ = f.Store().InboxPage("u@example.com", next, 10, 100, match)
	if len(items) != 1 || items[0].ID != "M03" {
		t.Fatalf("second search slice: %+v", items)
	}
}

// BenchmarkInboxFirstPage measures the first page of an inbox of 50,000
// spooled messages, straight from the store.
func BenchmarkInboxFirstPage(b *testing.B) {
	s, err := Open(b.TempDir() + "/state.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := New(s, nil)
	if err := populateInbox(f, "busy@example.com", 50_000, 1_700_000_000_000_000_000); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		items, _, total, err := s.InboxPage("busy@example.com", InboxCursor{}, 50, 0, nil)
		if err != nil || len(items) != 50 || total != 50_000 {
			b.Fatal(err, len(items), total)
		}
	}
}

// populateInbox spools n messages for addr straight into the state, in
// batches as Raft would apply them. The messages arrive one millisecond
// apart from start (unix nanoseconds) and reference blobs that do not
// exist.
func populateInbox(f *FSM, addr string, n int, start int64) error {
	const batch = 1000
	idx := f.AppliedIndex()
	domain := addr[strings.IndexByte(addr, '@')+1:]
	for i := 0; i < n; i += batch {
		var logs []*raft.Log
		for j := i; j < n && j < i+batch; j++ {
			c := &SpoolAddSummary{
				Add: SpoolAdd{ID: fmt.Sprintf("BENCH%012d", j), From: "sender@example.net", BlobHash: fmt.Sprintf("bench-%d", j),
					Size: 4096, ReceivedAt: start + int64(j)*1e6, Recipients: []Recipient{{Address: addr, Domain: domain}}},
				Summary: InboxSummary{From: fmt.Sprintf("Sender %d <sender%d@example.net>", j%97, j%97), Subject: fmt.Sprintf("Message number %d", j), Attachment: j%10 == 0},
			}
			data, err := Encode(c)
			if err != nil {
				return err
			}
			idx++
			logs = append(logs, &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data})
		}
		for _, r := range f.ApplyBatch(logs) {
			if r != nil {
				return r.(error)
			}
		}
	}
	return nil
}
