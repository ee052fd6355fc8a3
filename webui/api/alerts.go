package api

import (
	"net/http"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/webui/logs"
)

// An organisation's alert settings and the SMS gateway the alerts go out
// through.

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
	if !s.applyAudited(w, r, &fsm.OrgSettingsSet{Org: name, Alerts: &a, At: s.b.Now().UnixNano()}, logs.AuditAlertsSet, name, "", detail) {
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
	if !s.applyAudited(w, r, &fsm.SMSGatewaySet{Gateway: g}, logs.AuditSMSGatewaySet, "", g.URL, "user "+g.User) {
		return
	}
	s.getGateway(w, r)
}
