package console

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/node"
	"lifeline/webui/domains"
	"lifeline/webui/logs"
)

// Domains. Who may protect a domain: the operator adds domains to any
// organisation at once; an org admin or partner *requests* a domain for
// their organisation, and it is protected only when the operator approves
// it (the operator console at /admin, or `lifeline admin domain approve`).
// A protected domain captures the mail that every tenant of the cluster
// writes to it, so a tenant cannot claim one on its own say. Org admins
// and partners set and test the destinations of their organisation's
// domains, approved or waiting.

// DomainRow is one domain on the domains page.
type DomainRow struct {
	Name          string
	Pending       bool
	Targets       []fsm.Destination
	Spooling      bool
	SpoolingSince time.Time
	LastDelivered time.Time
	LastError     string
	Queued        int64
	// Test is the result of a test just run on this domain.
	Test *node.DestinationTest
}

// DomainsPage is Company settings > Domains.
type DomainsPage struct {
	Org      fsm.Org
	Rows     []DomainRow
	Now      time.Time
	Flash    string
	Error    string
	NewName  string
	NewDests string
}

func (s *Server) domainRows(org string) ([]DomainRow, error) {
	ds, err := s.b.Store().OrgDomains(org)
	if err != nil {
		return nil, err
	}
	reqs, err := s.b.Store().DomainRequests(org)
	if err != nil {
		return nil, err
	}
	var qs fsm.QueueStats
	qs, _ = s.b.QueueStats()
	var rows []DomainRow
	for _, d := range ds {
		row := DomainRow{Name: d.Name, Targets: d.Targets(), Spooling: d.Spooling, LastError: d.LastError, Queued: qs.ByDomain[d.Name]}
		if d.SpoolingSince != 0 {
			row.SpoolingSince = time.Unix(0, d.SpoolingSince)
		}
		if d.LastDelivered != 0 {
			row.LastDelivered = time.Unix(0, d.LastDelivered)
		}
		rows = append(rows, row)
	}
	for _, rq := range reqs {
		d := fsm.Domain{Destinations: rq.Destinations}
		rows = append(rows, DomainRow{Name: rq.Name, Pending: true, Targets: d.Targets()})
	}
	return rows, nil
}

func (s *Server) renderDomains(w http.ResponseWriter, r *http.Request, code int, o fsm.Org, p DomainsPage) {
	rows, err := s.domainRows(o.Name)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	for i := range rows {
		if p.Rows != nil && len(p.Rows) == 1 && p.Rows[0].Name == rows[i].Name {
			rows[i].Test = p.Rows[0].Test
		}
	}
	p.Org, p.Rows, p.Now = o, rows, s.b.Now()
	s.render(w, r, code, domainsPage(viewerOf(r), p))
}

func (s *Server) domainsPage(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	s.renderDomains(w, r, http.StatusOK, o, DomainsPage{Flash: r.URL.Query().Get("flash")})
}

func (s *Server) domainAdd(w http.ResponseWriter, r *http.Request) {
	v, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	p := DomainsPage{NewName: r.PostFormValue("name"), NewDests: r.PostFormValue("destinations")}
	name, valid := domains.ValidName(p.NewName)
	if !valid {
		p.Error = "The domain name is not valid: " + strconv.Quote(p.NewName)
		s.renderDomains(w, r, http.StatusBadRequest, o, p)
		return
	}
	dests, err := domains.ParseDestinations(p.NewDests)
	if err != nil {
		p.Error = "Destinations: " + err.Error()
		s.renderDomains(w, r, http.StatusBadRequest, o, p)
		return
	}
	now := s.b.Now().UnixNano()
	if v.Operator {
		if s.applyAudited(w, r, &fsm.DomainSet{Name: name, Org: o.Name, Destinations: dests, Create: true, At: now}, logs.AuditDomainAdd, o.Name, name, domains.Addrs(dests)) {
			http.Redirect(w, r, orgURL(o.Name)+"/domains?flash=added", http.StatusSeeOther)
		}
		return
	}
	if s.applyAudited(w, r, &fsm.DomainRequest{Name: name, Org: o.Name, Destinations: dests, By: v.User.Email, At: now}, logs.AuditDomainRequest, o.Name, name, domains.Addrs(dests)) {
		http.Redirect(w, r, orgURL(o.Name)+"/domains?flash=requested", http.StatusSeeOther)
	}
}

// ownDomain resolves {name} within the organisation: a protected domain
// of it or one it requested. Anything else is 404.
func (s *Server) ownDomain(w http.ResponseWriter, r *http.Request, org string) (name string, targets []fsm.Destination, pending, ok bool) {
	name = strings.ToLower(r.PathValue("name"))
	t, found, err := domains.Lookup(s.b.Store(), name)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	if found && t.Org == org {
		return name, t.Dests, t.Pending, true
	}
	s.notFound(w, r)
	return "", nil, false, false
}

func (s *Server) domainSet(w http.ResponseWriter, r *http.Request) {
	v, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	name, _, pending, ok := s.ownDomain(w, r, o.Name)
	if !ok {
		return
	}
	dests, err := domains.ParseDestinations(r.PostFormValue("destinations"))
	if err != nil {
		s.renderDomains(w, r, http.StatusBadRequest, o, DomainsPage{Error: name + ": " + err.Error()})
		return
	}
	now := s.b.Now().UnixNano()
	var cmd any = &fsm.DomainSet{Name: name, Org: o.Name, Destinations: dests, At: now}
	if pending {
		cmd = &fsm.DomainRequest{Name: name, Org: o.Name, Destinations: dests, By: v.User.Email, At: now}
	}
	if s.applyAudited(w, r, cmd, logs.AuditDomainSet, o.Name, name, domains.Addrs(dests)) {
		http.Redirect(w, r, orgURL(o.Name)+"/domains?flash=saved", http.StatusSeeOther)
	}
}

func (s *Server) domainTest(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	name, targets, _, ok := s.ownDomain(w, r, o.Name)
	if !ok {
		return
	}
	addr := r.PostFormValue("dest")
	known := false
	for _, t := range targets {
		known = known || t.Addr == addr
	}
	if !known {
		// Only the destinations the domain has are tested: the console is
		// not a port scanner for whatever the nodes can reach.
		s.errorPage(w, r, http.StatusBadRequest, "That is not one of this domain's destinations. Save it first, then test it.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	res := s.b.TestDestination(ctx, addr)
	s.renderDomains(w, r, http.StatusOK, o, DomainsPage{Rows: []DomainRow{{Name: name, Test: &res}}})
}

func (s *Server) domainRemove(w http.ResponseWriter, r *http.Request) {
	v, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	name, _, pending, ok := s.ownDomain(w, r, o.Name)
	if !ok {
		return
	}
	var cmd any = &fsm.DomainRequestDelete{Name: name}
	if !pending {
		if !v.Operator {
			s.errorPage(w, r, http.StatusForbidden, "A protected domain is removed by your service provider: removing it stops accepting its mail.")
			return
		}
		cmd = &fsm.DomainRemove{Name: name}
	}
	if s.applyAudited(w, r, cmd, logs.AuditDomainRemove, o.Name, name, "") {
		http.Redirect(w, r, orgURL(o.Name)+"/domains?flash=removed", http.StatusSeeOther)
	}
}

func (s *Server) domainDecision(w http.ResponseWriter, r *http.Request, approve bool) {
	name := strings.ToLower(r.PathValue("name"))
	rq, ok, err := s.b.Store().DomainRequestOf(name)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	if !ok {
		s.notFound(w, r)
		return
	}
	var cmd any = &fsm.DomainRequestDelete{Name: name}
	kind := logs.AuditDomainRefuse
	if approve {
		cmd, kind = &fsm.DomainApprove{Name: name, At: s.b.Now().UnixNano()}, logs.AuditDomainApprove
	}
	if s.applyAudited(w, r, cmd, kind, rq.Org, name, "requested by "+rq.RequestedBy) {
		http.Redirect(w, r, "/admin?flash="+url.QueryEscape(kind+" "+name), http.StatusSeeOther)
	}
}

func (s *Server) domainApprove(w http.ResponseWriter, r *http.Request) { s.domainDecision(w, r, true) }
func (s *Server) domainRefuse(w http.ResponseWriter, r *http.Request)  { s.domainDecision(w, r, false) }
