package delivery

import (
	"context"
	"testing"

	"lifeline/fsm"
)

// A domain with several destinations: the most preferred one that answers
// gets the mail; a dead first choice does not make the domain spool.
func TestDestinationsInOrderOfPreference(t *testing.T) {
	dead := closedPort(t)
	backup := startSink(t, "")
	other := startSink(t, "")
	h := newHarness(t, nil, nil)
	h.must(&fsm.DomainSet{Name: "customer.test", Create: true, At: 1, Destinations: []fsm.Destination{
		{Addr: other.addr(), Pref: 30}, {Addr: dead, Pref: 10}, {Addr: backup.addr(), Pref: 20}}})
	h.receive("Q1", "sender@sender.test", "Subject: one\r\n\r\nbody\r\n", rcpt("u@customer.test"))
	h.eng.RunOnce(context.Background())
	if n := len(backup.messages()); n != 1 {
		t.Fatalf("the second choice got %d messages, want 1 (third choice got %d)", n, len(other.messages()))
	}
	if len(other.messages()) != 0 {
		t.Fatal("the third choice was used while the second answered")
	}
	if d, _, _ := h.f.Store().Domain("customer.test"); d.Spooling {
		t.Fatal("domain spooling although a destination took the mail")
	}
}
