package fsm

import (
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

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
