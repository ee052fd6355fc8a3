package fsm

import (
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

func applyOne(t *testing.T, f *FSM, lf *logFeeder, cmd any) error {
	t.Helper()
	r := f.ApplyBatch([]*raft.Log{lf.entry(cmd)})[0]
	if r == nil {
		return nil
	}
	return r.(error)
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

func auditAdd(at int64, kind, detail string) *AuditAdd {
	return &AuditAdd{Entry: AuditEntry{At: at, Kind: kind, Actor: "boss@acme.test", Org: "Acme", Detail: detail}}
}

func TestAuditChainDetectsTampering(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	for i := 0; i < 10; i++ {
		applyOK(t, f, lf, auditAdd(int64(100+i), "domain_set", "entry "+string(rune('a'+i))))
	}
	// An audited command records its change and its entry together; a
	// refused one records neither.
	cmd, err := NewAudited(&OrgPut{Name: "Acme", Create: true, At: 200}, AuditEntry{At: 200, Kind: "org_add", Actor: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	applyOK(t, f, lf, cmd)
	bad, _ := NewAudited(&OrgPut{Name: "Acme", Create: true, At: 201}, AuditEntry{At: 201, Kind: "org_add", Actor: "operator"})
	if err := applyOne(t, f, lf, bad); err == nil {
		t.Fatal("duplicate org accepted")
	}
	s := f.Store()
	chk, err := s.VerifyAudit()
	if err != nil || !chk.OK || chk.Entries != 11 {
		t.Fatalf("fresh chain: %+v %v", chk, err)
	}
	es, _, _ := s.SearchAudit(AuditFilter{Kind: "org_add"})
	if len(es) != 1 {
		t.Fatalf("refused command was audited: %+v", es)
	}

	// Edit one entry directly in the store, as someone with the file would.
	tamper := func(fn func(tx *bolt.Tx) error) {
		t.Helper()
		if err := s.db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	var saved []byte
	k5 := auditKey(104, 5)
	tamper(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		saved = append([]byte(nil), b.Get(k5)...)
		var e AuditEntry
		if err := decodeValue(saved, &e); err != nil {
			return err
		}
		e.Detail = "nothing to see"
		return putValue(b, string(k5), &e)
	})
	chk, _ = s.VerifyAudit()
	if chk.OK || chk.BrokenSeq != 5 || !strings.Contains(chk.Reason, "changed") {
		t.Fatalf("edited entry not found: %+v", chk)
	}
	// Recomputing its hash moves the break to the next link.
	tamper(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		var e AuditEntry
		decodeValue(b.Get(k5), &e)
		e.Hash = AuditHash(&e)
		return putValue(b, string(k5), &e)
	})
	chk, _ = s.VerifyAudit()
	if chk.OK || chk.BrokenSeq != 6 || !strings.Contains(chk.Reason, "link") {
		t.Fatalf("rehashed entry not found: %+v", chk)
	}
	// Removing an entry leaves a gap.
	tamper(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketAudit).Put(k5, saved); err != nil {
			return err
		}
		tx.Bucket(bucketAuditSeq).Delete(seqKey(3))
		return tx.Bucket(bucketAudit).Delete(auditKey(102, 3))
	})
	chk, _ = s.VerifyAudit()
	if chk.OK || chk.BrokenSeq != 3 || !strings.Contains(chk.Reason, "missing") {
		t.Fatalf("removed entry not found: %+v", chk)
	}
}

func TestAuditChainTruncationAndPruning(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	for i := 0; i < 5; i++ {
		applyOK(t, f, lf, auditAdd(int64(100+i), "x", ""))
	}
	s := f.Store()
	s.db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketAuditSeq).Delete(seqKey(5))
		return tx.Bucket(bucketAudit).Delete(auditKey(104, 5))
	})
	if chk, _ := s.VerifyAudit(); chk.OK || !strings.Contains(chk.Reason, "newest") {
		t.Fatalf("truncation not found: %+v", chk)
	}

	// Pruning keeps the chain verifiable from its anchor.
	g := openTestFSM(t)
	lg := &logFeeder{t: t}
	g.Store().db.Update(func(tx *bolt.Tx) error { return putUint64(tx.Bucket(bucketMeta), keyAuditCount, MaxAudit-3) })
	for i := 0; i < 8; i++ {
		applyOK(t, g, lg, auditAdd(int64(100+i), "x", ""))
	}
	chk, _ := g.Store().VerifyAudit()
	if !chk.OK || chk.Entries >= 8 {
		t.Fatalf("pruned chain: %+v", chk)
	}
}

func TestAlertFireOncePerEvent(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	mail := func(id string) []SpoolAddSummary {
		return []SpoolAddSummary{{Add: SpoolAdd{ID: id, BlobHash: "h" + id, ReceivedAt: 10, Recipients: []Recipient{{Address: "ops@contacts.test", Domain: "contacts.test"}}}}}
	}
	fire := &AlertFire{Domain: "acme.test", Org: "Acme", Since: 100, Kind: AlertSpooling, At: 110, Mails: mail("A1"),
		SMS: []AlertSMS{{Key: "k1", To: "+447700900001", Text: "down"}}}
	applyOK(t, f, lf, fire)
	// A new leader deciding the same: nothing more is queued.
	again := *fire
	again.Mails, again.At = mail("A2"), 120
	again.SMS = []AlertSMS{{Key: "k2", To: "+447700900001", Text: "down"}}
	applyOK(t, f, lf, &again)
	if _, ok, _ := f.Store().Message("A2"); ok {
		t.Fatal("duplicate alert queued")
	}
	if p, _ := f.Store().SMSOutbox(true, "", 0); len(p) != 1 {
		t.Fatalf("pending SMS: %+v", p)
	}
	applyOK(t, f, lf, &AlertSMSDone{Key: "k1", CreatedAt: 110, At: 111})
	if p, _ := f.Store().SMSOutbox(true, "", 0); len(p) != 0 {
		t.Fatalf("SMS still pending: %+v", p)
	}
	applyOK(t, f, lf, &AlertFire{Domain: "acme.test", Org: "Acme", Since: 100, Kind: AlertReminder, N: 1, At: 200, Mails: mail("A3")})
	applyOK(t, f, lf, &AlertFire{Domain: "acme.test", Org: "Acme", Since: 100, Kind: AlertReminder, N: 1, At: 201, Mails: mail("A4")})
	applyOK(t, f, lf, &AlertFire{Domain: "acme.test", Org: "Acme", Since: 100, Kind: AlertDrained, At: 300, Mails: mail("A5")})
	applyOK(t, f, lf, &AlertFire{Domain: "acme.test", Org: "Acme", Since: 100, Kind: AlertDrained, At: 301, Mails: mail("A6")})
	for id, want := range map[string]bool{"A1": true, "A3": true, "A4": false, "A5": true, "A6": false} {
		if _, ok, _ := f.Store().Message(id); ok != want {
			t.Errorf("message %s queued: %v, want %v", id, ok, want)
		}
	}
	ep, _, _ := f.Store().AlertEpisodeOf("acme.test")
	if !ep.StartSent || ep.Repeats != 1 || !ep.DrainSent {
		t.Fatalf("episode: %+v", ep)
	}
	// A new spell of spooling starts a new episode.
	applyOK(t, f, lf, &AlertFire{Domain: "acme.test", Org: "Acme", Since: 400, Kind: AlertSpooling, At: 401, Mails: mail("A7")})
	if _, ok, _ := f.Store().Message("A7"); !ok {
		t.Fatal("new episode's alert not queued")
	}
}

func TestUserImportIsAllOrNothing(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	applyOK(t, f, lf, &OrgPut{Name: "Acme", Create: true, At: 1})
	err := applyOne(t, f, lf, &UserImport{At: 2, Users: []ImportedUser{
		{Email: "a@acme.test", Role: RoleUser, Org: "Acme"},
		{Email: "b@acme.test", Role: "king", Org: "Acme"},
	}})
	if err == nil {
		t.Fatal("bad import accepted")
	}
	if us, _ := f.Store().Users("Acme"); len(us) != 0 {
		t.Fatalf("half an import: %v", us)
	}
	applyOK(t, f, lf, &UserImport{At: 3, Users: []ImportedUser{
		{Email: "a@acme.test", Role: RoleUser, Org: "Acme", Groups: []string{"sales"}},
		{Email: "b@acme.test", Role: RoleOrgAdmin, Org: "Acme"},
	}})
	u, _, _ := f.Store().User("a@acme.test")
	if u.PasswordSet() || len(u.Groups) != 1 {
		t.Fatalf("imported: %+v", u)
	}
	hash := strings.Repeat("ab", 32)
	applyOK(t, f, lf, &PasswordTokens{At: 4, Tokens: []PasswordToken{{Hash: hash, Email: "a@acme.test", Kind: TokenWelcome, Expires: 100}}})
	if err := applyOne(t, f, lf, &PasswordSetByToken{Hash: hash, PasswordHash: "$argon2id$x", At: 100}); err == nil {
		t.Fatal("expired link worked")
	}
	applyOK(t, f, lf, &PasswordSetByToken{Hash: hash, PasswordHash: "$argon2id$x", At: 99})
	if err := applyOne(t, f, lf, &PasswordSetByToken{Hash: hash, PasswordHash: "$argon2id$y", At: 99}); err == nil {
		t.Fatal("link worked twice")
	}
	u, _, _ = f.Store().User("a@acme.test")
	if u.PasswordHash != "$argon2id$x" {
		t.Fatalf("password not set: %+v", u)
	}
	applyOK(t, f, lf, &UserDelete{Email: "a@acme.test", At: 5})
	if us, _ := f.Store().Users("Acme"); len(us) != 1 {
		t.Fatalf("after delete: %v", us)
	}
}
