package fsm

import "testing"

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
