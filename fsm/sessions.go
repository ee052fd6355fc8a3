package fsm

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// Sessions are replicated like the rest of the accounts, so a browser
// stays signed in when the node it was talking to goes away.

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

// ErrTOTPReused is the message of the ValidationError for a code whose
// step was already used.
const ErrTOTPReused = "this code was already used; wait for the next one"

func applySessionCreate(tx *bolt.Tx, c *SessionCreate) error {
	if len(c.Hash) != 64 || c.Expires <= c.At {
		return &ValidationError{Msg: "invalid session"}
	}
	users := tx.Bucket(bucketUsers)
	u, err := getValue[User](users, c.Email)
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
	s, err := getValue[Session](b, c.Hash)
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
	s, err := getValue[Session](b, c.Hash)
	if err != nil || s == nil {
		return err
	}
	if err := tx.Bucket(bucketSessExp).Delete(sessExpKey(s.Expires, s.Hash)); err != nil {
		return err
	}
	return b.Delete([]byte(c.Hash))
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

// Session returns a session by the hash of its ID.
func (s *Store) Session(hash string) (sess Session, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		p, err := getValue[Session](tx.Bucket(bucketSessions), hash)
		if p != nil {
			sess, ok = *p, true
		}
		return err
	})
	return sess, ok, err
}
