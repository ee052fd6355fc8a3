// Package smtp holds Lifeline's SMTP faces: the MX listener that accepts
// mail for protected domains, and (in subpackages) the outbound client and
// DSN composition. It knows nothing about Raft; the node wires it to the
// replicated queue through the Queue interface.
package smtp

import (
	"context"
	"io"
	"time"
)

// Recipient is one RCPT TO with its RFC 3461 parameters.
type Recipient struct {
	// Address is the normalised mailbox: the local part in the canonical
	// form of mailbox.Quote (a Dot-string as given, or a Quoted-string when
	// it needs one, RFC 5321 §4.1.2), "@", the domain in lower case without
	// a trailing dot. It travels in this exact form to delivery and DSNs.
	Address string
	// Domain is the lower-case domain part of Address.
	Domain string
	// Notify holds the RFC 3461 §4.1 NOTIFY keywords (NEVER, SUCCESS,
	// FAILURE, DELAY); empty when the client gave none.
	Notify []string
	// ORCPT is the RFC 3461 §4.2 original recipient, "type;address",
	// xtext-decoded; empty when the client gave none.
	ORCPT string
}

// Envelope is everything about one accepted transaction except the body.
type Envelope struct {
	// ID is the queue ID, chosen by the receiving session before DATA so it
	// can appear in the Received: header.
	ID string
	// From is the reverse path, its local part in canonical form as for
	// Recipient.Address (its domain as given); empty for the null sender.
	From       string
	Recipients []Recipient
	// Ret is the RFC 3461 §4.3 RET value: "FULL", "HDRS" or "".
	Ret string
	// EnvID is the RFC 3461 §4.4 ENVID, xtext-decoded.
	EnvID      string
	Body       string // "7BIT", "8BITMIME" or ""
	SMTPUTF8   bool
	Helo       string
	RemoteAddr string
	TLS        bool
	ReceivedAt time.Time
}

// BlobWriter receives a message body as it streams in. Nothing is durable
// until Commit returns; Abort discards what was written.
type BlobWriter interface {
	io.Writer
	// Commit fsyncs the body and makes it addressable by its sha256 hash
	// (lower-case hex).
	Commit() (hash string, size int64, err error)
	Abort() error
}

// Queue is what the MX needs from the node.
type Queue interface {
	// Protected reports whether mail for domain (lower case, no trailing
	// dot) is accepted. An error means the state cannot be read: 451.
	Protected(domain string) (bool, error)
	// NewBlob opens a writer for one message body.
	NewBlob() (BlobWriter, error)
	// Enqueue makes the message durable on a quorum and commits it to the
	// replicated spool. Only a nil error may be answered with 250; any
	// error is answered 451 4.3.0.
	Enqueue(ctx context.Context, env *Envelope, hash string, size int64) error
}

// StorageGauge is implemented by a Queue that can tell, before the body is
// sent, that it has no room to keep a message.
type StorageGauge interface {
	// Room returns an error when a message of size bytes (0 when the
	// client declared none) cannot be stored now.
	Room(size int64) error
}

// PostmasterRouter is implemented by a Queue that knows where mail to the
// bare "<postmaster>" goes (RFC 5321 §4.5.1 requires accepting it).
type PostmasterRouter interface {
	// Postmaster returns the mailbox that stands for the bare postmaster,
	// "" when there is none.
	Postmaster() (string, error)
}
