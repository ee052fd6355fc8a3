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

// CommandType is the first byte of every log entry. The list is append-only:
// a changed shape gets a new type, so a node running the previous release
// can still apply every entry it understands (DESIGN.md §3.3).
type CommandType byte

const (
	TypeSetAdminToken CommandType = 1
	TypeDomainPut     CommandType = 2
	TypeDomainRemove  CommandType = 3
	TypeSpoolAdd      CommandType = 4
	TypeAttemptStart  CommandType = 5
	TypeAttemptResult CommandType = 6
	TypeDomainState   CommandType = 7
	TypeDelayNotified CommandType = 8
	TypeQueueOp       CommandType = 9
	// Emergency Inbox and accounts.
	TypeSpoolAddSummary CommandType = 10
	TypeMarkRead        CommandType = 11
	TypeOrgPut          CommandType = 12
	TypeUserAdd         CommandType = 13
	TypeUserSet         CommandType = 14
	TypeTOTPSet         CommandType = 15
	TypeSessionCreate   CommandType = 16
	TypeSessionTouch    CommandType = 17
	TypeSessionDelete   CommandType = 18
	TypeAuditAdd        CommandType = 19
	TypeDraftPut        CommandType = 20
	TypeDraftDelete     CommandType = 21
)

// IgnorableFlag marks a type that an older node may skip. Types without it
// make an older node stop (panic) rather than silently diverge.
const IgnorableFlag CommandType = 0x80

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
	t, err := typeOf(cmd)
	if err != nil {
		return nil, err
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

func typeOf(cmd any) (CommandType, error) {
	switch cmd.(type) {
	case *SetAdminToken:
		return TypeSetAdminToken, nil
	case *DomainPut:
		return TypeDomainPut, nil
	case *DomainRemove:
		return TypeDomainRemove, nil
	case *SpoolAdd:
		return TypeSpoolAdd, nil
	case *AttemptStart:
		return TypeAttemptStart, nil
	case *AttemptResult:
		return TypeAttemptResult, nil
	case *DomainState:
		return TypeDomainState, nil
	case *DelayNotified:
		return TypeDelayNotified, nil
	case *QueueOp:
		return TypeQueueOp, nil
	case *SpoolAddSummary:
		return TypeSpoolAddSummary, nil
	case *MarkRead:
		return TypeMarkRead, nil
	case *OrgPut:
		return TypeOrgPut, nil
	case *UserAdd:
		return TypeUserAdd, nil
	case *UserSet:
		return TypeUserSet, nil
	case *TOTPSet:
		return TypeTOTPSet, nil
	case *SessionCreate:
		return TypeSessionCreate, nil
	case *SessionTouch:
		return TypeSessionTouch, nil
	case *SessionDelete:
		return TypeSessionDelete, nil
	case *AuditAdd:
		return TypeAuditAdd, nil
	case *DraftPut:
		return TypeDraftPut, nil
	case *DraftDelete:
		return TypeDraftDelete, nil
	}
	if t, ok := consoleTypeOf(cmd); ok {
		return t, nil
	}
	if t, ok := noticeTypeOf(cmd); ok {
		return t, nil
	}
	return 0, fmt.Errorf("fsm: unknown command %T", cmd)
}

// Decode parses an entry produced by Encode. An unknown type that carries
// IgnorableFlag decodes to (nil, nil).
func Decode(data []byte) (any, error) {
	if len(data) == 0 {
		return nil, errors.New("fsm: empty command")
	}
	t := CommandType(data[0])
	var cmd any
	switch t {
	case TypeSetAdminToken:
		cmd = &SetAdminToken{}
	case TypeDomainPut:
		cmd = &DomainPut{}
	case TypeDomainRemove:
		cmd = &DomainRemove{}
	case TypeSpoolAdd:
		cmd = &SpoolAdd{}
	case TypeAttemptStart:
		cmd = &AttemptStart{}
	case TypeAttemptResult:
		cmd = &AttemptResult{}
	case TypeDomainState:
		cmd = &DomainState{}
	case TypeDelayNotified:
		cmd = &DelayNotified{}
	case TypeQueueOp:
		cmd = &QueueOp{}
	case TypeSpoolAddSummary:
		cmd = &SpoolAddSummary{}
	case TypeMarkRead:
		cmd = &MarkRead{}
	case TypeOrgPut:
		cmd = &OrgPut{}
	case TypeUserAdd:
		cmd = &UserAdd{}
	case TypeUserSet:
		cmd = &UserSet{}
	case TypeTOTPSet:
		cmd = &TOTPSet{}
	case TypeSessionCreate:
		cmd = &SessionCreate{}
	case TypeSessionTouch:
		cmd = &SessionTouch{}
	case TypeSessionDelete:
		cmd = &SessionDelete{}
	case TypeAuditAdd:
		cmd = &AuditAdd{}
	case TypeDraftPut:
		cmd = &DraftPut{}
	case TypeDraftDelete:
		cmd = &DraftDelete{}
	default:
		if c := newConsoleCommand(t); c != nil {
			cmd = c
			break
		}
		if c := newNoticeCommand(t); c != nil {
			cmd = c
			break
		}
		if t&IgnorableFlag != 0 {
			return nil, nil
		}
		return nil, &UnknownCommandError{Type: t}
	}
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
