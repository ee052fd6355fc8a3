// Package logs holds what the JSON API and the organisation console share
// about the two logs people search: the kinds of audited change and the
// audit entry that goes with a command, the page cursor of the message
// log, and the CSV exports of both.
package logs

import "lifeline/fsm"

// Audit kinds of changes made in the console and through the API; the
// state's own kinds (sign-ins, opened inboxes) are in fsm.
const (
	AuditDomainRequest = "domain_request"
	AuditDomainAdd     = "domain_add"
	AuditDomainSet     = "domain_set"
	AuditDomainRemove  = "domain_remove"
	AuditDomainApprove = "domain_approve"
	AuditDomainRefuse  = "domain_refuse"
	AuditUserAdd       = "user_add"
	AuditUserImport    = "user_import"
	AuditUserEdit      = "user_edit"
	AuditUserDelete    = "user_delete"
	AuditPasswordLink  = "password_link_sent"
	AuditInboxAccess   = "inbox_access_set"
	AuditAlertsSet     = "alerts_set"
	AuditOrgAdd        = "org_add"
	AuditOrgSet        = "org_set"
	AuditSMSGatewaySet = "sms_gateway_set"
	// AuditQueuePrefix and the operation (fsm.OpHold, ...) make the kind
	// of a queue action.
	AuditQueuePrefix = "queue_"
)

// Audited wraps cmd with the audit entry that records it, so the change
// and its entry commit together. Overlong details and targets are cut to
// what an entry keeps.
func Audited(cmd any, e fsm.AuditEntry) (*fsm.Audited, error) {
	if len(e.Detail) > 1000 {
		e.Detail = e.Detail[:1000]
	}
	if len(e.Target) > 254 {
		e.Target = e.Target[:250] + "..."
	}
	return fsm.NewAudited(cmd, e)
}
