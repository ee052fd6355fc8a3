package fsm

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

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

func applyUserEdit(tx *bolt.Tx, c *UserEdit) error {
	users := tx.Bucket(bucketUsers)
	u, err := getJSONish[User](users, c.Email)
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

// UserDelete removes a login, its sessions and its password links. Mail
// spooled for the address stays and is delivered as usual.
type UserDelete struct {
	Email string `codec:"e"`
	At    int64  `codec:"t"`
}

func applyUserDelete(tx *bolt.Tx, c *UserDelete) error {
	users := tx.Bucket(bucketUsers)
	u, err := getJSONish[User](users, c.Email)
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

// Password link kinds.
const (
	TokenWelcome = "welcome"
	TokenReset   = "reset"
)

// PasswordToken is a one-time link to choose a password. Only the hash of
// the token is stored; the token itself is only in the email.
type PasswordToken struct {
	Hash    string `codec:"h"`
	Email   string `codec:"e"`
	Kind    string `codec:"k"`
	Expires int64  `codec:"x"`
	By      string `codec:"b,omitempty"`
}

// PasswordTokens issues links for several users at once.
type PasswordTokens struct {
	Tokens []PasswordToken `codec:"tk"`
	At     int64           `codec:"t"`
}

func applyPasswordTokens(tx *bolt.Tx, c *PasswordTokens) error {
	if len(c.Tokens) == 0 || len(c.Tokens) > MaxImport {
		return &ValidationError{Msg: fmt.Sprintf("1 to %d links at a time", MaxImport)}
	}
	users := tx.Bucket(bucketUsers)
	for _, t := range c.Tokens {
		u, err := getJSONish[User](users, t.Email)
		if err != nil {
			return err
		}
		if u == nil || u.Disabled || u.Role == RolePartner {
			return &ValidationError{Msg: "no active user " + t.Email}
		}
		if len(t.Hash) != 64 || t.Expires <= c.At || (t.Kind != TokenWelcome && t.Kind != TokenReset) {
			return &ValidationError{Msg: "invalid password link"}
		}
	}
	b := tx.Bucket(bucketPwTokens)
	// Links past their expiry are dropped as new ones are issued; the
	// bucket holds at most a few per user.
	var old [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var t PasswordToken
		if err := decodeValue(v, &t); err != nil {
			return err
		}
		if t.Expires <= c.At {
			old = append(old, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	for i := range c.Tokens {
		if err := putValue(b, c.Tokens[i].Hash, &c.Tokens[i]); err != nil {
			return err
		}
	}
	return nil
}

func deleteUserTokens(tx *bolt.Tx, email string) error {
	b := tx.Bucket(bucketPwTokens)
	var del [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var t PasswordToken
		if err := decodeValue(v, &t); err != nil {
			return err
		}
		if t.Email == email {
			del = append(del, append([]byte(nil), k...))
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

// ErrLinkInvalid is the message for a password link that expired, was
// used, or never existed.
const ErrLinkInvalid = "this link has expired or was already used; ask your administrator for a new one"

// PasswordSetByToken sets a password through a link: the link works once
// and not after it expires (checked against At, the proposer's time).
// Every link of the user and every session ends.
type PasswordSetByToken struct {
	Hash         string `codec:"h"`
	PasswordHash string `codec:"ph"`
	At           int64  `codec:"t"`
	Addr         string `codec:"a,omitempty"`
}

// AuditPasswordSet is the audit kind of a password chosen through a link.
const AuditPasswordSet = "password_set"

func applyPasswordSetByToken(tx *bolt.Tx, c *PasswordSetByToken) error {
	t, err := getJSONish[PasswordToken](tx.Bucket(bucketPwTokens), c.Hash)
	if err != nil {
		return err
	}
	if t == nil || t.Expires <= c.At {
		return &ValidationError{Msg: ErrLinkInvalid}
	}
	users := tx.Bucket(bucketUsers)
	u, err := getJSONish[User](users, t.Email)
	if err != nil {
		return err
	}
	if u == nil || u.Disabled {
		return &ValidationError{Msg: ErrLinkInvalid}
	}
	if len(c.PasswordHash) < 10 || c.PasswordHash[:10] != "$argon2id$" {
		return &ValidationError{Msg: "password hash must be argon2id"}
	}
	u.PasswordHash, u.UpdatedAt = c.PasswordHash, c.At
	u.FailedLogins, u.FailedSince = 0, 0
	if err := deleteUserTokens(tx, u.Email); err != nil {
		return err
	}
	if err := deleteUserSessions(tx, u.Email); err != nil {
		return err
	}
	if err := putValue(users, u.Email, u); err != nil {
		return err
	}
	return addAudit(tx, AuditEntry{At: c.At, Kind: AuditPasswordSet, Actor: u.Email, Org: u.Org, Addr: c.Addr, Detail: t.Kind + " link"})
}

// PasswordTokenOf returns a link by the hash of its token.
func (s *Store) PasswordTokenOf(hash string) (t PasswordToken, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		p, err := getJSONish[PasswordToken](tx.Bucket(bucketPwTokens), hash)
		if p != nil {
			t, ok = *p, true
		}
		return err
	})
	return t, ok, err
}
