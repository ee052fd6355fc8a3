package fsm

import (
	"bytes"
	"fmt"
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

// OrgSettings are an organisation's console settings.
type OrgSettings struct {
	Org    string        `codec:"o" json:"org"`
	Alerts AlertSettings `codec:"al" json:"alerts"`
	// InboxGroups, when not empty, limits the Emergency Inbox to users in
	// one of these groups (org admins always have it).
	InboxGroups []string `codec:"ig,omitempty" json:"inbox_groups,omitempty"`
	UpdatedAt   int64    `codec:"u" json:"-"`
}

// InboxAllowed reports whether u may use the Emergency Inbox.
func (o *OrgSettings) InboxAllowed(u *User) bool {
	if len(o.InboxGroups) == 0 || u.Role == RoleOrgAdmin {
		return true
	}
	for _, g := range u.Groups {
		for _, w := range o.InboxGroups {
			if g == w {
				return true
			}
		}
	}
	return false
}

// defaultOrgSettings are the settings of an organisation that never
// chose any: alerts off, to both contacts, by email, reminders every 4h.
func defaultOrgSettings(org string) OrgSettings {
	return OrgSettings{Org: org, Alerts: AlertSettings{To: AlertToBoth, Via: AlertByEmail, RepeatEvery: DefaultAlertRepeat}}
}

// SetAdminToken stores the hash of the operator token, set once when the
// cluster is formed.
type SetAdminToken struct {
	Hash string `codec:"h"`
}

// OrgPut creates an organisation or changes its settings.
type OrgPut struct {
	Name        string `codec:"n"`
	Create      bool   `codec:"c,omitempty"`
	RequireTOTP *bool  `codec:"rt,omitempty"`
	At          int64  `codec:"t"`
}

// OrgSettingsSet changes an organisation's settings; nil fields stay.
type OrgSettingsSet struct {
	Org         string         `codec:"o"`
	Alerts      *AlertSettings `codec:"al,omitempty"`
	InboxGroups *[]string      `codec:"ig,omitempty"`
	At          int64          `codec:"t"`
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

// ImportedUser is one user of a UserImport. Imported users have no
// password: they choose one through a welcome link (PasswordTokens).
type ImportedUser struct {
	Email       string   `codec:"e"`
	DisplayName string   `codec:"dn,omitempty"`
	Role        string   `codec:"r"`
	Org         string   `codec:"o"`
	Groups      []string `codec:"g,omitempty"`
}

// UserImport creates several users at once: all of them, or, if any one
// is refused, none.
type UserImport struct {
	Users []ImportedUser `codec:"u"`
	At    int64          `codec:"t"`
}

// MaxImport is the most users one UserImport carries, which keeps the
// command well inside MaxCommandSize.
const MaxImport = 400

// UserEdit changes a user of an organisation; nil fields stay.
type UserEdit struct {
	Email       string    `codec:"e"`
	DisplayName *string   `codec:"dn,omitempty"`
	Role        *string   `codec:"r,omitempty"`
	Groups      *[]string `codec:"g,omitempty"`
	Disabled    *bool     `codec:"d,omitempty"`
	RequireTOTP *bool     `codec:"rq,omitempty"`
	ClearTOTP   bool      `codec:"ct,omitempty"`
	At          int64     `codec:"t"`
}

// UserDelete removes a login, its sessions and its password links. Mail
// spooled for the address stays and is delivered as usual.
type UserDelete struct {
	Email string `codec:"e"`
	At    int64  `codec:"t"`
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

// ValidGroup accepts a group name: 1 to 64 printable characters without
// commas or semicolons (the CSV import separates groups with them).
func ValidGroup(g string) bool {
	return validName(g, 64) && !strings.ContainsAny(g, ",;")
}

func checkGroups(gs []string) error {
	if len(gs) > 50 {
		return &ValidationError{Msg: "a user can be in at most 50 groups"}
	}
	for _, g := range gs {
		if !ValidGroup(g) {
			return &ValidationError{Msg: "invalid group name: " + g}
		}
	}
	return nil
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

func applySetAdminToken(tx *bolt.Tx, c *SetAdminToken) error {
	return tx.Bucket(bucketMeta).Put(keyAdminToken, []byte(c.Hash))
}

func applyOrgPut(tx *bolt.Tx, c *OrgPut) error {
	if !validName(c.Name, 100) {
		return &ValidationError{Msg: "organisation name must be 1 to 100 printable characters"}
	}
	b := tx.Bucket(bucketOrgs)
	o, err := getValue[Org](b, c.Name)
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

func applyOrgSettingsSet(tx *bolt.Tx, c *OrgSettingsSet) error {
	if tx.Bucket(bucketOrgs).Get([]byte(c.Org)) == nil {
		return &ValidationError{Msg: "no such organisation: " + c.Org}
	}
	if c.Alerts != nil {
		if err := checkAlerts(c.Alerts); err != nil {
			return err
		}
	}
	if c.InboxGroups != nil {
		for _, g := range *c.InboxGroups {
			if !ValidGroup(g) {
				return &ValidationError{Msg: "invalid group name: " + g}
			}
		}
	}
	b := tx.Bucket(bucketOrgSettings)
	o, err := getValue[OrgSettings](b, c.Org)
	if err != nil {
		return err
	}
	if o == nil {
		d := defaultOrgSettings(c.Org)
		o = &d
	}
	if c.Alerts != nil {
		o.Alerts = *c.Alerts
	}
	if c.InboxGroups != nil {
		o.InboxGroups = dedupe(*c.InboxGroups)
	}
	o.UpdatedAt = c.At
	return putValue(b, c.Org, o)
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

func applyUserSet(tx *bolt.Tx, c *UserSet) error {
	users := tx.Bucket(bucketUsers)
	u, err := getValue[User](users, c.Email)
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

func applyTOTPSet(tx *bolt.Tx, c *TOTPSet) error {
	users := tx.Bucket(bucketUsers)
	u, err := getValue[User](users, c.Email)
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

func applyUserImport(tx *bolt.Tx, c *UserImport) error {
	if len(c.Users) == 0 || len(c.Users) > MaxImport {
		return &ValidationError{Msg: fmt.Sprintf("an import holds 1 to %d users", MaxImport)}
	}
	users, orgs := tx.Bucket(bucketUsers), tx.Bucket(bucketOrgs)
	seen := map[string]bool{}
	// Check everything first: an import is all or nothing.
	for _, u := range c.Users {
		switch {
		case !ValidEmail(u.Email):
			return &ValidationError{Msg: "invalid email address: " + u.Email}
		case seen[u.Email]:
			return &ValidationError{Msg: "listed twice: " + u.Email}
		case users.Get([]byte(u.Email)) != nil:
			return &ValidationError{Msg: "user already exists: " + u.Email}
		case u.Role != RoleUser && u.Role != RoleOrgAdmin:
			return &ValidationError{Msg: "role must be user or org-admin: " + u.Email}
		case orgs.Get([]byte(u.Org)) == nil:
			return &ValidationError{Msg: "no such organisation: " + u.Org}
		case u.DisplayName != "" && !validName(u.DisplayName, 200):
			return &ValidationError{Msg: "display name must be at most 200 printable characters: " + u.Email}
		}
		if err := checkGroups(u.Groups); err != nil {
			return err
		}
		seen[u.Email] = true
	}
	for _, u := range c.Users {
		nu := User{Email: u.Email, DisplayName: u.DisplayName, Role: u.Role, Org: u.Org, Groups: dedupe(u.Groups), CreatedAt: c.At, UpdatedAt: c.At}
		if err := putValue(users, u.Email, &nu); err != nil {
			return err
		}
		if err := tx.Bucket(bucketOrgUsers).Put(orgUserKey(u.Org, u.Email), nil); err != nil {
			return err
		}
	}
	return nil
}

func applyUserEdit(tx *bolt.Tx, c *UserEdit) error {
	users := tx.Bucket(bucketUsers)
	u, err := getValue[User](users, c.Email)
	if err != nil {
		return err
	}
	if u == nil {
		return &ValidationError{Msg: "no such user: " + c.Email}
	}
	if c.DisplayName != nil && *c.DisplayName != "" && !validName(*c.DisplayName, 200) {
		return &ValidationError{Msg: "display name must be at most 200 printable characters"}
	}
	if c.Role != nil && ((*c.Role != RoleUser && *c.Role != RoleOrgAdmin) || u.Role == RolePartner) {
		return &ValidationError{Msg: "role can change only between user and org-admin"}
	}
	if c.Groups != nil {
		if u.Role == RolePartner {
			return &ValidationError{Msg: "partners are in no group"}
		}
		if err := checkGroups(*c.Groups); err != nil {
			return err
		}
	}
	if c.DisplayName != nil {
		u.DisplayName = *c.DisplayName
	}
	if c.Role != nil {
		u.Role = *c.Role
	}
	if c.Groups != nil {
		u.Groups = dedupe(*c.Groups)
	}
	if c.RequireTOTP != nil {
		u.RequireTOTP = *c.RequireTOTP
	}
	if c.ClearTOTP {
		u.TOTPSecret = ""
	}
	if c.Disabled != nil {
		u.Disabled = *c.Disabled
		if u.Disabled {
			if err := deleteUserSessions(tx, u.Email); err != nil {
				return err
			}
		}
	}
	u.UpdatedAt = c.At
	return putValue(users, u.Email, u)
}

func applyUserDelete(tx *bolt.Tx, c *UserDelete) error {
	users := tx.Bucket(bucketUsers)
	u, err := getValue[User](users, c.Email)
	if err != nil {
		return err
	}
	if u == nil {
		return &ValidationError{Msg: "no such user: " + c.Email}
	}
	if err := deleteUserSessions(tx, u.Email); err != nil {
		return err
	}
	if err := deleteUserTokens(tx, u.Email); err != nil {
		return err
	}
	if u.Org != "" {
		if err := tx.Bucket(bucketOrgUsers).Delete(orgUserKey(u.Org, u.Email)); err != nil {
			return err
		}
	}
	return users.Delete([]byte(u.Email))
}

// AdminTokenHash returns the stored hash of the operator token, or "".
func (s *Store) AdminTokenHash() (string, error) {
	var h string
	err := s.view(func(tx *bolt.Tx) error {
		h = string(tx.Bucket(bucketMeta).Get(keyAdminToken))
		return nil
	})
	return h, err
}

// Org returns one organisation.
func (s *Store) Org(name string) (o Org, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		p, err := getValue[Org](tx.Bucket(bucketOrgs), name)
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

// OrgSettingsOf returns an organisation's settings (the defaults when
// never set: alerts off, to both contacts, by email, reminders every 4h).
func (s *Store) OrgSettingsOf(org string) (OrgSettings, error) {
	o := defaultOrgSettings(org)
	err := s.view(func(tx *bolt.Tx) error {
		p, err := getValue[OrgSettings](tx.Bucket(bucketOrgSettings), org)
		if p != nil {
			o = *p
		}
		return err
	})
	return o, err
}

// User returns one login by its lower-case email address.
func (s *Store) User(email string) (u User, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		p, err := getValue[User](tx.Bucket(bucketUsers), email)
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
			p, err := getValue[User](users, string(k[len(prefix):]))
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
