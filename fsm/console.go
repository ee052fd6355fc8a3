package fsm

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Command types of the admin console (issue 7). They continue the
// append-only list in command.go; each is a new shape, so a node of the
// previous release stops on them rather than silently diverging.
const (
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
)

var (
	bucketAuditSeq      = []byte("auditseq")      // seq(8) -> audit key (at(8) seq(8))
	bucketDomainReqs    = []byte("domainreqs")    // name -> DomainRequestRecord
	bucketOrgSettings   = []byte("orgsettings")   // org -> OrgSettings
	bucketAlertEpisodes = []byte("alertepisodes") // domain -> AlertEpisode
	bucketSMSOutbox     = []byte("smsoutbox")     // created(8) key -> SMSMessage
	bucketPwTokens      = []byte("pwtokens")      // sha256(token) hex -> PasswordToken
)

func consoleBuckets() [][]byte {
	return [][]byte{bucketAuditSeq, bucketDomainReqs, bucketOrgSettings, bucketAlertEpisodes, bucketSMSOutbox, bucketPwTokens}
}

func consoleTypeOf(cmd any) (CommandType, bool) {
	switch cmd.(type) {
	case *Audited:
		return TypeAudited, true
	case *DomainSet:
		return TypeDomainSet, true
	case *DomainRequest:
		return TypeDomainRequest, true
	case *DomainApprove:
		return TypeDomainApprove, true
	case *DomainRequestDelete:
		return TypeDomainRequestDelete, true
	case *OrgSettingsSet:
		return TypeOrgSettingsSet, true
	case *SMSGatewaySet:
		return TypeSMSGatewaySet, true
	case *AlertFire:
		return TypeAlertFire, true
	case *AlertSMSDone:
		return TypeAlertSMSDone, true
	case *UserImport:
		return TypeUserImport, true
	case *UserEdit:
		return TypeUserEdit, true
	case *UserDelete:
		return TypeUserDelete, true
	case *PasswordTokens:
		return TypePasswordTokens, true
	case *PasswordSetByToken:
		return TypePasswordSetByToken, true
	}
	return 0, false
}

func newConsoleCommand(t CommandType) any {
	switch t {
	case TypeAudited:
		return &Audited{}
	case TypeDomainSet:
		return &DomainSet{}
	case TypeDomainRequest:
		return &DomainRequest{}
	case TypeDomainApprove:
		return &DomainApprove{}
	case TypeDomainRequestDelete:
		return &DomainRequestDelete{}
	case TypeOrgSettingsSet:
		return &OrgSettingsSet{}
	case TypeSMSGatewaySet:
		return &SMSGatewaySet{}
	case TypeAlertFire:
		return &AlertFire{}
	case TypeAlertSMSDone:
		return &AlertSMSDone{}
	case TypeUserImport:
		return &UserImport{}
	case TypeUserEdit:
		return &UserEdit{}
	case TypeUserDelete:
		return &UserDelete{}
	case TypePasswordTokens:
		return &PasswordTokens{}
	case TypePasswordSetByToken:
		return &PasswordSetByToken{}
	}
	return nil
}

// applyConsole applies the console's commands; ok is false for any other.
func (f *FSM) applyConsole(tx *bolt.Tx, cmd any) (err error, ok bool) {
	switch c := cmd.(type) {
	case *Audited:
		return f.applyAudited(tx, c), true
	case *DomainSet:
		return applyDomainSet(tx, c), true
	case *DomainRequest:
		return applyDomainRequest(tx, c), true
	case *DomainApprove:
		return applyDomainApprove(tx, c), true
	case *DomainRequestDelete:
		return applyDomainRequestDelete(tx, c), true
	case *OrgSettingsSet:
		return applyOrgSettingsSet(tx, c), true
	case *SMSGatewaySet:
		return applySMSGatewaySet(tx, c), true
	case *AlertFire:
		return applyAlertFire(tx, c), true
	case *AlertSMSDone:
		return applyAlertSMSDone(tx, c), true
	case *UserImport:
		return applyUserImport(tx, c), true
	case *UserEdit:
		return applyUserEdit(tx, c), true
	case *UserDelete:
		return applyUserDelete(tx, c), true
	case *PasswordTokens:
		return applyPasswordTokens(tx, c), true
	case *PasswordSetByToken:
		return applyPasswordSetByToken(tx, c), true
	}
	return nil, false
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

func (f *FSM) applyAudited(tx *bolt.Tx, c *Audited) error {
	e := c.Entry
	if e.Kind == "" || len(e.Actor) > 254 || len(e.Target) > 254 || len(e.Detail) > 1024 {
		return &ValidationError{Msg: "invalid audit entry"}
	}
	if len(c.Cmd) > 0 {
		if CommandType(c.Cmd[0]) == TypeAudited {
			return &ValidationError{Msg: "an audited command cannot wrap another"}
		}
		if err := f.applyOne(tx, c.Cmd); err != nil {
			return err
		}
	}
	return addAudit(tx, e)
}
