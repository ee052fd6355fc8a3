package webui

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/node"
	"lifeline/webui/inbox"
)

// The admin console's JSON API, for the operator token: destination
// tests, domain approvals, alert settings and the SMS gateway, user
// imports, welcome links and deletion, and the audit chain. Every change
// commits together with its audit entry (actor "operator").

func (s *Server) registerConsoleAPI() {
	s.mux.HandleFunc("POST /api/v1/domains/{name}/test", s.auth(s.testDomain))
	s.mux.HandleFunc("GET /api/v1/domain-requests", s.auth(s.listDomainRequests))
	s.mux.HandleFunc("POST /api/v1/domain-requests/{name}/approve", s.auth(s.decideDomain(true)))
	s.mux.HandleFunc("DELETE /api/v1/domain-requests/{name}", s.auth(s.decideDomain(false)))
	s.mux.HandleFunc("GET /api/v1/orgs/{name}/alerts", s.auth(s.getAlerts))
	s.mux.HandleFunc("PUT /api/v1/orgs/{name}/alerts", s.auth(s.putAlerts))
	s.mux.HandleFunc("GET /api/v1/alerts/gateway", s.auth(s.getGateway))
	s.mux.HandleFunc("PUT /api/v1/alerts/gateway", s.auth(s.putGateway))
	s.mux.HandleFunc("POST /api/v1/users/import", s.auth(s.importUsers))
	s.mux.HandleFunc("POST /api/v1/users/welcome", s.auth(s.welcomeUsers))
	s.mux.HandleFunc("DELETE /api/v1/users/{email}", s.auth(s.deleteUser))
	s.mux.HandleFunc("GET /api/v1/audit/verify", s.auth(s.verifyAudit))
	s.mux.HandleFunc("GET /api/v1/audit.csv", s.auth(s.auditCSV))
}

// OperatorActor is the audit log's name for the holder of the operator
// token.
const OperatorActor = "operator"

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// applyAudited commits cmd with the audit entry that records it.
func (s *Server) applyAudited(w http.ResponseWriter, r *http.Request, cmd any, kind, org, target, detail string) bool {
	if len(detail) > 1000 {
		detail = detail[:1000]
	}
	if len(target) > 254 {
		target = target[:250] + "..."
	}
	a, err := fsm.NewAudited(cmd, fsm.AuditEntry{At: s.b.Now().UnixNano(), Kind: kind, Actor: OperatorActor, Target: target, Org: org,
		Addr: clientIP(r), Detail: detail})
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return s.apply(w, r, a)
}

// DomainTestReport is the body of POST /api/v1/domains/{name}/test.
type DomainTestReport struct {
	Domain string                 `json:"domain"`
	OK     bool                   `json:"ok"`
	Tests  []node.DestinationTest `json:"tests"`
}

func (s *Server) testDomain(w http.ResponseWriter, r *http.Request) {
	name, ok := ValidDomainName(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid domain name")
		return
	}
	var targets []fsm.Destination
	if d, exists, err := s.b.Store().Domain(name); err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	} else if exists {
		targets = d.Targets()
	} else if rq, exists, _ := s.b.Store().DomainRequestOf(name); exists {
		dd := fsm.Domain{Destinations: rq.Destinations}
		targets = dd.Targets()
	} else {
		writeError(w, http.StatusNotFound, "no such domain: "+name)
		return
	}
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
		kind := inbox.AuditDomainRefuse
		if approve {
			cmd, kind = &fsm.DomainApprove{Name: name, At: s.b.Now().UnixNano()}, inbox.AuditDomainApprove
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

// AlertsView is an organisation's alert settings in the API; the repeat
// interval is a Go duration ("4h", "0s").
type AlertsView struct {
	Enabled bool        `json:"enabled"`
	To      string      `json:"to"`
	Via     string      `json:"via"`
	Repeat  string      `json:"repeat"`
	Admin   fsm.Contact `json:"admin"`
	Tech    fsm.Contact `json:"tech"`
}

func alertsView(a fsm.AlertSettings) AlertsView {
	return AlertsView{Enabled: a.Enabled, To: a.To, Via: a.Via, Repeat: time.Duration(a.RepeatEvery).String(), Admin: a.Admin, Tech: a.Tech}
}

func (s *Server) orgOr404(w http.ResponseWriter, name string) bool {
	_, ok, err := s.b.Store().Org(name)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return false
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no such organisation")
		return false
	}
	return true
}

func (s *Server) getAlerts(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.orgOr404(w, name) {
		return
	}
	set, err := s.b.Store().OrgSettingsOf(name)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	writeJSON(w, http.StatusOK, alertsView(set.Alerts))
}

func (s *Server) putAlerts(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.orgOr404(w, name) {
		return
	}
	var req AlertsView
	if !decodeBody(w, r, &req) {
		return
	}
	a := fsm.AlertSettings{Enabled: req.Enabled, To: req.To, Via: req.Via, Admin: req.Admin, Tech: req.Tech}
	if a.To == "" {
		a.To = fsm.AlertToBoth
	}
	if a.Via == "" {
		a.Via = fsm.AlertByEmail
	}
	if req.Repeat != "" {
		d, err := time.ParseDuration(req.Repeat)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "repeat must be a duration such as 4h, or 0s for no reminders")
			return
		}
		a.RepeatEvery = int64(d)
	}
	detail := "alerts " + map[bool]string{true: "on", false: "off"}[a.Enabled] + ", to " + a.To + ", by " + a.Via + ", repeat " + time.Duration(a.RepeatEvery).String()
	if !s.applyAudited(w, r, &fsm.OrgSettingsSet{Org: name, Alerts: &a, At: s.b.Now().UnixNano()}, inbox.AuditAlertsSet, name, "", detail) {
		return
	}
	set, _ := s.b.Store().OrgSettingsOf(name)
	writeJSON(w, http.StatusOK, alertsView(set.Alerts))
}

// GatewayRequest is the body of PUT /api/v1/alerts/gateway; the password
// is never shown again.
type GatewayRequest struct {
	URL      string `json:"url"`
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	From     string `json:"from,omitempty"`
}

func (s *Server) getGateway(w http.ResponseWriter, r *http.Request) {
	g, ok, err := s.b.Store().SMSGatewayConfig()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"configured": ok, "url": g.URL, "user": g.User, "from": g.From, "password_set": g.Password != ""})
}

func (s *Server) putGateway(w http.ResponseWriter, r *http.Request) {
	var req GatewayRequest
	if !decodeBody(w, r, &req) {
		return
	}
	g := fsm.SMSGateway{URL: strings.TrimSpace(req.URL), User: req.User, Password: req.Password, From: req.From}
	if !s.applyAudited(w, r, &fsm.SMSGatewaySet{Gateway: g}, "sms_gateway_set", "", g.URL, "user "+g.User) {
		return
	}
	s.getGateway(w, r)
}

// ImportReport is the answer to POST /api/v1/users/import.
type ImportReport struct {
	Imported int                   `json:"imported"`
	Welcomed int                   `json:"welcomed"`
	Problems []inbox.ImportProblem `json:"problems,omitempty"`
}

// importUsers reads a CSV file (the body) for ?org=; with ?welcome=true
// every imported user gets a welcome email.
func (s *Server) importUsers(w http.ResponseWriter, r *http.Request) {
	org := r.URL.Query().Get("org")
	o, ok, err := s.b.Store().Org(org)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no such organisation")
		return
	}
	users, problems := inbox.ParseUserCSV(http.MaxBytesReader(w, r.Body, 2<<20), org, s.inbox.CheckImported)
	if len(problems) > 0 {
		writeJSON(w, http.StatusBadRequest, ImportReport{Problems: problems})
		return
	}
	var emails []string
	for _, u := range users {
		emails = append(emails, u.Email)
	}
	if !s.applyAudited(w, r, &fsm.UserImport{Users: users, At: s.b.Now().UnixNano()}, inbox.AuditUserImport, org, "", strconv.Itoa(len(users))+" users: "+strings.Join(emails, " ")) {
		return
	}
	rep := ImportReport{Imported: len(users)}
	if r.URL.Query().Get("welcome") == "true" {
		n, err := s.inbox.SendPasswordLinks(r, OperatorActor, o, emails, fsm.TokenWelcome)
		rep.Welcomed = n
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"imported": rep.Imported, "welcomed": n, "error": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusCreated, rep)
}

// WelcomeRequest is the body of POST /api/v1/users/welcome.
type WelcomeRequest struct {
	Emails []string `json:"emails"`
	// Reset sends password reset links instead of welcome links.
	Reset bool `json:"reset,omitempty"`
}

func (s *Server) welcomeUsers(w http.ResponseWriter, r *http.Request) {
	var req WelcomeRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if len(req.Emails) == 0 {
		writeError(w, http.StatusBadRequest, "no users named")
		return
	}
	byOrg := map[string][]string{}
	for _, e := range req.Emails {
		e = strings.ToLower(strings.TrimSpace(e))
		u, ok, err := s.b.Store().User(e)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "state store unavailable")
			return
		}
		if !ok || u.Org == "" {
			writeError(w, http.StatusNotFound, "no such user of an organisation: "+e)
			return
		}
		byOrg[u.Org] = append(byOrg[u.Org], e)
	}
	kind := fsm.TokenWelcome
	if req.Reset {
		kind = fsm.TokenReset
	}
	sent := 0
	for org, emails := range byOrg {
		o, _, _ := s.b.Store().Org(org)
		n, err := s.inbox.SendPasswordLinks(r, OperatorActor, o, emails, kind)
		sent += n
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"sent": sent, "error": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sent": sent})
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	email := strings.ToLower(r.PathValue("email"))
	u, ok, _ := s.b.Store().User(email)
	if !ok {
		writeError(w, http.StatusNotFound, "no such user")
		return
	}
	if s.applyAudited(w, r, &fsm.UserDelete{Email: email, At: s.b.Now().UnixNano()}, inbox.AuditUserDelete, u.Org, email, "") {
		w.WriteHeader(http.StatusNoContent)
	}
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
	inbox.WriteAuditCSV(w, func(before string) ([]fsm.AuditEntry, string, error) {
		f.Before, f.Limit = before, 1000
		return s.b.Store().SearchAudit(f)
	})
}

// operatorSignIn reports the operator's sign-in of the status page, for
// the admin console.
func (s *Server) operatorSignIn(r *http.Request) (string, bool) {
	c, err := r.Cookie(operatorCookie)
	if err != nil || c.Value == "" {
		return "", false
	}
	ok, _ := s.operatorToken(c.Value)
	return c.Value, ok
}
