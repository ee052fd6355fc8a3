package fsm

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// Drafts are kept in replicated state while a user types, so a reply
// survives the loss of the node the user was on. Attachments are blobs
// like message bodies; a draft holds a reference on each, so the blob
// collector keeps them until the draft is sent or discarded.

// DraftAttachment is one file attached to a draft.
type DraftAttachment struct {
	Name     string `codec:"n"`
	Type     string `codec:"t"`
	BlobHash string `codec:"b"`
	Size     int64  `codec:"sz"`
}

// Draft is a message being written.
type Draft struct {
	ID    string `codec:"id"`
	Owner string `codec:"o"`
	To    string `codec:"to,omitempty"`
	Cc    string `codec:"cc,omitempty"`
	Bcc   string `codec:"bcc,omitempty"`
	// Subject and Text are what the user typed.
	Subject string `codec:"s,omitempty"`
	Text    string `codec:"x,omitempty"`
	// InReplyTo and References thread a reply (RFC 5322 §3.6.4).
	InReplyTo   string            `codec:"irt,omitempty"`
	References  string            `codec:"ref,omitempty"`
	Attachments []DraftAttachment `codec:"att,omitempty"`
	CreatedAt   int64             `codec:"c"`
	UpdatedAt   int64             `codec:"u"`
}

// MaxDraftText bounds the typed text so a draft command stays far below
// MaxCommandSize with every other field at its limit.
const MaxDraftText = 40 << 10

// MaxDraftAttachments bounds the files of one draft.
const MaxDraftAttachments = 20

// DraftPut creates or replaces a draft.
type DraftPut struct {
	Draft Draft `codec:"d"`
}

// DraftDelete discards a draft (or drops it once sent).
type DraftDelete struct {
	Owner string `codec:"o"`
	ID    string `codec:"id"`
}

func applyDraftPut(tx *bolt.Tx, c *DraftPut) error {
	d := c.Draft
	if d.ID == "" || len(d.ID) > 64 || !ValidEmail(d.Owner) {
		return &ValidationError{Msg: "a draft needs an ID and an owner"}
	}
	if len(d.Text) > MaxDraftText || len(d.Subject) > 1000 || len(d.To)+len(d.Cc)+len(d.Bcc) > 8000 || len(d.References) > 4000 {
		return &ValidationError{Msg: "draft too large"}
	}
	if len(d.Attachments) > MaxDraftAttachments {
		return &ValidationError{Msg: "too many attachments"}
	}
	b := tx.Bucket(bucketDrafts)
	key := draftKey(d.Owner, d.ID)
	var old Draft
	if v := b.Get(key); v != nil {
		if err := decodeValue(v, &old); err != nil {
			return err
		}
		d.CreatedAt = old.CreatedAt
	} else {
		d.CreatedAt = d.UpdatedAt
	}
	for _, a := range d.Attachments {
		if a.BlobHash == "" {
			return &ValidationError{Msg: "attachment without a body"}
		}
		if err := addBlobRef(tx, a.BlobHash, 1); err != nil {
			return err
		}
	}
	for _, a := range old.Attachments {
		if err := addBlobRef(tx, a.BlobHash, -1); err != nil {
			return err
		}
	}
	v, err := encodeValue(&d)
	if err != nil {
		return err
	}
	return b.Put(key, v)
}

func applyDraftDelete(tx *bolt.Tx, c *DraftDelete) error {
	b := tx.Bucket(bucketDrafts)
	key := draftKey(c.Owner, c.ID)
	v := b.Get(key)
	if v == nil {
		return nil
	}
	var d Draft
	if err := decodeValue(v, &d); err != nil {
		return err
	}
	for _, a := range d.Attachments {
		if err := addBlobRef(tx, a.BlobHash, -1); err != nil {
			return err
		}
	}
	return b.Delete(key)
}

// Draft returns one of owner's drafts.
func (s *Store) Draft(owner, id string) (d Draft, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDrafts).Get(draftKey(owner, id))
		if v == nil {
			return nil
		}
		ok = true
		return decodeValue(v, &d)
	})
	return d, ok, err
}

// Drafts lists owner's drafts.
func (s *Store) Drafts(owner string) ([]Draft, error) {
	var out []Draft
	err := s.view(func(tx *bolt.Tx) error {
		prefix := draftPrefix(owner)
		c := tx.Bucket(bucketDrafts).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var d Draft
			if err := decodeValue(v, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}
