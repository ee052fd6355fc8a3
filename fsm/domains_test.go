package fsm

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

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

func TestDomainSetDestinationsAndOldDomainPut(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	applyOK(t, f, lf, &OrgPut{Name: "Acme", Create: true, At: 1})
	applyOK(t, f, lf, &DomainSet{Name: "acme.test", Org: "Acme", Create: true, At: 2,
		Destinations: []Destination{{Addr: "b:25", Pref: 20}, {Addr: "a:25", Pref: 10}, {Addr: "c:25", Pref: 20}}})
	d, _, _ := f.Store().Domain("acme.test")
	got := []string{}
	for _, x := range d.Targets() {
		got = append(got, x.Addr)
	}
	if strings.Join(got, ",") != "a:25,b:25,c:25" || d.Destination != "a:25" {
		t.Fatalf("targets %v, destination %q", got, d.Destination)
	}
	applyOK(t, f, lf, &DomainState{Name: "acme.test", Spooling: true, At: 5, LastError: "down"})
	// The single-destination command still works and keeps the state.
	applyOK(t, f, lf, &DomainPut{Name: "acme.test", Destination: "z:25", Org: "Acme", At: 6})
	d, _, _ = f.Store().Domain("acme.test")
	if ts := d.Targets(); len(ts) != 1 || ts[0].Addr != "z:25" || !d.Spooling {
		t.Fatalf("after DomainPut: %+v", d)
	}
	for _, bad := range []*DomainSet{
		{Name: "acme.test", Org: "Acme", Create: true, Destinations: []Destination{{Addr: "x:1"}}},
		{Name: "new.test", Destinations: []Destination{{Addr: "x:1"}}},
		{Name: "new.test", Create: true},
		{Name: "new.test", Create: true, Org: "Nope", Destinations: []Destination{{Addr: "x:1"}}},
		{Name: "new.test", Create: true, Destinations: []Destination{{Addr: "x:1"}, {Addr: "x:1"}}},
	} {
		if err := applyOne(t, f, lf, bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestDomainRequestNeedsApproval(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	applyOK(t, f, lf, &OrgPut{Name: "Acme", Create: true, At: 1}, &OrgPut{Name: "Other", Create: true, At: 1})
	applyOK(t, f, lf, &DomainRequest{Name: "acme.test", Org: "Acme", Destinations: []Destination{{Addr: "a:25", Pref: 10}}, By: "boss@acme.test", At: 2})
	if _, ok, _ := f.Store().Domain("acme.test"); ok {
		t.Fatal("a requested domain is protected before approval")
	}
	if err := applyOne(t, f, lf, &DomainRequest{Name: "acme.test", Org: "Other", Destinations: []Destination{{Addr: "evil:25"}}, At: 3}); err == nil || err.Error() != ErrDomainUnavailable {
		t.Fatalf("another org claimed a requested domain: %v", err)
	}
	applyOK(t, f, lf, &DomainApprove{Name: "acme.test", At: 4})
	d, ok, _ := f.Store().Domain("acme.test")
	if !ok || d.Org != "Acme" || d.Destination != "a:25" {
		t.Fatalf("approved: %+v %v", d, ok)
	}
	if rs, _ := f.Store().DomainRequests(""); len(rs) != 0 {
		t.Fatalf("request left behind: %v", rs)
	}
	if err := applyOne(t, f, lf, &DomainRequest{Name: "acme.test", Org: "Other", Destinations: []Destination{{Addr: "evil:25"}}, At: 5}); err == nil {
		t.Fatal("a protected domain was requested again")
	}
}
