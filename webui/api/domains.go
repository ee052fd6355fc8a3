package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/node"
	"lifeline/webui/domains"
	"lifeline/webui/logs"
)

// DomainRequest is the body of POST /api/v1/domains and PUT .../{name}.
type DomainRequest struct {
	Name        string `json:"name"`
	Destination string `json:"destination,omitempty"`
	Org         string `json:"org,omitempty"`
	// Destinations, when given, replace Destination: several, tried in
	// order of preference.
	Destinations []fsm.Destination `json:"destinations,omitempty"`
}

func (s *Server) putDomain(w http.ResponseWriter, r *http.Request, req DomainRequest, create bool) {
	name, ok := domains.ValidName(req.Name)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid domain name: "+strconv.Quote(req.Name))
		return
	}
	if len(req.Destinations) == 0 && !domains.ValidDestination(req.Destination) {
		writeError(w, http.StatusBadRequest, "destination must be host:port, got "+strconv.Quote(req.Destination))
		return
	}
	for _, d := range req.Destinations {
		if !domains.ValidDestination(d.Addr) {
			writeError(w, http.StatusBadRequest, "destination must be host:port, got "+strconv.Quote(d.Addr))
			return
		}
	}
	prev, exists, err := s.b.Store().Domain(name)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if create && exists {
		writeError(w, http.StatusConflict, "domain already exists: "+name)
		return
	}
	if !create && !exists {
		writeError(w, http.StatusNotFound, "no such domain: "+name)
		return
	}
	if !create && req.Org == "" {
		// A change of destination keeps the domain's organisation.
		req.Org = prev.Org
	}
	// One destination travels in the command older releases know, so a
	// cluster in the middle of an upgrade can still change it.
	var cmd any = &fsm.DomainPut{Name: name, Destination: req.Destination, Org: req.Org, At: s.b.Now().UnixNano()}
	dests := req.Destination
	if len(req.Destinations) > 0 {
		cmd = &fsm.DomainSet{Name: name, Org: req.Org, Destinations: req.Destinations, Create: create, At: s.b.Now().UnixNano()}
		dests = domains.Addrs(req.Destinations)
	}
	kind := logs.AuditDomainSet
	if create {
		kind = logs.AuditDomainAdd
	}
	if !s.applyAudited(w, r, cmd, kind, req.Org, name, dests) {
		return
	}
	d, _, _ := s.b.Store().Domain(name)
	code := http.StatusOK
	if create {
		code = http.StatusCreated
	}
	writeJSON(w, code, d)
}

func (s *Server) addDomain(w http.ResponseWriter, r *http.Request) {
	var req DomainRequest
	if decodeBody(w, r, &req) {
		s.putDomain(w, r, req, true)
	}
}

func (s *Server) setDomain(w http.ResponseWriter, r *http.Request) {
	var req DomainRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Name != "" && !strings.EqualFold(strings.TrimSuffix(req.Name, "."), r.PathValue("name")) {
		writeError(w, http.StatusBadRequest, "name in body does not match the URL")
		return
	}
	req.Name = r.PathValue("name")
	s.putDomain(w, r, req, false)
}

func (s *Server) getDomain(w http.ResponseWriter, r *http.Request) {
	name, ok := domains.ValidName(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid domain name")
		return
	}
	d, exists, err := s.b.Store().Domain(name)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if !exists {
		writeError(w, http.StatusNotFound, "no such domain: "+name)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) removeDomain(w http.ResponseWriter, r *http.Request) {
	name, ok := domains.ValidName(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid domain name")
		return
	}
	d, exists, _ := s.b.Store().Domain(name)
	if !exists {
		writeError(w, http.StatusNotFound, "no such domain: "+name)
		return
	}
	if s.applyAudited(w, r, &fsm.DomainRemove{Name: name}, logs.AuditDomainRemove, d.Org, name, "") {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) listDomains(w http.ResponseWriter, r *http.Request) {
	ds, err := s.b.Store().Domains()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if ds == nil {
		ds = []fsm.Domain{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"domains": ds})
}

// DomainTestReport is the body of POST /api/v1/domains/{name}/test.
type DomainTestReport struct {
	Domain string                 `json:"domain"`
	OK     bool                   `json:"ok"`
	Tests  []node.DestinationTest `json:"tests"`
}

func (s *Server) testDomain(w http.ResponseWriter, r *http.Request) {
	name, ok := domains.ValidName(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid domain name")
		return
	}
	t, found, err := domains.Lookup(s.b.Store(), name)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, "no such domain: "+name)
		return
	}
	targets := t.Dests
	if only := r.URL.Query().Get("destination"); only != "" {
		var keep []fsm.Destination
		for _, t := range targets {
			if t.Addr == only {
				keep = append(keep, t)
			}
		}
		if len(keep) == 0 {
			writeError(w, http.StatusBadRequest, "not a destination of "+name+": "+only)
			return
		}
		targets = keep
	}
	rep := DomainTestReport{Domain: name, OK: true}
	for _, t := range targets {
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		res := s.b.TestDestination(ctx, t.Addr)
		cancel()
		rep.OK = rep.OK && res.OK
		rep.Tests = append(rep.Tests, res)
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) listDomainRequests(w http.ResponseWriter, r *http.Request) {
	rs, err := s.b.Store().DomainRequests(r.URL.Query().Get("org"))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if rs == nil {
		rs = []fsm.DomainRequestRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": rs})
}

func (s *Server) decideDomain(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := strings.ToLower(r.PathValue("name"))
		rq, ok, err := s.b.Store().DomainRequestOf(name)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "state store unavailable")
			return
		}
		if !ok {
			writeError(w, http.StatusNotFound, "no request for domain "+name)
			return
		}
		var cmd any = &fsm.DomainRequestDelete{Name: name}
		kind := logs.AuditDomainRefuse
		if approve {
			cmd, kind = &fsm.DomainApprove{Name: name, At: s.b.Now().UnixNano()}, logs.AuditDomainApprove
		}
		if !s.applyAudited(w, r, cmd, kind, rq.Org, name, "requested by "+rq.RequestedBy) {
			return
		}
		if !approve {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		d, _, _ := s.b.Store().Domain(name)
		writeJSON(w, http.StatusOK, d)
	}
}
