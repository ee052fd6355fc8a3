package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"lifeline/node/msglog"
	"lifeline/webui/logs"
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
		cur, ok := logs.ParseCursor(c)
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
	entries, missing, err := s.b.SearchLog(r.Context(), q)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	p.Entries, p.Missing = s.tenantEntries(org, scope, entries), missing
	if len(entries) == q.Limit {
		p.Next = logs.FormatCursor(msglog.CursorOf(&entries[len(entries)-1]))
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
	q.Limit = 1000
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="lifeline-log.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	search := s.b.SearchLog
	if org != "" && len(scope) == 0 {
		// No domains, no log: the header alone.
		search = func(context.Context, msglog.Query) ([]msglog.Entry, []string, error) { return nil, nil, nil }
	}
	logs.WriteMessageCSV(r.Context(), w, q, search, func(es []msglog.Entry) []msglog.Entry { return s.tenantEntries(org, scope, es) })
}
