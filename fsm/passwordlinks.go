package fsm

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Password links are how a user chooses a password: a welcome link for an
// imported user, a reset link for a forgotten one.

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
		u, err := getValue[User](users, t.Email)
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

func applyPasswordSetByToken(tx *bolt.Tx, c *PasswordSetByToken) error {
	t, err := getValue[PasswordToken](tx.Bucket(bucketPwTokens), c.Hash)
	if err != nil {
		return err
	}
	if t == nil || t.Expires <= c.At {
		return &ValidationError{Msg: ErrLinkInvalid}
	}
	users := tx.Bucket(bucketUsers)
	u, err := getValue[User](users, t.Email)
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
		p, err := getValue[PasswordToken](tx.Bucket(bucketPwTokens), hash)
		if p != nil {
			t, ok = *p, true
		}
		return err
	})
	return t, ok, err
}
