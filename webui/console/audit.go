package console

import (
	"net/http"
	"net/url"
	"strings"

	"lifeline/fsm"
	"lifeline/webui/logs"
)

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
	logs.WriteAuditCSV(w, func(before string) ([]fsm.AuditEntry, string, error) {
		af.Before, af.Limit = before, 1000
		return s.b.Store().SearchAudit(af)
	})
}
