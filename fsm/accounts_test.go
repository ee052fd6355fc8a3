package fsm

import (
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

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
