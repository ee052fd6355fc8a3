// Package fsm is Lifeline's replicated state machine: the command types that
// travel through the Raft log, their deterministic application to a bbolt
// store, the read-side queries, and streaming snapshot and restore.
//
// Nothing here reads the clock or does I/O beyond its own store: every time,
// ID and random choice arrives inside a command, so each node that applies
// the same log reaches the same state (DESIGN.md §3.2).
package fsm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// MaxCommandSize keeps entries far below hashicorp/raft's suggested 512 KiB,
// so a log of spool commands stays cheap to replicate and to snapshot.
const MaxCommandSize = 64 << 10

// ErrCommandTooLarge is returned by Encode when a command would exceed
// MaxCommandSize.
var ErrCommandTooLarge = errors.New("fsm: command exceeds 64 KiB")

// SetAdminToken stores the hash of the operator token, set once when the
// cluster is formed.
type SetAdminToken struct {
	Hash string `codec:"h"`
}

// DomainPut creates or updates a protected domain.
type DomainPut struct {
	Name        string `codec:"n"`
	Destination string `codec:"d"`
	Org         string `codec:"o"`
	At          int64  `codec:"t"` // unix nanoseconds, decided by the proposer
}

// DomainRemove stops protecting a domain. Mail already spooled stays.
type DomainRemove struct {
	Name string `codec:"n"`
}

// Recipient is one envelope recipient with its RFC 3461 parameters.
type Recipient struct {
	Address string   `codec:"a"`
	Domain  string   `codec:"d"`
	Notify  []string `codec:"n,omitempty"`
	ORCPT   string   `codec:"o,omitempty"`
}

// SpoolAdd commits an accepted message. The body is already durable on a
// quorum under BlobHash; the log carries only the envelope.
type SpoolAdd struct {
	ID         string      `codec:"id"`
	From       string      `codec:"f"`
	Recipients []Recipient `codec:"r"`
	Ret        string      `codec:"ret,omitempty"`
	EnvID      string      `codec:"env,omitempty"`
	Body       string      `codec:"b,omitempty"`
	SMTPUTF8   bool        `codec:"u,omitempty"`
	Helo       string      `codec:"h,omitempty"`
	RemoteAddr string      `codec:"ra,omitempty"`
	TLS        bool        `codec:"tls,omitempty"`
	Node       string      `codec:"node,omitempty"`
	BlobHash   string      `codec:"blob"`
	Size       int64       `codec:"sz"`
	ReceivedAt int64       `codec:"at"` // unix nanoseconds
}

func msgpackHandle() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.WriteExt = true
	h.RawToString = true
	return h
}

// Encode serialises a command as its type byte followed by msgpack.
func Encode(cmd any) ([]byte, error) {
	t, ok := typeOf(cmd)
	if !ok {
		return nil, fmt.Errorf("fsm: unknown command %T", cmd)
	}
	var buf bytes.Buffer
	buf.WriteByte(byte(t))
	if err := codec.NewEncoder(&buf, msgpackHandle()).Encode(cmd); err != nil {
		return nil, fmt.Errorf("fsm: encode %T: %w", cmd, err)
	}
	if buf.Len() > MaxCommandSize {
		return nil, ErrCommandTooLarge
	}
	return buf.Bytes(), nil
}

// Decode parses an entry produced by Encode. An unknown type that carries
// IgnorableFlag decodes to (nil, nil).
func Decode(data []byte) (any, error) {
	if len(data) == 0 {
		return nil, errors.New("fsm: empty command")
	}
	t := CommandType(data[0])
	r := &commands[t]
	if !r.known() {
		if t.Ignorable() {
			return nil, nil
		}
		return nil, &UnknownCommandError{Type: t}
	}
	cmd := r.new()
	if err := codec.NewDecoderBytes(data[1:], msgpackHandle()).Decode(cmd); err != nil {
		return nil, fmt.Errorf("fsm: decode type %d: %w", t, err)
	}
	return cmd, nil
}

// UnknownCommandError reports a type byte this release does not know.
type UnknownCommandError struct{ Type CommandType }

func (e *UnknownCommandError) Error() string {
	return fmt.Sprintf("fsm: unknown command type %d", e.Type)
}
