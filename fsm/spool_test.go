package fsm

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func TestDuplicateSpoolAddQueuesOnce(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	f.ApplyBatch([]*raft.Log{lf.entry(spool("Q1", "a@x.com")), lf.entry(spool("Q1", "a@x.com"))})
	due, _ := f.Store().Due(1<<62, 100)
	if len(due) != 1 {
		t.Fatalf("duplicate spool add queued %d recipients", len(due))
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

func TestQueueOps(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	a, b := spool("QA", "a@x.com"), spool("QB", "b@x.com")
	t0 := a.ReceivedAt
	applyOK(t, f, lf, a, b,
		&AttemptResult{At: t0, Messages: []MessageResult{{ID: "QA", Results: []RecipientResult{{Recipient: 0, Outcome: OutcomeDeferred, NextAttempt: t0 + 1e12}}}}},
		&AttemptResult{At: t0, Messages: []MessageResult{{ID: "QB", Results: []RecipientResult{{Recipient: 0, Outcome: OutcomeDeferred, NextAttempt: t0 + 1e12}}}}},
		&QueueOp{Op: OpHold, IDs: []string{"QB"}, At: t0 + 5},
		&QueueOp{Op: OpRetry, At: t0 + 10},
	)
	due, _ := f.Store().Due(t0+10, 10)
	if len(due) != 1 || due[0].MessageID != "QA" {
		t.Fatalf("flush must make queued mail due now and skip held mail: %+v", due)
	}
	applyOK(t, f, lf, &QueueOp{Op: OpRelease, IDs: []string{"QB"}, At: t0 + 20})
	if due, _ := f.Store().Due(t0+20, 10); len(due) != 2 {
		t.Fatalf("release must make the message due: %+v", due)
	}
	applyOK(t, f, lf, &QueueOp{Op: OpDelete, IDs: []string{"QA"}, At: t0 + 30})
	if _, ok, _ := f.Store().Message("QA"); ok {
		t.Fatal("deleted message still spooled")
	}
	if due, _ := f.Store().Due(1<<62, 10); len(due) != 1 {
		t.Fatalf("delete left due entries: %+v", due)
	}
	res := f.ApplyBatch([]*raft.Log{lf.entry(&QueueOp{Op: OpHold, IDs: []string{"nope"}, At: 1})})
	if _, ok := res[0].(*ValidationError); !ok {
		t.Fatalf("operation on unknown ID: %v", res[0])
	}
}

func TestQueueFilters(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	a, b, c := spool("QA", "a@x.com"), spool("QB", "b@y.com"), spool("QC", "c@x.com")
	b.ReceivedAt += 1000
	c.ReceivedAt += 2000
	applyOK(t, f, lf, a, b, c,
		&AttemptStart{Items: []AttemptItem{{ID: "QA", Recipients: []int{0}}}, At: a.ReceivedAt, LeaseUntil: a.ReceivedAt + 10},
		&QueueOp{Op: OpHold, IDs: []string{"QC"}, At: 1})
	cases := []struct {
		f    MessageFilter
		want string
	}{
		{MessageFilter{State: "deferred"}, "QA"},
		{MessageFilter{State: "held"}, "QC"},
		{MessageFilter{State: "new"}, "QB"},
		{MessageFilter{Domain: "x.com"}, "QA,QC"},
		{MessageFilter{ReceivedBefore: b.ReceivedAt}, "QA"},
		{MessageFilter{ReceivedAfter: a.ReceivedAt}, "QB,QC"},
		{MessageFilter{ReceivedAfter: a.ReceivedAt, State: "held"}, "QC"},
	}
	for _, tc := range cases {
		msgs, _, _ := f.Store().Messages(tc.f, "", 10)
		var ids []string
		for _, m := range msgs {
			ids = append(ids, m.ID)
		}
		if got := strings.Join(ids, ","); got != tc.want {
			t.Errorf("filter %+v: got %s, want %s", tc.f, got, tc.want)
		}
	}
}
