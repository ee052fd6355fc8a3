package inbox

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/node/msglog"
)

// The message log, the queue and the audit log of an organisation. An
// org admin's log is scoped to the organisation's domains (a transaction
// touching one of them, as sender or recipient domain); the operator's
// (/admin/log) is everything.

// LogPage is the message log page.
type LogPage struct {
	Org     string // "" for the operator's view of everything
	Form    url.Values
	Entries []msglog.Entry
	Next    string
	Missing []string
	NoScope bool // the organisation has no domains yet
	Error   string
	Query   string // the search as a query string, for links
}

func logBase(org string) string {
	if org == "" {
		return "/admin/log"
	}
	return orgURL(org) + "/log"
}

func auditBase(org string) string {
	if org == "" {
		return "/admin/audit"
	}
	return orgURL(org) + "/audit"
}

// parseWhen reads a time from a form: RFC 3339, a datetime-local value
// (taken as UTC), a date, or a duration back from now ("2h").
func parseWhen(v string, now time.Time) (int64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d).UnixNano(), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UnixNano(), nil
		}
	}
	return 0, fmt.Errorf("%q is not a time: use 2026-03-01T09:00 (UTC) or a duration such as 2h", v)
}

func encodeLogCursor(e *msglog.Entry) string {
	return fmt.Sprintf("%d.%d.%s", e.At, e.Seq, e.Node)
}

func decodeLogCursor(s string) (msglog.Cursor, bool) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) != 3 {
		return msglog.Cursor{}, false
	}
	at, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseUint(parts[1], 10, 32)
	if err1 != nil || err2 != nil || parts[2] == "" {
		return msglog.Cursor{}, false
	}
	return msglog.Cursor{At: at, Seq: uint32(seq), Node: parts[2]}, true
}

// logQuery builds the search of a log request. scope is nil for the
// operator; for an organisation, its domains.
func (s *Server) logQuery(r *http.Request, scope []string) (msglog.Query, error) {
	f := r.URL.Query()
	q := msglog.Query{ID: strings.TrimSpace(f.Get("id")), Sender: strings.TrimSpace(f.Get("sender")), Recipient: strings.TrimSpace(f.Get("recipient")),
		Status: strings.TrimSpace(f.Get("status")), Domains: scope, Limit: 50}
	now := s.b.Now()
	var err error
	if q.Since, err = parseWhen(f.Get("since"), now); err != nil {
		return q, err
	}
	if q.Until, err = parseWhen(f.Get("until"), now); err != nil {
		return q, err
	}
	if c := f.Get("before"); c != "" {
		cur, ok := decodeLogCursor(c)
		if !ok {
			return q, fmt.Errorf("the page link is damaged")
		}
		q.Before = cur
	}
	return q, nil
}

// logScope returns the domains an organisation's log covers; for the
// operator's log (no {org}) it returns nil and org "".
func (s *Server) logScope(w http.ResponseWriter, r *http.Request) (org string, scope []string, ok bool) {
	if r.PathValue("org") == "" {
		return "", nil, true
	}
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return "", nil, false
	}
	scope, err := s.orgDomainNames(o.Name)
	if err != nil {
		s.unavailable(w, r, err)
		return "", nil, false
	}
	return o.Name, scope, true
}

func (s *Server) logPage(w http.ResponseWriter, r *http.Request) {
	org, scope, ok := s.logScope(w, r)
	if !ok {
		return
	}
	p := LogPage{Org: org, Form: r.URL.Query()}
	keep := url.Values{}
	for _, k := range []string{"id", "sender", "recipient", "status", "since", "until"} {
		if v := p.Form.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	p.Query = keep.Encode()
	q, err := s.logQuery(r, scope)
	if err != nil {
		p.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, logPage(viewerOf(r), p))
		return
	}
	if org != "" && len(scope) == 0 {
		p.NoScope = true
		s.render(w, r, http.StatusOK, logPage(viewerOf(r), p))
		return
	}
	ab := s.admin()
	if ab == nil {
		s.unavailable(w, r, fmt.Errorf("message log not available"))
		return
	}
	entries, missing, err := ab.SearchLog(r.Context(), q)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	p.Entries, p.Missing = s.tenantEntries(org, scope, entries), missing
	if len(entries) == q.Limit {
		p.Next = encodeLogCursor(&entries[len(entries)-1])
	}
	s.render(w, r, http.StatusOK, logPage(viewerOf(r), p))
}

// tenantEntries drops, from an organisation's log, transactions that
// only claim its domain as the sender (MAIL FROM is anyone's to forge)
// while going to another organisation's domains: those are the other
// organisation's mail.
func (s *Server) tenantEntries(org string, scope []string, es []msglog.Entry) []msglog.Entry {
	if org == "" {
		return es
	}
	owner := map[string]string{}
	if ds, err := s.b.Store().Domains(); err == nil {
		for _, d := range ds {
			owner[d.Name] = d.Org
		}
	}
	var out []msglog.Entry
	for _, e := range es {
		mine, others := false, false
		for _, to := range e.To {
			d := strings.ToLower(to[strings.LastIndexByte(to, '@')+1:])
			if hasFold(scope, d) {
				mine = true
			} else if o, ok := owner[d]; ok && o != org {
				others = true
			}
		}
		if mine || !others {
			out = append(out, e)
		}
	}
	return out
}

// csvSafe keeps a field from being read as a formula by a spreadsheet.
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

func (s *Server) logCSV(w http.ResponseWriter, r *http.Request) {
	org, scope, ok := s.logScope(w, r)
	if !ok {
		return
	}
	q, err := s.logQuery(r, scope)
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	ab := s.admin()
	if ab == nil {
		s.unavailable(w, r, fmt.Errorf("message log not available"))
		return
	}
	q.Limit = 1000
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="lifeline-log.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	cw.Write([]string{"time", "node", "kind", "status", "queue_id", "message_id", "from", "to", "code", "detail", "remote", "size"})
	if org != "" && len(scope) == 0 {
		cw.Flush()
		return
	}
	for {
		entries, _, err := ab.SearchLog(r.Context(), q)
		if err != nil {
			break
		}
		for _, e := range s.tenantEntries(org, scope, entries) {
			cw.Write([]string{e.Time().Format(time.RFC3339Nano), e.Node, e.Kind, e.Status, e.QueueID, csvSafe(e.MessageID), csvSafe(e.From),
				csvSafe(strings.Join(e.To, " ")), strconv.Itoa(e.Code), csvSafe(e.Detail), e.Remote, strconv.FormatInt(e.Size, 10)})
		}
		cw.Flush()
		if len(entries) < q.Limit {
			break
		}
		q.Before = msglog.CursorOf(&entries[len(entries)-1])
	}
}

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
	if !s.applyAudited(w, r, cmd, AuditQueuePrefix+op, o.Name, row.Msg.ID, "from <"+row.Msg.From+">") {
		return
	}
	if ab := s.admin(); ab != nil {
		ab.LogEvent(msglog.Entry{Kind: msglog.KindOperator, Status: op, QueueID: row.Msg.ID, From: row.Msg.From, To: addrs(row.Recipients),
			Detail: "queue " + op + " by " + v.User.Email})
	}
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

// AuditPage is the audit log page.
type AuditPage struct {
	Org     string
	Form    url.Values
	Entries []fsm.AuditEntry
	Next    string
	Query   string
	Check   *fsm.AuditCheck
	Error   string
}

func (s *Server) auditFilter(w http.ResponseWriter, r *http.Request) (string, fsm.AuditFilter, bool) {
	f := r.URL.Query()
	af := fsm.AuditFilter{Kind: strings.TrimSpace(f.Get("kind")), Actor: strings.TrimSpace(f.Get("actor")), Target: strings.TrimSpace(f.Get("target")),
		Before: f.Get("before"), Limit: 100}
	org := ""
	if r.PathValue("org") != "" {
		_, o, ok := s.orgOf(w, r)
		if !ok {
			return "", af, false
		}
		org = o.Name
		af.Orgs = []string{o.Name}
	}
	return org, af, true
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request) {
	org, af, ok := s.auditFilter(w, r)
	if !ok {
		return
	}
	p := AuditPage{Org: org, Form: r.URL.Query()}
	keep := url.Values{}
	for _, k := range []string{"kind", "actor", "target", "since", "until"} {
		if v := p.Form.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	p.Query = keep.Encode()
	var err error
	now := s.b.Now()
	if af.Since, err = parseWhen(p.Form.Get("since"), now); err == nil {
		af.Until, err = parseWhen(p.Form.Get("until"), now)
	}
	if err != nil {
		p.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, auditPage(viewerOf(r), p))
		return
	}
	p.Entries, p.Next, err = s.b.Store().SearchAudit(af)
	if err != nil {
		p.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, auditPage(viewerOf(r), p))
		return
	}
	if viewerOf(r).Operator && org == "" {
		chk, err := s.b.Store().VerifyAudit()
		if err == nil {
			p.Check = &chk
		}
	}
	s.render(w, r, http.StatusOK, auditPage(viewerOf(r), p))
}

func (s *Server) auditCSV(w http.ResponseWriter, r *http.Request) {
	_, af, ok := s.auditFilter(w, r)
	if !ok {
		return
	}
	now := s.b.Now()
	var err error
	if af.Since, err = parseWhen(r.URL.Query().Get("since"), now); err == nil {
		af.Until, err = parseWhen(r.URL.Query().Get("until"), now)
	}
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="lifeline-audit.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	WriteAuditCSV(w, func(before string) ([]fsm.AuditEntry, string, error) {
		af.Before, af.Limit = before, 1000
		return s.b.Store().SearchAudit(af)
	})
}

// WriteAuditCSV writes every entry that page returns, page by page.
func WriteAuditCSV(w http.ResponseWriter, page func(before string) ([]fsm.AuditEntry, string, error)) {
	cw := csv.NewWriter(w)
	cw.Write([]string{"time", "seq", "kind", "actor", "target", "org", "addr", "detail", "hash"})
	before := ""
	for {
		es, next, err := page(before)
		if err != nil {
			break
		}
		for _, e := range es {
			cw.Write([]string{time.Unix(0, e.At).UTC().Format(time.RFC3339Nano), strconv.FormatUint(e.Seq, 10), e.Kind, csvSafe(e.Actor), csvSafe(e.Target),
				csvSafe(e.Org), e.Addr, csvSafe(e.Detail), e.Hash})
		}
		cw.Flush()
		if next == "" {
			break
		}
		before = next
	}
}
