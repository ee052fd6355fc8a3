package fsm

import "testing"

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

// Found by the fault campaign (e2e/chaos_test.go, seed 36453333): a delay
// notice and the mark that it went out were two commits, and a leader lost
// between them let the next leader queue the same notice again after the
// first had been delivered and retired. NoticeAdd commits both at once,
// and a notice for recipients already marked is not queued again.
func TestNoticeAddQueuesTheNoticeOnce(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	orig := spool("Q1", "a@x.com")
	applyOK(t, f, lf, orig)
	notice := func() *NoticeAdd {
		n := spool("Q1.D", "sender@y.com")
		n.From = ""
		return &NoticeAdd{Add: SpoolAddSummary{Add: *n}, Notified: DelayNotified{ID: "Q1", Recipients: []int{0}}}
	}
	applyOK(t, f, lf, notice())
	m, _, _ := f.Store().Message("Q1")
	if !m.Recipients[0].DelayNotified {
		t.Fatal("the message is not marked notified")
	}
	if _, ok, _ := f.Store().Message("Q1.D"); !ok {
		t.Fatal("the notice is not queued")
	}
	// The notice is delivered and retires.
	applyOK(t, f, lf, &AttemptResult{At: orig.ReceivedAt + 10, Messages: []MessageResult{{ID: "Q1.D",
		Results: []RecipientResult{{Recipient: 0, Outcome: OutcomeDelivered}}}}})
	if _, ok, _ := f.Store().Message("Q1.D"); ok {
		t.Fatal("the delivered notice is still queued")
	}
	// A leader that repeats the work (it saw the message before the mark)
	// queues nothing.
	applyOK(t, f, lf, notice())
	if _, ok, _ := f.Store().Message("Q1.D"); ok {
		t.Fatal("the notice was queued a second time")
	}
	// It travels through the log like every command.
	data, err := Encode(notice())
	if err != nil {
		t.Fatal(err)
	}
	if cmd, err := Decode(data); err != nil {
		t.Fatal(err)
	} else if n, ok := cmd.(*NoticeAdd); !ok || n.Notified.ID != "Q1" || n.Add.Add.ID != "Q1.D" {
		t.Fatalf("decoded %#v", cmd)
	}
}
