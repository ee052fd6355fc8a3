package api

import (
	"net/http"
	"strconv"
	"time"

	"lifeline/fsm"
	"lifeline/webui/logs"
)

// The audit chain: every change of the console and the API, and every
// sign-in, hash-chained so a rewritten entry shows.

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	f, bad := s.auditFilter(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, bad)
		return
	}
	es, next, err := s.b.Store().SearchAudit(f)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if es == nil {
		es = []fsm.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": es, "next": next})
}

// verifyAudit recomputes this node's audit chain.
func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request) {
	chk, err := s.b.Store().VerifyAudit()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": s.b.ClusterStatus().ID, "applied_index": s.b.Store().AppliedIndex(), "check": chk})
}

func (s *Server) auditFilter(r *http.Request) (fsm.AuditFilter, string) {
	q := r.URL.Query()
	f := fsm.AuditFilter{Kind: q.Get("kind"), Actor: q.Get("actor"), Target: q.Get("target"), Before: q.Get("before"), Limit: 100}
	if o := q.Get("org"); o != "" {
		f.Orgs = []string{o}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, "limit must be between 1 and 1000"
		}
		f.Limit = n
	}
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"since", &f.Since}, {"until", &f.Until}} {
		val := q.Get(p.name)
		if val == "" {
			continue
		}
		if d, err := time.ParseDuration(val); err == nil && d >= 0 {
			*p.dst = s.b.Now().Add(-d).UnixNano()
			continue
		}
		t, err := time.Parse(time.RFC3339, val)
		if err != nil {
			return f, p.name + " must be RFC 3339 time or a duration such as 2h"
		}
		*p.dst = t.UnixNano()
	}
	return f, ""
}

func (s *Server) auditCSV(w http.ResponseWriter, r *http.Request) {
	f, bad := s.auditFilter(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, bad)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="lifeline-audit.csv"`)
	logs.WriteAuditCSV(w, func(before string) ([]fsm.AuditEntry, string, error) {
		f.Before, f.Limit = before, 1000
		return s.b.Store().SearchAudit(f)
	})
}
