package fsm

import (
	"bytes"
	"encoding/binary"
	"strings"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Accounts live in replicated state so that login works on every node and
// does not depend on the customer's own server or directory being up. The
// proposer does everything that needs the clock or randomness (password
// hashing, salts, session IDs, TOTP checks against the current time) and the
// command carries the result; Apply only compares and stores.

// Roles of a login.
const (
	RoleUser     = "user"
	RoleOrgAdmin = "org-admin"
	// RolePartner is a channel admin who manages several organisations but
	// never reads their users' mail.
	RolePartner = "partner"
)

// Org is a customer organisation. Domain.Org names it.
type Org struct {
	Name string `codec:"n" json:"name"`
	// RequireTOTP makes every user of the org enrol a second factor
	// before they can read mail.
	RequireTOTP bool  `codec:"rt,omitempty" json:"require_totp"`
	CreatedAt   int64 `codec:"c" json:"-"`
	UpdatedAt   int64 `codec:"u" json:"-"`
}

// User is a login: an org user, an org admin or a partner.
type User struct {
	Email       string `codec:"e" json:"email"`
	DisplayName string `codec:"dn,omitempty" json:"display_name,omitempty"`
	Role        string `codec:"r" json:"role"`
	// Org is the organisation of a user or org admin.
	Org string `codec:"o,omitempty" json:"org,omitempty"`
	// Orgs are the organisations a partner manages.
	Orgs         []string `codec:"os,omitempty" json:"orgs,omitempty"`
	PasswordHash string   `codec:"ph" json:"-"`
	Disabled     bool     `codec:"d,omitempty" json:"disabled"`
	// TOTPSecret is the base32 RFC 6238 secret; TOTPLastStep is the time
	// step of the last code accepted, so a code works once (RFC 6238 §5.2).
	TOTPSecret   string `codec:"ts,omitempty" json:"-"`
	TOTPLastStep int64  `codec:"tl,omitempty" json:"-"`
	// FailedLogins counts failures since FailedSince; it is kept in
	// replicated state so that the per-account limit holds across nodes.
	FailedLogins int   `codec:"fl,omitempty" json:"-"`
	FailedSince  int64 `codec:"fs,omitempty" json:"-"`
	CreatedAt    int64 `codec:"c" json:"-"`
	UpdatedAt    int64 `codec:"u" json:"-"`
	// Groups are the organisation's labels for this user; the
	// organisation can limit the Emergency Inbox to some groups.
	Groups []string `codec:"gr,omitempty" json:"groups,omitempty"`
	// RequireTOTP makes this user enrol a second factor even when the
	// organisation does not require one of everybody.
	RequireTOTP bool `codec:"rq,omitempty" json:"require_totp,omitempty"`
}

// PasswordSet reports whether the user has chosen a password; imported
// users have none until they follow their welcome link.
func (u *User) PasswordSet() bool { return u.PasswordHash != "" }

// TOTPEnrolled reports whether the user has a second factor.
func (u *User) TOTPEnrolled() bool { return u.TOTPSecret != "" }

// Manages reports whether u administers org: an org admin their own org,
// a partner each org linked to them.
func (u *User) Manages(org string) bool {
	switch u.Role {
	case RoleOrgAdmin:
		return u.Org == org
	case RolePartner:
		for _, o := range u.Orgs {
			if o == org {
				return true
			}
		}
	}
	return false
}

// Session is a signed-in browser. Only the hash of its ID is stored, so a
// copy of the state does not sign anyone in.
type Session struct {
	Hash      string `codec:"h"`
	Email     string `codec:"e"`
	CreatedAt int64  `codec:"c"`
	LastSeen  int64  `codec:"l"`
	Expires   int64  `codec:"x"`
	Addr      string `codec:"a,omitempty"`
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	At     int64  `codec:"t" json:"at"`
	Kind   string `codec:"k" json:"kind"`
	Actor  string `codec:"a" json:"actor"`
	Target string `codec:"tg,omitempty" json:"target,omitempty"`
	// Org is the organisation the entry concerns, so org admins and
	// partners read only their own organisations' entries.
	Org    string `codec:"o,omitempty" json:"org,omitempty"`
	Addr   string `codec:"ad,omitempty" json:"addr,omitempty"`
	Detail string `codec:"d,omitempty" json:"detail,omitempty"`
	// Seq numbers entries in the order they were applied; Prev is the
	// Hash of the entry before, and Hash covers this entry and Prev, so
	// a changed, removed or inserted entry breaks the chain (VerifyAudit).
	Seq  uint64 `codec:"sq,omitempty" json:"seq,omitempty"`
	Prev string `codec:"pv,omitempty" json:"prev,omitempty"`
	Hash string `codec:"hs,omitempty" json:"hash,omitempty"`
}

// Audit kinds.
const (
	AuditLogin       = "login"
	AuditLoginFailed = "login_failed"
	AuditOpenInbox   = "open_inbox"
	AuditTOTPEnrol   = "totp_enrol"
)

// MaxAudit bounds the audit log; the oldest entries go first.
const MaxAudit = 100_000

// OrgPut creates an organisation or changes its settings.
type OrgPut struct {
	Name        string `codec:"n"`
	Create      bool   `codec:"c,omitempty"`
	RequireTOTP *bool  `codec:"rt,omitempty"`
	At          int64  `codec:"t"`
}

// UserAdd creates a login. PasswordHash is an argon2id hash computed by the
// proposer.
type UserAdd struct {
	Email        string   `codec:"e"`
	DisplayName  string   `codec:"dn,omitempty"`
	Role         string   `codec:"r"`
	Org          string   `codec:"o,omitempty"`
	Orgs         []string `codec:"os,omitempty"`
	PasswordHash string   `codec:"ph"`
	At           int64    `codec:"t"`
}

// UserSet changes a login; nil fields stay as they are.
type UserSet struct {
	Email        string    `codec:"e"`
	DisplayName  *string   `codec:"dn,omitempty"`
	Role         *string   `codec:"r,omitempty"`
	Orgs         *[]string `codec:"os,omitempty"`
	PasswordHash *string   `codec:"ph,omitempty"`
	Disabled     *bool     `codec:"d,omitempty"`
	// ClearTOTP removes the second factor (an admin's reset).
	ClearTOTP bool  `codec:"ct,omitempty"`
	At        int64 `codec:"t"`
}

// TOTPSet enrols a second factor. Step is the time step of the code the
// user confirmed it with, which is thereby used up.
type TOTPSet struct {
	Email  string `codec:"e"`
	Secret string `codec:"s"`
	Step   int64  `codec:"st"`
	At     int64  `codec:"t"`
	Addr   string `codec:"a,omitempty"`
}

// SessionCreate signs a user in. The proposer checked the password (and
// the TOTP code against its clock); Apply checks that the code's step is
// newer than the last one used, so the same code cannot sign in twice even
// on two nodes at once (RFC 6238 §5.2). It writes the login audit entry.
type SessionCreate struct {
	Hash     string `codec:"h"`
	Email    string `codec:"e"`
	Expires  int64  `codec:"x"`
	TOTPStep int64  `codec:"ts,omitempty"`
	At       int64  `codec:"t"`
	Addr     string `codec:"a,omitempty"`
}

// SessionTouch moves a session's last-seen time and expiry forward.
type SessionTouch struct {
	Hash    string `codec:"h"`
	At      int64  `codec:"t"`
	Expires int64  `codec:"x"`
}

// SessionDelete signs a session out.
type SessionDelete struct {
	Hash string `codec:"h"`
}

// AuditAdd appends to the audit log. A failed login also counts against
// the account's limit.
type AuditAdd struct {
	Entry AuditEntry `codec:"e"`
}

func validName(s string, max int) bool {
	if s == "" || len(s) > max || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// ValidEmail accepts a lower-case addr-spec of a shape the MX also accepts
// (RFC 5321 §4.1.2 Mailbox, without quoted local parts).
func ValidEmail(e string) bool {
	at := strings.LastIndexByte(e, '@')
	if at < 1 || at == len(e)-1 || len(e) > 254 || e != strings.ToLower(e) {
		return false
	}
	for _, r := range e {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),:;<>[\]`, r) {
			return false
		}
	}
	return !strings.Contains(e[at+1:], "@") && strings.Contains(e[at+1:], ".")
}

func getJSONish[T any](b *bolt.Bucket, key string) (*T, error) {
	v := b.Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	var out T
	if err := decodeValue(v, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func putValue(b *bolt.Bucket, key string, v any) error {
	data, err := encodeValue(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

func applyOrgPut(tx *bolt.Tx, c *OrgPut) error {
	if !validName(c.Name, 100) {
		return &ValidationError{Msg: "organisation name must be 1 to 100 printable characters"}
	}
	b := tx.Bucket(bucketOrgs)
	o, err := getJSONish[Org](b, c.Name)
	if err != nil {
		return err
	}
	switch {
	case o != nil && c.Create:
		return &ValidationError{Msg: "organisation already exists: " + c.Name}
	case o == nil && !c.Create:
		return &ValidationError{Msg: "no such organisation: " + c.Name}
	case o == nil:
		o = &Org{Name: c.Name, CreatedAt: c.At}
	}
	if c.RequireTOTP != nil {
		o.RequireTOTP = *c.RequireTOTP
	}
	o.UpdatedAt = c.At
	return putValue(b, c.Name, o)
}

func applyUserAdd(tx *bolt.Tx, c *UserAdd) error {
	if !ValidEmail(c.Email) {
		return &ValidationError{Msg: "invalid email address: " + c.Email}
	}
	if c.DisplayName != "" && !validName(c.DisplayName, 200) {
		return &ValidationError{Msg: "display name must be at most 200 printable characters"}
	}
	if !strings.HasPrefix(c.PasswordHash, "$argon2id$") {
		return &ValidationError{Msg: "password hash must be argon2id"}
	}
	users := tx.Bucket(bucketUsers)
	if users.Get([]byte(c.Email)) != nil {
		return &ValidationError{Msg: "user already exists: " + c.Email}
	}
	u := User{Email: c.Email, DisplayName: c.DisplayName, Role: c.Role, PasswordHash: c.PasswordHash, CreatedAt: c.At, UpdatedAt: c.At}
	orgs := tx.Bucket(bucketOrgs)
	switch c.Role {
	case RoleUser, RoleOrgAdmin:
		if orgs.Get([]byte(c.Org)) == nil {
			return &ValidationError{Msg: "no such organisation: " + c.Org}
		}
		if len(c.Orgs) > 0 {
			return &ValidationError{Msg: "only partners are linked to several organisations"}
		}
		u.Org = c.Org
		if err := tx.Bucket(bucketOrgUsers).Put(orgUserKey(c.Org, c.Email), nil); err != nil {
			return err
		}
	case RolePartner:
		if c.Org != "" {
			return &ValidationError{Msg: "a partner belongs to no organisation; link organisations instead"}
		}
		if err := checkOrgs(orgs, c.Orgs); err != nil {
			return err
		}
		u.Orgs = dedupe(c.Orgs)
	default:
		return &ValidationError{Msg: "role must be user, org-admin or partner"}
	}
	return putValue(users, c.Email, &u)
}

func checkOrgs(orgs *bolt.Bucket, names []string) error {
	for _, o := range names {
		if orgs.Get([]byte(o)) == nil {
			return &ValidationError{Msg: "no such organisation: " + o}
		}
	}
	return nil
}

func dedupe(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func applyUserSet(tx *bolt.Tx, c *UserSet) error {
	users := tx.Bucket(bucketUsers)
	u, err := getJSONish[User](users, c.Email)
	if err != nil {
		return err
	}
	if u == nil {
		return &ValidationError{Msg: "no such user: " + c.Email}
	}
	if c.DisplayName != nil {
		if *c.DisplayName != "" && !validName(*c.DisplayName, 200) {
			return &ValidationError{Msg: "display name must be at most 200 printable characters"}
		}
		u.DisplayName = *c.DisplayName
	}
	if c.Role != nil {
		// Users and org admins swap freely; a partner's shape differs
		// (several orgs, no inbox) and is not reached by a role change.
		if (*c.Role != RoleUser && *c.Role != RoleOrgAdmin) || u.Role == RolePartner {
			return &ValidationError{Msg: "role can change only between user and org-admin"}
		}
		u.Role = *c.Role
	}
	if c.Orgs != nil {
		if u.Role != RolePartner {
			return &ValidationError{Msg: "only partners are linked to organisations"}
		}
		if err := checkOrgs(tx.Bucket(bucketOrgs), *c.Orgs); err != nil {
			return err
		}
		u.Orgs = dedupe(*c.Orgs)
	}
	if c.PasswordHash != nil {
		if !strings.HasPrefix(*c.PasswordHash, "$argon2id$") {
			return &ValidationError{Msg: "password hash must be argon2id"}
		}
		u.PasswordHash = *c.PasswordHash
	}
	if c.Disabled != nil {
		u.Disabled = *c.Disabled
	}
	if c.ClearTOTP {
		u.TOTPSecret = ""
	}
	u.UpdatedAt = c.At
	if c.PasswordHash != nil || (c.Disabled != nil && *c.Disabled) {
		// A new password or a disabled account ends every session.
		if err := deleteUserSessions(tx, u.Email); err != nil {
			return err
		}
	}
	return putValue(users, u.Email, u)
}

func deleteUserSessions(tx *bolt.Tx, email string) error {
	b := tx.Bucket(bucketSessions)
	var del [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var s Session
		if err := decodeValue(v, &s); err != nil {
			return err
		}
		if s.Email == email {
			del = append(del, append([]byte(nil), k...))
			return tx.Bucket(bucketSessExp).Delete(sessExpKey(s.Expires, s.Hash))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range del {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func applyTOTPSet(tx *bolt.Tx, c *TOTPSet) error {
	users := tx.Bucket(bucketUsers)
	u, err := getJSONish[User](users, c.Email)
	if err != nil {
		return err
	}
	if u == nil || u.Disabled {
		return &ValidationError{Msg: "no such user: " + c.Email}
	}
	if c.Secret == "" || len(c.Secret) > 128 {
		return &ValidationError{Msg: "invalid TOTP secret"}
	}
	// The confirming code must not be one already used to sign in.
	if c.Step <= u.TOTPLastStep {
		return &ValidationError{Msg: "this code was already used; wait for the next one"}
	}
	u.TOTPSecret, u.TOTPLastStep, u.UpdatedAt = c.Secret, c.Step, c.At
	if err := putValue(users, u.Email, u); err != nil {
		return err
	}
	return addAudit(tx, AuditEntry{At: c.At, Kind: AuditTOTPEnrol, Actor: u.Email, Org: u.Org, Addr: c.Addr})
}

// ErrTOTPReused is the message of the ValidationError for a code whose
// step was already used.
const ErrTOTPReused = "this code was already used; wait for the next one"

func applySessionCreate(tx *bolt.Tx, c *SessionCreate) error {
	if len(c.Hash) != 64 || c.Expires <= c.At {
		return &ValidationError{Msg: "invalid session"}
	}
	users := tx.Bucket(bucketUsers)
	u, err := getJSONish[User](users, c.Email)
	if err != nil {
		return err
	}
	if u == nil || u.Disabled {
		return &ValidationError{Msg: "no such user: " + c.Email}
	}
	if u.TOTPEnrolled() {
		if c.TOTPStep <= u.TOTPLastStep {
			return &ValidationError{Msg: ErrTOTPReused}
		}
		u.TOTPLastStep = c.TOTPStep
	}
	u.FailedLogins, u.FailedSince = 0, 0
	if err := putValue(users, u.Email, u); err != nil {
		return err
	}
	s := Session{Hash: c.Hash, Email: c.Email, CreatedAt: c.At, LastSeen: c.At, Expires: c.Expires, Addr: c.Addr}
	if err := putValue(tx.Bucket(bucketSessions), c.Hash, &s); err != nil {
		return err
	}
	if err := tx.Bucket(bucketSessExp).Put(sessExpKey(c.Expires, c.Hash), nil); err != nil {
		return err
	}
	if err := pruneSessions(tx, c.At); err != nil {
		return err
	}
	return addAudit(tx, AuditEntry{At: c.At, Kind: AuditLogin, Actor: u.Email, Org: u.Org, Addr: c.Addr})
}

// pruneSessions drops a few expired sessions per login, so the bucket
// stays bounded without any apply walking all of it.
func pruneSessions(tx *bolt.Tx, now int64) error {
	exp := tx.Bucket(bucketSessExp)
	var old [][]byte
	c := exp.Cursor()
	for k, _ := c.First(); k != nil && len(old) < 16; k, _ = c.Next() {
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) > now {
			break
		}
		old = append(old, append([]byte(nil), k...))
	}
	for _, k := range old {
		if err := exp.Delete(k); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSessions).Delete(k[8:]); err != nil {
			return err
		}
	}
	return nil
}

func applySessionTouch(tx *bolt.Tx, c *SessionTouch) error {
	b := tx.Bucket(bucketSessions)
	s, err := getJSONish[Session](b, c.Hash)
	if err != nil || s == nil {
		return err
	}
	if c.Expires > s.Expires {
		if err := tx.Bucket(bucketSessExp).Delete(sessExpKey(s.Expires, s.Hash)); err != nil {
			return err
		}
		s.Expires = c.Expires
		if err := tx.Bucket(bucketSessExp).Put(sessExpKey(s.Expires, s.Hash), nil); err != nil {
			return err
		}
	}
	if c.At > s.LastSeen {
		s.LastSeen = c.At
	}
	return putValue(b, s.Hash, s)
}

func applySessionDelete(tx *bolt.Tx, c *SessionDelete) error {
	b := tx.Bucket(bucketSessions)
	s, err := getJSONish[Session](b, c.Hash)
	if err != nil || s == nil {
		return err
	}
	if err := tx.Bucket(bucketSessExp).Delete(sessExpKey(s.Expires, s.Hash)); err != nil {
		return err
	}
	return b.Delete([]byte(c.Hash))
}

// LoginFailureWindow is the window over which failed logins of one
// account are counted.
const LoginFailureWindow = int64(15 * 60 * 1e9)

func applyAuditAdd(tx *bolt.Tx, c *AuditAdd) error {
	e := c.Entry
	if e.Kind == "" || len(e.Actor) > 254 || len(e.Target) > 254 || len(e.Detail) > 1024 {
		return &ValidationError{Msg: "invalid audit entry"}
	}
	if e.Kind == AuditLoginFailed {
		users := tx.Bucket(bucketUsers)
		u, err := getJSONish[User](users, e.Actor)
		if err != nil {
			return err
		}
		if u != nil {
			if e.At-u.FailedSince > LoginFailureWindow {
				u.FailedLogins, u.FailedSince = 0, e.At
			}
			u.FailedLogins++
			if err := putValue(users, u.Email, u); err != nil {
				return err
			}
			e.Org = u.Org
		}
	}
	return addAudit(tx, e)
}

// Org returns one organisation.
func (s *Store) Org(name string) (o Org, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		p, err := getJSONish[Org](tx.Bucket(bucketOrgs), name)
		if p != nil {
			o, ok = *p, true
		}
		return err
	})
	return o, ok, err
}

// Orgs lists every organisation in name order.
func (s *Store) Orgs() ([]Org, error) {
	var out []Org
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOrgs).ForEach(func(_, v []byte) error {
			var o Org
			if err := decodeValue(v, &o); err != nil {
				return err
			}
			out = append(out, o)
			return nil
		})
	})
	return out, err
}

// User returns one login by its lower-case email address.
func (s *Store) User(email string) (u User, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		p, err := getJSONish[User](tx.Bucket(bucketUsers), email)
		if p != nil {
			u, ok = *p, true
		}
		return err
	})
	return u, ok, err
}

// Users lists the users of org (from the org index), or every login when
// org is "".
func (s *Store) Users(org string) ([]User, error) {
	var out []User
	err := s.view(func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		if org == "" {
			return users.ForEach(func(_, v []byte) error {
				var u User
				if err := decodeValue(v, &u); err != nil {
					return err
				}
				out = append(out, u)
				return nil
			})
		}
		prefix := orgUserPrefix(org)
		c := tx.Bucket(bucketOrgUsers).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			p, err := getJSONish[User](users, string(k[len(prefix):]))
			if err != nil {
				return err
			}
			if p != nil {
				out = append(out, *p)
			}
		}
		return nil
	})
	return out, err
}

// Session returns a session by the hash of its ID.
func (s *Store) Session(hash string) (sess Session, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		p, err := getJSONish[Session](tx.Bucket(bucketSessions), hash)
		if p != nil {
			sess, ok = *p, true
		}
		return err
	})
	return sess, ok, err
}

// Audit returns up to limit audit entries, newest first, that concern one
// of orgs (every entry when orgs is nil), older than before (unix
// nanoseconds; 0 for the newest).
func (s *Store) Audit(orgs []string, before int64, limit int) ([]AuditEntry, error) {
	var out []AuditEntry
	want := map[string]bool{}
	for _, o := range orgs {
		want[o] = true
	}
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else {
			var seek [8]byte
			binary.BigEndian.PutUint64(seek[:], uint64(before))
			k, v = c.Seek(seek[:])
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		// Scanning is bounded so that an org with few entries in a large
		// log does not make one request walk all of it.
		for scanned := 0; k != nil && len(out) < limit && scanned < 20*limit+1000; k, v = c.Prev() {
			scanned++
			var e AuditEntry
			if err := decodeValue(v, &e); err != nil {
				return err
			}
			if orgs == nil || want[e.Org] {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}
