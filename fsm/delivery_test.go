package fsm

import (
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

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

func TestAttemptLifecycleRetiresMessage(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	c := spool("Q1", "a@x.com", "b@x.com")
	t0 := c.ReceivedAt
	applyOK(t, f, lf, c, &AttemptStart{Items: []AttemptItem{{ID: "Q1", Recipients: []int{0, 1}}}, At: t0 + 1, LeaseUntil: t0 + 1000})
	if due, _ := f.Store().Due(t0+999, 10); len(due) != 0 {
		t.Fatalf("recipients under lease are due: %+v", due)
	}
	if due, _ := f.Store().Due(t0+1000, 10); len(due) != 2 {
		t.Fatalf("an expired lease must make recipients due again: %+v", due)
	}
	applyOK(t, f, lf, &AttemptResult{At: t0 + 2, Messages: []MessageResult{{ID: "Q1", Results: []RecipientResult{
		{Recipient: 0, Outcome: OutcomeDelivered, Reply: "250 ok"},
		{Recipient: 1, Outcome: OutcomeDeferred, Reply: "451 later", NextAttempt: t0 + 500},
	}}}})
	m, ok, _ := f.Store().Message("Q1")
	if !ok || m.Recipients[0].State != StateDelivered || m.Recipients[1].Attempts != 1 || m.Recipients[1].LastReply != "451 later" {
		t.Fatalf("after partial delivery: %+v", m)
	}
	due, _ := f.Store().Due(t0+10_000, 10)
	if len(due) != 1 || due[0].Recipient != 1 || due[0].At != t0+500 {
		t.Fatalf("due after deferral: %+v", due)
	}
	applyOK(t, f, lf, &AttemptResult{At: t0 + 600, Messages: []MessageResult{{ID: "Q1", Results: []RecipientResult{{Recipient: 1, Outcome: OutcomeDelivered}}}}})
	if _, ok, _ := f.Store().Message("Q1"); ok {
		t.Fatal("message with every recipient delivered is still spooled")
	}
	if ok, _ := f.Store().BlobReferenced("h-Q1"); ok {
		t.Fatal("retired message still references its blob")
	}
	if due, _ := f.Store().Due(1<<62, 10); len(due) != 0 {
		t.Fatalf("retired message left due entries: %+v", due)
	}
	ret, _ := f.Store().RetiredMessages(10)
	if len(ret) != 1 || ret[0].Reason != OutcomeDelivered || ret[0].ID != "Q1" {
		t.Fatalf("retired log: %+v", ret)
	}
	// A late result for a retired message changes nothing.
	applyOK(t, f, lf, &AttemptResult{At: t0 + 700, Messages: []MessageResult{{ID: "Q1", Results: []RecipientResult{{Recipient: 1, Outcome: OutcomeFailed}}}}})
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

func TestDomainSpoolingState(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	applyOK(t, f, lf, &DomainPut{Name: "x.com", Destination: "127.0.0.1:1", At: 1},
		&DomainState{Name: "x.com", Spooling: true, At: 100, LastError: "connection refused"},
		&DomainState{Name: "x.com", Spooling: true, At: 200, LastError: "still refused"},
		&DomainPut{Name: "x.com", Destination: "127.0.0.1:2", At: 250})
	d, _, _ := f.Store().Domain("x.com")
	if !d.Spooling || d.SpoolingSince != 100 || d.LastError != "still refused" || d.Destination != "127.0.0.1:2" {
		t.Fatalf("spooling state: %+v", d)
	}
	applyOK(t, f, lf, &DomainState{Name: "x.com", Spooling: false, At: 300})
	d, _, _ = f.Store().Domain("x.com")
	if d.Spooling || d.LastDelivered != 300 {
		t.Fatalf("after recovery: %+v", d)
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
