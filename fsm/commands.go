package fsm

import (
	"log/slog"
	"reflect"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// CommandType is the first byte of every log entry.
type CommandType byte

// The command types. The list is append-only: a number, once released,
// means the same shape forever, and a changed shape gets a new number, so
// a node of the previous release still applies every entry it knows
// (docs/design.md §3.3). A new type takes the next free number (36), gets its
// row in commands below, and stays out of the frozen baseline
// (InBaseline): the cluster proposes it only once every server knows it.
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
	// TypeSpoolAddSummary is a SpoolAdd with the header summary the
	// Emergency Inbox lists.
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
	// TypeAudited wraps another command with the audit entry that records
	// it, so the change and its audit line commit together or not at all.
	TypeAudited CommandType = 22
	// TypeDomainSet creates or changes a domain with several destinations
	// tried in order of preference (DomainPut carries one).
	TypeDomainSet           CommandType = 23
	TypeDomainRequest       CommandType = 24
	TypeDomainApprove       CommandType = 25
	TypeDomainRequestDelete CommandType = 26
	TypeOrgSettingsSet      CommandType = 27
	TypeSMSGatewaySet       CommandType = 28
	TypeAlertFire           CommandType = 29
	TypeAlertSMSDone        CommandType = 30
	TypeUserImport          CommandType = 31
	TypeUserEdit            CommandType = 32
	TypeUserDelete          CommandType = 33
	TypePasswordTokens      CommandType = 34
	TypePasswordSetByToken  CommandType = 35
	// TypeNoticeAdd took a number clear of the types that were still
	// being added from 22 on when it came; 36 to 59 stay free.
	TypeNoticeAdd CommandType = 60
)

// IgnorableFlag marks a type that an older node may skip. Types without it
// make an older node stop (panic) rather than silently diverge. The flag
// is part of the number because the number is all that an older node,
// which has no row for the type, can read (docs/design.md §3.2).
const IgnorableFlag CommandType = 0x80

// Ignorable reports whether a node that does not know t may skip it.
func (t CommandType) Ignorable() bool { return t&IgnorableFlag != 0 }

// String is the name of t's command, or its number when this build has
// no row for it.
func (t CommandType) String() string {
	if r := &commands[t]; r.known() {
		return r.name
	}
	return "CommandType(" + strconv.Itoa(int(t)) + ")"
}

// commands is the registry: the row of every type in the list above,
// indexed by its number. Encode, Decode, Apply and the advertised type
// set (KnownTypes) all read it, so a type is known to all four or to none.
// It is only ever read.
var commands = [256]commandRow{
	TypeSetAdminToken:       row(applySetAdminToken),
	TypeDomainPut:           row(applyDomainPut),
	TypeDomainRemove:        row(applyDomainRemove),
	TypeSpoolAdd:            row(applySpoolAdd),
	TypeAttemptStart:        row(applyAttemptStart),
	TypeAttemptResult:       row(applyAttemptResult),
	TypeDomainState:         row(applyDomainState),
	TypeDelayNotified:       row(applyDelayNotified),
	TypeQueueOp:             row(applyQueueOp),
	TypeSpoolAddSummary:     row(applySpoolAddSummary),
	TypeMarkRead:            row(applyMarkRead),
	TypeOrgPut:              row(applyOrgPut),
	TypeUserAdd:             row(applyUserAdd),
	TypeUserSet:             row(applyUserSet),
	TypeTOTPSet:             row(applyTOTPSet),
	TypeSessionCreate:       row(applySessionCreate),
	TypeSessionTouch:        row(applySessionTouch),
	TypeSessionDelete:       row(applySessionDelete),
	TypeAuditAdd:            row(applyAuditAdd),
	TypeDraftPut:            row(applyDraftPut),
	TypeDraftDelete:         row(applyDraftDelete),
	TypeAudited:             applierRow(applyAudited),
	TypeDomainSet:           row(applyDomainSet),
	TypeDomainRequest:       row(applyDomainRequest),
	TypeDomainApprove:       row(applyDomainApprove),
	TypeDomainRequestDelete: row(applyDomainRequestDelete),
	TypeOrgSettingsSet:      row(applyOrgSettingsSet),
	TypeSMSGatewaySet:       row(applySMSGatewaySet),
	TypeAlertFire:           row(applyAlertFire),
	TypeAlertSMSDone:        row(applyAlertSMSDone),
	TypeUserImport:          row(applyUserImport),
	TypeUserEdit:            row(applyUserEdit),
	TypeUserDelete:          row(applyUserDelete),
	TypePasswordTokens:      row(applyPasswordTokens),
	TypePasswordSetByToken:  row(applyPasswordSetByToken),
	TypeNoticeAdd:           row(applyNoticeAdd),
}

// commandRow is what this build knows of one command type: the name, the
// Go type its entries decode into (a pointer to the command struct), and
// how it changes the state.
type commandRow struct {
	name   string
	goType reflect.Type
	new    func() any
	apply  func(a *applier, cmd any) error
}

func (r *commandRow) known() bool { return r.new != nil }

// applier is what an apply function reaches beyond its command: the
// transaction of the batch, the log, and applyEntry for a command that
// carries another (Audited). applyEntry travels as a value because the
// rows of commands cannot name it: it reads commands, and the table would
// depend on itself.
type applier struct {
	tx         *bolt.Tx
	logger     *slog.Logger
	applyEntry func(a *applier, data []byte) error
}

// row is the row of a command of type T whose apply needs only the
// transaction: its name is T's name, its entries decode into a *T.
func row[T any](apply func(*bolt.Tx, *T) error) commandRow {
	return applierRow(func(a *applier, c *T) error { return apply(a.tx, c) })
}

// applierRow is row for a command whose apply needs more of the applier.
func applierRow[T any](apply func(*applier, *T) error) commandRow {
	return commandRow{
		name:   reflect.TypeFor[T]().Name(),
		goType: reflect.TypeFor[*T](),
		new:    func() any { return new(T) },
		apply:  func(a *applier, c any) error { return apply(a, c.(*T)) },
	}
}

// typeOf finds the number of a command from its Go type.
func typeOf(cmd any) (CommandType, bool) {
	t := reflect.TypeOf(cmd)
	if t == nil {
		return 0, false
	}
	for i := range commands {
		if commands[i].goType == t {
			return CommandType(i), true
		}
	}
	return 0, false
}
