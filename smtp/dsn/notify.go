// Package dsn composes delivery status notifications: RFC 3464 reports in
// an RFC 6522 multipart/report, for the conditions RFC 3461 says a sender
// asked to hear about.
//
// A DSN is itself sent with the null reverse path, MAIL FROM:<> (RFC 5321
// §4.5.5), so that it can never cause another one. When the original
// sender's address holds UTF-8, send the DSN with SMTPUTF8.
package dsn

import (
	"strings"
	"time"
)

// Kind is what a notice reports, and which NOTIFY keyword asks for it.
type Kind int

const (
	Delayed   Kind = iota + 1 // NOTIFY=DELAY
	Failed                    // NOTIFY=FAILURE
	Delivered                 // NOTIFY=SUCCESS
)

func (k Kind) keyword() string {
	switch k {
	case Delayed:
		return "DELAY"
	case Failed:
		return "FAILURE"
	case Delivered:
		return "SUCCESS"
	}
	return ""
}

// ShouldNotify reports whether a recipient with these RFC 3461 §4.1
// NOTIFY keywords asked for a notice of this kind. Without NOTIFY the
// default is FAILURE and DELAY, which §4.1 allows and senders expect;
// NEVER suppresses everything.
func ShouldNotify(kind Kind, notify []string) bool {
	kw := kind.keyword()
	if kw == "" {
		return false
	}
	if len(notify) == 0 {
		return kind == Failed || kind == Delayed
	}
	want := false
	for _, n := range notify {
		n = strings.ToUpper(strings.TrimSpace(n))
		if n == "NEVER" {
			return false
		}
		if n == kw {
			want = true
		}
	}
	return want
}

// Needed is ShouldNotify plus the rule that mail from the null sender
// never gets a notice (RFC 5321 §4.5.5): there is nobody to send it to,
// and bounces must not bounce.
func Needed(sender string, kind Kind, notify []string) bool {
	if strings.Trim(strings.TrimSpace(sender), "<>") == "" {
		return false
	}
	return ShouldNotify(kind, notify)
}

// Action is the RFC 3464 §2.3.3 Action field.
type Action string

const (
	ActionFailed    Action = "failed"
	ActionDelayed   Action = "delayed"
	ActionDelivered Action = "delivered"
	// ActionRelayed: passed to a server that does not offer DSN, so no
	// further notice will come (RFC 3461 §5.2.2).
	ActionRelayed  Action = "relayed"
	ActionExpanded Action = "expanded"
)

// RecipientStatus is one recipient's block of the report (RFC 3464 §2.3).
type RecipientStatus struct {
	// Final is the address delivery was attempted to.
	Final string
	// ORCPT is the RCPT's ORCPT, "type;address" xtext-decoded, or "".
	ORCPT string
	// Action; empty takes the one that matches the notice's Kind.
	Action Action
	// Status is the RFC 3463 code "x.y.z"; empty takes 5.0.0, 4.0.0 or
	// 2.0.0 to match the Action.
	Status string
	// RemoteMTA is the host name of the server that answered, or "".
	RemoteMTA string
	// Diagnostic is the remote server's reply ("550 5.1.1 No such user"),
	// written as "Diagnostic-Code: smtp; ...". Anything that does not start
	// with a reply code (a connection refused, a timeout) is our own words
	// and goes under the type "X-Lifeline" instead.
	Diagnostic     string
	LastAttempt    time.Time
	WillRetryUntil time.Time // written for delayed recipients only
}

func (r RecipientStatus) action(k Kind) Action {
	if r.Action != "" {
		return r.Action
	}
	switch k {
	case Delayed:
		return ActionDelayed
	case Delivered:
		return ActionDelivered
	}
	return ActionFailed
}
