package console

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/node/msglog"
	"lifeline/webui/logs"
)

// QueuePage is the organisation's queue.
type QueuePage struct {
	Org      fsm.Org
	Domains  []string
	Form     url.Values
	Messages []QueueRow
	Next     string
	Query    string
	Now      time.Time
	Flash    string
	Error    string
}

// QueueRow is one message, with only the organisation's recipients.
type QueueRow struct {
	Msg        fsm.Message
	Recipients []fsm.RecipientState
	Mixed      bool // it also has recipients of other organisations
}

func queueRow(m fsm.Message, domains []string) QueueRow {
	row := QueueRow{Msg: m}
	for _, r := range m.Recipients {
		if hasFold(domains, r.Domain) {
			row.Recipients = append(row.Recipients, r)
		} else if !r.Done() {
			row.Mixed = true
		}
	}
	return row
}

func hasFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func (s *Server) queuePage(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	domains, err := s.orgDomainNames(o.Name)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	f := r.URL.Query()
	p := QueuePage{Org: o, Domains: domains, Form: f, Now: s.b.Now(), Flash: f.Get("flash")}
	filter := fsm.MessageFilter{Domain: f.Get("domain"), Sender: f.Get("sender"), Recipient: f.Get("recipient"), State: f.Get("state")}
	if filter.Domain != "" && !hasFold(domains, filter.Domain) {
		s.notFound(w, r)
		return
	}
	if !fsm.ValidState(filter.State) {
		p.Error = "State must be held, deferred or new."
		s.render(w, r, http.StatusBadRequest, queuePage(viewerOf(r), p))
		return
	}
	if v := f.Get("older_than"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			p.Error = "Older than: give a duration such as 4h."
			s.render(w, r, http.StatusBadRequest, queuePage(viewerOf(r), p))
			return
		}
		filter.ReceivedBefore = p.Now.Add(-d).UnixNano()
	}
	keep := url.Values{}
	for _, k := range []string{"domain", "sender", "recipient", "state", "older_than"} {
		if v := f.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	p.Query = keep.Encode()
	msgs, next, err := s.b.Store().MessagesIn(domains, filter, f.Get("after"), 50)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	for _, m := range msgs {
		p.Messages = append(p.Messages, queueRow(m, domains))
	}
	p.Next = next
	s.render(w, r, http.StatusOK, queuePage(viewerOf(r), p))
}

// ownMessage resolves {id} to a queued message with a recipient in the
// organisation's domains; anything else is 404.
func (s *Server) ownMessage(w http.ResponseWriter, r *http.Request, org string) (QueueRow, []string, bool) {
	domains, err := s.orgDomainNames(org)
	if err != nil {
		s.unavailable(w, r, err)
		return QueueRow{}, nil, false
	}
	m, ok, err := s.b.Store().Message(r.PathValue("id"))
	if err != nil {
		s.unavailable(w, r, err)
		return QueueRow{}, nil, false
	}
	if !ok {
		s.notFound(w, r)
		return QueueRow{}, nil, false
	}
	row := queueRow(m, domains)
	if len(row.Recipients) == 0 {
		s.notFound(w, r)
		return row, nil, false
	}
	return row, domains, true
}

// QueueMessagePage shows one message and its attempts.
type QueueMessagePage struct {
	Org   fsm.Org
	Row   QueueRow
	Flash string
}

func (s *Server) queueMessage(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	row, _, ok := s.ownMessage(w, r, o.Name)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, queueMessagePage(viewerOf(r), QueueMessagePage{Org: o, Row: row, Flash: r.URL.Query().Get("flash")}))
}

func (s *Server) queueAction(w http.ResponseWriter, r *http.Request) {
	v, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	op := r.PathValue("op")
	switch op {
	case fsm.OpHold, fsm.OpRelease, fsm.OpRetry, fsm.OpDelete:
	default:
		s.notFound(w, r)
		return
	}
	row, _, ok := s.ownMessage(w, r, o.Name)
	if !ok {
		return
	}
	if row.Mixed && op != fsm.OpRetry {
		// Holding or deleting would touch another organisation's mail.
		s.errorPage(w, r, http.StatusConflict, "This message also goes to another organisation's domains; only a retry is possible here. Ask your service provider.")
		return
	}
	cmd := &fsm.QueueOp{Op: op, IDs: []string{row.Msg.ID}, At: s.b.Now().UnixNano()}
	if !s.applyAudited(w, r, cmd, logs.AuditQueuePrefix+op, o.Name, row.Msg.ID, "from <"+row.Msg.From+">") {
		return
	}
	s.b.LogEvent(msglog.Entry{Kind: msglog.KindOperator, Status: op, QueueID: row.Msg.ID, From: row.Msg.From, To: addrs(row.Recipients),
		Detail: "queue " + op + " by " + v.User.Email})
	if op == fsm.OpDelete {
		http.Redirect(w, r, orgURL(o.Name)+"/queue?flash="+url.QueryEscape("deleted "+row.Msg.ID), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, orgURL(o.Name)+"/queue/"+url.PathEscape(row.Msg.ID)+"?flash="+url.QueryEscape(op+" done"), http.StatusSeeOther)
}

func addrs(rs []fsm.RecipientState) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Address)
	}
	return out
}
