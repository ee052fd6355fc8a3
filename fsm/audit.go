package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// The audit log is a hash chain: each entry carries the hash of the one
// applied before it, and its own hash covers its content and that link.
// Apply computes both from the entry and the stored head, so every node
// builds the same chain. VerifyAudit walks it and names the first entry
// that does not fit: an edited entry fails its own hash, a removed one
// leaves a gap in the sequence, an inserted one is outside the chain,
// and removing the newest ones no longer matches the stored head.
//
// A chain kept beside the data it protects detects tampering by anyone
// who does not also recompute every later hash; noting the head hash that
// `lifeline admin audit verify` prints, now and then, elsewhere, closes
// that gap too.

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
	// AuditPasswordSet is a password chosen through a link.
	AuditPasswordSet = "password_set"
)

// MaxAudit bounds the audit log; the oldest entries go first.
const MaxAudit = 100_000

// AuditAdd appends to the audit log. A failed login also counts against
// the account's limit.
type AuditAdd struct {
	Entry AuditEntry `codec:"e"`
}

// Audited is a command together with the audit entry that records it.
// The proposer fills the entry (who, from where, what); Apply appends it
// only when the inner command succeeds, in the same transaction.
type Audited struct {
	Entry AuditEntry `codec:"e"`
	Cmd   []byte     `codec:"c"`
}

// NewAudited encodes cmd inside an Audited command.
func NewAudited(cmd any, e AuditEntry) (*Audited, error) {
	if _, ok := cmd.(*Audited); ok {
		return nil, fmt.Errorf("fsm: an audited command cannot wrap another")
	}
	data, err := Encode(cmd)
	if err != nil {
		return nil, err
	}
	return &Audited{Entry: e, Cmd: data}, nil
}

// LoginFailureWindow is the window over which failed logins of one
// account are counted.
const LoginFailureWindow = int64(15 * 60 * 1e9)

// checkAuditEntry refuses an entry without a kind, or with fields longer
// than any real one, which would swell a log kept to MaxAudit entries.
func checkAuditEntry(e *AuditEntry) error {
	if e.Kind == "" || len(e.Actor) > 254 || len(e.Target) > 254 || len(e.Detail) > 1024 {
		return &ValidationError{Msg: "invalid audit entry"}
	}
	return nil
}

func applyAuditAdd(tx *bolt.Tx, c *AuditAdd) error {
	e := c.Entry
	if err := checkAuditEntry(&e); err != nil {
		return err
	}
	if e.Kind == AuditLoginFailed {
		users := tx.Bucket(bucketUsers)
		u, err := getValue[User](users, e.Actor)
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

func applyAudited(a *applier, c *Audited) error {
	e := c.Entry
	if err := checkAuditEntry(&e); err != nil {
		return err
	}
	if len(c.Cmd) > 0 {
		if CommandType(c.Cmd[0]) == TypeAudited {
			return &ValidationError{Msg: "an audited command cannot wrap another"}
		}
		if err := a.applyEntry(a, c.Cmd); err != nil {
			return err
		}
	}
	return addAudit(a.tx, e)
}

// AuditHash is the chain hash of e: sha256 over a versioned, length-
// prefixed encoding of every field but Hash.
func AuditHash(e *AuditEntry) string {
	h := sha256.New()
	h.Write([]byte("lifeline audit v1\x00"))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], e.Seq)
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.At))
	h.Write(n[:])
	for _, f := range []string{e.Kind, e.Actor, e.Target, e.Org, e.Addr, e.Detail, e.Prev} {
		binary.BigEndian.PutUint32(n[:4], uint32(len(f)))
		h.Write(n[:4])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func addAudit(tx *bolt.Tx, e AuditEntry) error {
	meta := tx.Bucket(bucketMeta)
	var seq, count uint64
	if v := meta.Get(keyAuditSeq); len(v) == 8 {
		seq = beUint64(v)
	}
	if v := meta.Get(keyAuditCount); len(v) == 8 {
		count = beUint64(v)
	}
	seq++
	e.Seq = seq
	e.Prev = string(meta.Get(keyAuditHead))
	e.Hash = AuditHash(&e)
	k := auditKey(e.At, seq)
	b := tx.Bucket(bucketAudit)
	if err := putValue(b, string(k), &e); err != nil {
		return err
	}
	chain := tx.Bucket(bucketAuditSeq)
	if err := chain.Put(seqKey(seq), k); err != nil {
		return err
	}
	if err := meta.Put(keyAuditHead, []byte(e.Hash)); err != nil {
		return err
	}
	count++
	// Keep the log bounded: past MaxAudit, each new entry drops the
	// oldest ones (a couple at a time, so a shrunk limit converges).
	// Entries from before the chain go first, then the chain's oldest,
	// whose hash becomes the anchor the next one must link to.
	for n := 0; count > MaxAudit && n < 2; n++ {
		fk, fv := b.Cursor().First()
		if fk == nil {
			break
		}
		var first AuditEntry
		if err := decodeValue(fv, &first); err != nil {
			return err
		}
		if first.Hash != "" {
			sk, sv := chain.Cursor().First()
			if sk == nil {
				break
			}
			ov := b.Get(sv)
			if ov != nil {
				if err := decodeValue(ov, &first); err != nil {
					return err
				}
			}
			anchor := append(append([]byte(nil), sk...), first.Hash...)
			if err := meta.Put(keyAuditAnchor, anchor); err != nil {
				return err
			}
			fk = append([]byte(nil), sv...)
			if err := chain.Delete(append([]byte(nil), sk...)); err != nil {
				return err
			}
		} else {
			fk = append([]byte(nil), fk...)
		}
		if err := b.Delete(fk); err != nil {
			return err
		}
		count--
	}
	if err := putUint64(meta, keyAuditSeq, seq); err != nil {
		return err
	}
	return putUint64(meta, keyAuditCount, count)
}

// AuditCheck is the outcome of VerifyAudit.
type AuditCheck struct {
	OK bool `json:"ok"`
	// Entries is how many chained entries were checked; Legacy counts
	// entries from before the chain began, which it cannot vouch for.
	Entries int    `json:"entries"`
	Legacy  int    `json:"legacy,omitempty"`
	Head    string `json:"head,omitempty"`
	// BrokenSeq and BrokenAt name the first entry that does not fit,
	// and Reason says how.
	BrokenSeq uint64 `json:"broken_seq,omitempty"`
	BrokenAt  int64  `json:"broken_at,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// VerifyAudit recomputes the audit chain from the oldest kept entry to
// the newest and reports the first broken link.
func (s *Store) VerifyAudit() (AuditCheck, error) {
	var res AuditCheck
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		b := tx.Bucket(bucketAudit)
		broken := func(seq uint64, at int64, why string) error {
			res.OK, res.BrokenSeq, res.BrokenAt, res.Reason = false, seq, at, why
			return nil
		}
		expectPrev := ""
		var expectSeq uint64
		if a := meta.Get(keyAuditAnchor); len(a) > 8 {
			expectSeq = beUint64(a[:8]) + 1
			expectPrev = string(a[8:])
		}
		res.OK = true
		c := tx.Bucket(bucketAuditSeq).Cursor()
		for sk, sv := c.First(); sk != nil; sk, sv = c.Next() {
			seq := beUint64(sk)
			if expectSeq != 0 && seq != expectSeq {
				return broken(expectSeq, 0, fmt.Sprintf("entry %d is missing", expectSeq))
			}
			v := b.Get(sv)
			if v == nil {
				return broken(seq, 0, fmt.Sprintf("entry %d is missing", seq))
			}
			var e AuditEntry
			if err := decodeValue(v, &e); err != nil {
				return broken(seq, 0, "entry cannot be read: "+err.Error())
			}
			if e.Seq != seq || !bytes.Equal(sv, auditKey(e.At, e.Seq)) {
				return broken(seq, e.At, "entry was moved or renumbered")
			}
			if AuditHash(&e) != e.Hash {
				return broken(seq, e.At, "entry was changed: its hash does not match its content")
			}
			if e.Prev != expectPrev {
				return broken(seq, e.At, "link to the previous entry is broken")
			}
			expectPrev, expectSeq = e.Hash, seq+1
			res.Entries++
		}
		if head := string(meta.Get(keyAuditHead)); head != expectPrev {
			return broken(expectSeq, 0, "the newest entries were removed: the chain ends before the recorded head")
		}
		res.Head = expectPrev
		// Every entry with a hash must be one the chain walked.
		chained := 0
		err := b.ForEach(func(_, v []byte) error {
			var e AuditEntry
			if err := decodeValue(v, &e); err != nil {
				return err
			}
			if e.Hash == "" && e.Seq == 0 {
				res.Legacy++
			} else {
				chained++
			}
			return nil
		})
		if err != nil {
			return broken(0, 0, "log cannot be read: "+err.Error())
		}
		if chained != res.Entries {
			return broken(0, 0, fmt.Sprintf("%d entries are outside the chain", chained-res.Entries))
		}
		return nil
	})
	return res, err
}

// AuditFilter selects audit entries. Empty fields match everything.
type AuditFilter struct {
	// Orgs limits entries to these organisations; nil means every entry
	// (the operator), an empty non-nil slice none.
	Orgs   []string
	Kind   string
	Actor  string // substring, case-insensitive
	Target string // substring, case-insensitive
	// Since and Until bound the time (unix nanoseconds, inclusive).
	Since, Until int64
	// Before is the cursor: entries strictly older than this key (the
	// next that SearchAudit returned with the previous page).
	Before string
	Limit  int
}

// SearchAudit returns entries matching f, newest first. It walks the log
// by time from the cursor; the log is bounded by MaxAudit, so a search
// reads at most that many entries.
func (s *Store) SearchAudit(f AuditFilter) (out []AuditEntry, next string, err error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	if f.Orgs != nil && len(f.Orgs) == 0 {
		return nil, "", nil
	}
	want := map[string]bool{}
	for _, o := range f.Orgs {
		want[o] = true
	}
	actor, target := strings.ToLower(f.Actor), strings.ToLower(f.Target)
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		var k, v, lastKey []byte
		switch {
		case f.Before != "":
			seek, err := hex.DecodeString(f.Before)
			if err != nil || len(seek) != 16 {
				return &ValidationError{Msg: "invalid cursor"}
			}
			k, v = c.Seek(seek)
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && bytes.Compare(k, seek) >= 0 {
				k, v = c.Prev()
			}
		case f.Until != 0:
			seek := auditKey(f.Until+1, 0)
			k, v = c.Seek(seek)
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		default:
			k, v = c.Last()
		}
		for ; k != nil; k, v = c.Prev() {
			if len(k) == 16 && f.Since != 0 && int64(beUint64(k[:8])) < f.Since {
				break
			}
			var e AuditEntry
			if err := decodeValue(v, &e); err != nil {
				return err
			}
			if f.Orgs != nil && !want[e.Org] {
				continue
			}
			if f.Kind != "" && e.Kind != f.Kind {
				continue
			}
			if actor != "" && !strings.Contains(strings.ToLower(e.Actor), actor) {
				continue
			}
			if target != "" && !strings.Contains(strings.ToLower(e.Target), target) {
				continue
			}
			if len(out) == f.Limit {
				next = hex.EncodeToString(lastKey)
				return nil
			}
			out = append(out, e)
			lastKey = append(lastKey[:0], k...)
		}
		return nil
	})
	return out, next, err
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
