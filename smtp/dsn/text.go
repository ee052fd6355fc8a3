package dsn

import (
	"strings"
	"time"
)

// humanText is the first part: what happened, in words a sender who has
// never heard of SMTP can act on.
func humanText(n Notice, host string, orig original) string {
	var b strings.Builder
	line := func(s string) { b.WriteString(s + "\r\n") }

	line("This is the mail system at " + host + ".")
	line("")
	switch n.Kind {
	case Failed:
		line("Your message could not be delivered to one or more recipients.")
		line("The mail system has stopped trying; sending the message again")
		line("unchanged will most likely fail the same way.")
	case Delayed:
		line("Your message has not been delivered yet to one or more recipients.")
		line("You do not need to send it again: the mail system keeps trying")
		if until := latestRetry(n); !until.IsZero() {
			line("until " + until.Format(time.RFC1123Z) + ". If it still cannot be")
			line("delivered by then, you will get another notice.")
		} else {
			line("and will tell you if it finally gives up.")
		}
	case Delivered:
		line("Your message was delivered to the recipients below.")
	}
	line("")
	if orig.subject != "" {
		line("Subject: " + orig.subject)
	}
	if !n.ArrivalDate.IsZero() {
		line("Arrived: " + n.ArrivalDate.Format(time.RFC1123Z))
	}
	if orig.subject != "" || !n.ArrivalDate.IsZero() {
		line("")
	}

	for _, r := range n.Recipients {
		line("<" + headerAddr(r.Final) + ">")
		remote := cleanHost(r.RemoteMTA)
		diag := cleanText(r.Diagnostic)
		switch r.action(n.Kind) {
		case ActionFailed:
			line("    Delivery failed permanently.")
		case ActionDelayed:
			line("    Not delivered yet; the mail system will try again.")
		case ActionDelivered:
			if remote != "" {
				line("    Delivered to " + remote + ".")
			} else {
				line("    Delivered.")
			}
		case ActionRelayed:
			line("    Passed on to " + or(remote, "a mail server") + ", which does not send")
			line("    delivery notifications; you will hear nothing further about it.")
		case ActionExpanded:
			line("    Delivered to a list, which forwarded it to its members.")
		}
		if diag != "" {
			if isReply(diag) && remote != "" {
				line("    The server " + remote + " said: " + diag)
			} else {
				line("    Reason: " + diag)
			}
		}
		if !r.LastAttempt.IsZero() && r.action(n.Kind) != ActionDelivered {
			line("    Last attempt: " + r.LastAttempt.Format(time.RFC1123Z))
		}
		line("")
	}

	switch {
	case orig.contentType == "message/rfc822":
		line("Your message is attached.")
	case orig.content != nil:
		line("The headers of your message are attached.")
	}
	return b.String()
}

// latestRetry is when the mail system gives up on the last of the delayed
// recipients.
func latestRetry(n Notice) time.Time {
	var t time.Time
	for _, r := range n.Recipients {
		if r.action(n.Kind) == ActionDelayed && r.WillRetryUntil.After(t) {
			t = r.WillRetryUntil
		}
	}
	return t
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
