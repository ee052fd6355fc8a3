package fsm

import "fmt"

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

func applyAudited(a *applier, c *Audited) error {
	e := c.Entry
	if e.Kind == "" || len(e.Actor) > 254 || len(e.Target) > 254 || len(e.Detail) > 1024 {
		return &ValidationError{Msg: "invalid audit entry"}
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
