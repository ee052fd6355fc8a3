package delivery

import (
	"context"
	"fmt"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/node/msglog"
	"lifeline/smtp/dsn"
	"lifeline/smtp/outbound"
)

type noticeKind int

const (
	kindFailed noticeKind = iota + 1
	kindDelayed
	// kindRelayed: delivered to a server that does not offer DSN, for a
	// recipient that asked for NOTIFY=SUCCESS (RFC 3461 §5.2.2).
	kindRelayed
)

type dsnJob struct {
	msg    *fsm.Message
	kind   noticeKind
	rcpts  []int
	reply  outbound.Reply
	remote string
}

// delayJob returns the delayed notice a deferral calls for, if any: once
// the message is older than the warning time, once per message, and only
// for recipients whose NOTIFY asks for it (RFC 3461 §4.1).
func (e *Engine) delayJob(m *fsm.Message, deferred []int, rep *outbound.Reply, remote string, at time.Time) *dsnJob {
	if m.From == "" || at.Sub(time.Unix(0, m.ReceivedAt)) < e.cfg.DelayWarning {
		return nil
	}
	var want []int
	for _, i := range deferred {
		r := m.Recipients[i]
		if !r.DelayNotified && dsn.ShouldNotify(dsn.Delayed, r.Notify) {
			want = append(want, i)
		}
	}
	if len(want) == 0 {
		return nil
	}
	j := &dsnJob{msg: m, kind: kindDelayed, rcpts: want, remote: remote}
	if rep != nil {
		j.reply = *rep
	}
	return j
}

// noticeID derives the queue ID of a notice from its cause, so that a new
// leader repeating the work of an old one queues the same ID, which the
// state machine accepts once (docs/design.md §3.7: no notice twice).
func noticeID(j dsnJob) string {
	switch j.kind {
	case kindDelayed:
		return j.msg.ID + ".D"
	case kindFailed:
		return fmt.Sprintf("%s.F%s", j.msg.ID, joinInts(j.rcpts))
	default:
		return fmt.Sprintf("%s.S%s", j.msg.ID, joinInts(j.rcpts))
	}
}

func joinInts(xs []int) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteByte('-')
		}
		fmt.Fprint(&b, x)
	}
	return b.String()
}

func (e *Engine) sendNotices(ctx context.Context, jobs []dsnJob, at time.Time) {
	for _, j := range jobs {
		if err := e.sendNotice(ctx, j, at); err != nil {
			e.cfg.Logger.Warn("cannot queue delivery status notification", "id", j.msg.ID, "err", err)
		}
	}
}

func (e *Engine) sendNotice(ctx context.Context, j dsnJob, at time.Time) error {
	m := j.msg
	kind, action := dsn.Failed, dsn.ActionFailed
	switch j.kind {
	case kindDelayed:
		kind, action = dsn.Delayed, dsn.ActionDelayed
	case kindRelayed:
		kind, action = dsn.Delivered, dsn.ActionRelayed
	}
	n := dsn.Notice{
		Kind: kind, ReportingMTA: e.cfg.Hostname, Sender: m.From, EnvID: m.EnvID,
		ArrivalDate: time.Unix(0, m.ReceivedAt), Ret: m.Ret, Now: at,
		MessageID: noticeID(j) + "@" + e.cfg.Hostname,
	}
	var notify []string
	for _, i := range j.rcpts {
		r := m.Recipients[i]
		notify = append(notify, r.Notify...)
		if !dsn.ShouldNotify(kind, r.Notify) {
			continue
		}
		rs := dsn.RecipientStatus{
			Final: r.Address, ORCPT: r.ORCPT, Action: action, Status: statusOf(j),
			RemoteMTA: j.remote, Diagnostic: j.reply.String(), LastAttempt: at,
		}
		if j.kind == kindDelayed {
			rs.WillRetryUntil = time.Unix(0, m.ReceivedAt).Add(e.cfg.QueueLifetime)
		}
		n.Recipients = append(n.Recipients, rs)
	}
	if len(n.Recipients) == 0 || !dsn.Needed(m.From, kind, notify) {
		return nil
	}
	body, err := e.cfg.OpenBody(ctx, m.BlobHash)
	if err == nil {
		defer body.Close()
		n.Original = body
	} else {
		// The notice matters more than the copy of the original.
		e.cfg.Logger.Warn("notice without the original", "id", m.ID, "err", err)
	}
	c, err := dsn.ComposeMessage(n)
	if err != nil {
		return err
	}
	data := c.Data
	// The notice goes to the sender exactly as the sender's address was
	// given (a quoted local part stays quoted), with SMTPUTF8 when that
	// address needs it (RFC 6531, RFC 6533) and BODY=8BITMIME when a part
	// is 8bit (RFC 6152).
	cmd := &fsm.SpoolAdd{
		ID: noticeID(j), From: "",
		Recipients: []fsm.Recipient{{Address: m.From, Domain: domainOf(m.From)}},
		ReceivedAt: at.UnixNano(), Helo: e.cfg.Hostname,
		SMTPUTF8: c.SMTPUTF8,
	}
	if c.EightBit {
		cmd.Body = "8BITMIME"
	}
	var notified *fsm.DelayNotified
	if j.kind == kindDelayed {
		notified = &fsm.DelayNotified{ID: m.ID, Recipients: j.rcpts}
	}
	switch {
	case notified != nil && e.cfg.SpoolNotice != nil:
		// The notice and the mark commit together (fsm.NoticeAdd): a
		// leader lost between two separate commits let the next one send
		// the notice again.
		if err := e.cfg.SpoolNotice(ctx, cmd, notified, data); err != nil {
			return err
		}
		notified = nil
	default:
		if err := e.cfg.Spool(ctx, cmd, data); err != nil {
			return err
		}
	}
	status := map[noticeKind]string{kindFailed: "failure-notice", kindDelayed: "delay-notice", kindRelayed: "relay-notice"}[j.kind]
	var rcpts []string
	for _, i := range j.rcpts {
		rcpts = append(rcpts, m.Recipients[i].Address)
	}
	e.cfg.Log(msglog.Entry{At: at.UnixNano(), Kind: msglog.KindNotice, Status: status, QueueID: m.ID, From: m.From,
		To: rcpts, Detail: "notice " + cmd.ID + " to <" + m.From + ">"})
	if notified != nil {
		return e.cfg.Apply(ctx, notified)
	}
	return nil
}

// statusOf picks the RFC 3463 status of a recipient's notice: the server's
// enhanced code when it gave one, else a generic one for the kind.
func statusOf(j dsnJob) string {
	if j.reply.Enhanced != "" {
		return j.reply.Enhanced
	}
	switch j.kind {
	case kindDelayed:
		return "4.0.0"
	case kindRelayed:
		return "2.0.0"
	}
	return "5.0.0"
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}
