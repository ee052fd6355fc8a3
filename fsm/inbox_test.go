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

func TestAccountsSessionsAndAudit(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	hash := "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"
	yes := true
	applyOK(t, f, lf,
		&OrgPut{Name: "Acme", Create: true, At: 1},
		&OrgPut{Name: "Other", Create: true, At: 1},
		&OrgPut{Name: "Acme", RequireTOTP: &yes, At: 2},
		&UserAdd{Email: "a@acme.test", Role: RoleUser, Org: "Acme", PasswordHash: hash, At: 3},
		&UserAdd{Email: "boss@acme.test", Role: RoleOrgAdmin, Org: "Acme", PasswordHash: hash, At: 3},
		&UserAdd{Email: "p@partner.test", Role: RolePartner, Orgs: []string{"Acme", "Other"}, PasswordHash: hash, At: 3},
	)
	bad := []any{
		&OrgPut{Name: "Acme", Create: true},
		&OrgPut{Name: " padded", Create: true},
		&OrgPut{Name: "Missing"},
		&UserAdd{Email: "a@acme.test", Role: RoleUser, Org: "Acme", PasswordHash: hash},
		&UserAdd{Email: "Upper@acme.test", Role: RoleUser, Org: "Acme", PasswordHash: hash},
		&UserAdd{Email: "x@acme.test", Role: RoleUser, Org: "Nope", PasswordHash: hash},
		&UserAdd{Email: "x@acme.test", Role: "root", Org: "Acme", PasswordHash: hash},
		&UserAdd{Email: "x@acme.test", Role: RoleUser, Org: "Acme", PasswordHash: "plain"},
		&UserAdd{Email: "q@partner.test", Role: RolePartner, Orgs: []string{"Nope"}, PasswordHash: hash},
		&SessionCreate{Hash: strings.Repeat("a", 64), Email: "nobody@acme.test", Expires: 10, At: 5},
	}
	for _, c := range bad {
		if err := f.ApplyBatch([]*raft.Log{lf.entry(c)})[0]; err == nil {
			t.Errorf("%T %+v accepted", c, c)
		}
	}
	if us, _ := f.Store().Users(""); len(us) != 3 {
		t.Fatalf("refused commands changed the users: %+v", us)
	}
	if os, _ := f.Store().Orgs(); len(os) != 2 {
		t.Fatalf("refused commands changed the orgs: %+v", os)
	}
	if us, _ := f.Store().Users("Acme"); len(us) != 2 {
		t.Fatalf("Acme users: %+v", us)
	}
	o, _, _ := f.Store().Org("Acme")
	if !o.RequireTOTP {
		t.Fatal("require TOTP not set")
	}
	applyOK(t, f, lf, &TOTPSet{Email: "a@acme.test", Secret: "JBSWY3DPEHPK3PXP", Step: 100, At: 4})
	h1, h2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	applyOK(t, f, lf, &SessionCreate{Hash: h1, Email: "a@acme.test", Expires: 1000, TOTPStep: 101, At: 5})
	// The same step again, as a second node would propose it: refused.
	err := f.ApplyBatch([]*raft.Log{lf.entry(&SessionCreate{Hash: h2, Email: "a@acme.test", Expires: 1000, TOTPStep: 101, At: 6})})[0]
	if ve, ok := err.(*ValidationError); !ok || ve.Msg != ErrTOTPReused {
		t.Fatalf("reused step: %v", err)
	}
	if _, ok, _ := f.Store().Session(h2); ok {
		t.Fatal("session created with a reused code")
	}
	if s, ok, _ := f.Store().Session(h1); !ok || s.Email != "a@acme.test" {
		t.Fatal("session missing")
	}
	applyOK(t, f, lf, &AuditAdd{Entry: AuditEntry{At: 7, Kind: AuditLoginFailed, Actor: "a@acme.test"}})
	u, _, _ := f.Store().User("a@acme.test")
	if u.FailedLogins != 1 {
		t.Fatalf("failed logins: %d", u.FailedLogins)
	}
	// A new password ends sessions.
	applyOK(t, f, lf, &UserSet{Email: "a@acme.test", PasswordHash: &hash, At: 8})
	if _, ok, _ := f.Store().Session(h1); ok {
		t.Fatal("session outlived a password change")
	}
	es, _ := f.Store().Audit([]string{"Acme"}, 0, 10)
	if len(es) < 3 || es[0].Kind != AuditLoginFailed {
		t.Fatalf("audit for Acme: %+v", es)
	}
	if es, _ := f.Store().Audit([]string{"Other"}, 0, 10); len(es) != 0 {
		t.Fatalf("Other sees Acme's audit: %+v", es)
	}
}

func TestDraftsHoldBlobReferences(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	d := Draft{ID: "d1", Owner: "a@acme.test", Subject: "hi", Attachments: []DraftAttachment{{Name: "x.pdf", Type: "application/pdf", BlobHash: "blobA", Size: 3}}, UpdatedAt: 1}
	applyOK(t, f, lf, &DraftPut{Draft: d})
	if ok, _ := f.Store().BlobReferenced("blobA"); !ok {
		t.Fatal("draft attachment unreferenced")
	}
	if _, ok, _ := f.Store().Draft("b@acme.test", "d1"); ok {
		t.Fatal("another owner sees the draft")
	}
	d.Attachments = nil
	applyOK(t, f, lf, &DraftPut{Draft: d})
	if ok, _ := f.Store().BlobReferenced("blobA"); ok {
		t.Fatal("removed attachment still referenced")
	}
	applyOK(t, f, lf, &DraftDelete{Owner: "a@acme.test", ID: "d1"})
	if ds, _ := f.Store().Drafts("a@acme.test"); len(ds) != 0 {
		t.Fatal("draft not deleted")
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
	if err := PopulateInbox(f, "busy@example.com", 50_000, 1_700_000_000_000_000_000); err != nil {
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
