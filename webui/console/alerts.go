package console

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/webui/logs"
	"lifeline/webui/session"
)

// AlertDomain is one domain's alert state on the alerts page.
type AlertDomain struct {
	Name     string
	Spooling bool
	Since    time.Time
	Episode  *fsm.AlertEpisode
}

// AlertsPage is Company settings > Alerts.
type AlertsPage struct {
	Org     fsm.Org
	Alerts  fsm.AlertSettings
	Repeat  string
	Gateway bool
	Domains []AlertDomain
	SMS     []fsm.SMSMessage
	Now     time.Time
	Flash   string
	Error   string
}

func fmtDuration(ns int64) string {
	if ns <= 0 {
		return "0"
	}
	d := time.Duration(ns)
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	return strings.TrimSuffix(s, "0m")
}

func (s *Server) renderAlerts(w http.ResponseWriter, r *http.Request, code int, o fsm.Org, p AlertsPage, form bool) {
	set, err := s.b.Store().OrgSettingsOf(o.Name)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	if !form {
		p.Alerts, p.Repeat = set.Alerts, fmtDuration(set.Alerts.RepeatEvery)
	}
	_, p.Gateway, _ = s.b.Store().SMSGatewayConfig()
	ds, err := s.b.Store().OrgDomains(o.Name)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	for _, d := range ds {
		ad := AlertDomain{Name: d.Name, Spooling: d.Spooling}
		if d.SpoolingSince != 0 {
			ad.Since = time.Unix(0, d.SpoolingSince)
		}
		if ep, ok, _ := s.b.Store().AlertEpisodeOf(d.Name); ok {
			ad.Episode = &ep
		}
		p.Domains = append(p.Domains, ad)
	}
	p.SMS, _ = s.b.Store().SMSOutbox(false, o.Name, 20)
	p.Org, p.Now = o, s.b.Now()
	s.render(w, r, code, alertsPage(viewerOf(r), p))
}

func (s *Server) alertsPage(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	s.renderAlerts(w, r, http.StatusOK, o, AlertsPage{Flash: r.URL.Query().Get("flash")}, false)
}

// ParseAlertForm reads the alerts form.
func ParseAlertForm(get func(string) string) (fsm.AlertSettings, string, error) {
	a := fsm.AlertSettings{Enabled: get("enabled") == "on", To: get("to"), Via: get("via")}
	contact := func(prefix string) fsm.Contact {
		return fsm.Contact{Name: strings.TrimSpace(get(prefix + "_name")), Email: strings.ToLower(strings.TrimSpace(get(prefix + "_email"))),
			Mobile: strings.ReplaceAll(strings.TrimSpace(get(prefix+"_mobile")), " ", "")}
	}
	a.Admin, a.Tech = contact("admin"), contact("tech")
	repeat := strings.TrimSpace(get("repeat"))
	if repeat != "" && repeat != "0" {
		d, err := time.ParseDuration(repeat)
		if err != nil || d < 0 {
			return a, repeat, fmt.Errorf("repeat every: give a duration such as 4h or 30m, or 0 for no reminders")
		}
		if d > 0 && d < time.Minute {
			return a, repeat, fmt.Errorf("repeat every: at least 1m")
		}
		a.RepeatEvery = int64(d)
	}
	return a, repeat, nil
}

func (s *Server) alertsSet(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	a, repeat, err := ParseAlertForm(r.PostFormValue)
	if err != nil {
		s.renderAlerts(w, r, http.StatusBadRequest, o, AlertsPage{Alerts: a, Repeat: repeat, Error: err.Error()}, true)
		return
	}
	cmd := &fsm.OrgSettingsSet{Org: o.Name, Alerts: &a, At: s.b.Now().UnixNano()}
	detail := fmt.Sprintf("alerts %s, to %s, by %s, repeat %s", map[bool]string{true: "on", false: "off"}[a.Enabled], a.To, a.Via, fmtDuration(a.RepeatEvery))
	a2, err := fsm.NewAudited(cmd, fsm.AuditEntry{At: cmd.At, Kind: logs.AuditAlertsSet, Actor: viewerOf(r).User.Email, Org: o.Name, Addr: session.ClientAddr(r), Detail: detail})
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.b.ApplyVisible(r.Context(), a2); err != nil {
		var ve *fsm.ValidationError
		if errors.As(err, &ve) {
			s.renderAlerts(w, r, http.StatusBadRequest, o, AlertsPage{Alerts: a, Repeat: repeat, Error: ve.Msg}, true)
			return
		}
		s.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, orgURL(o.Name)+"/alerts?flash=saved", http.StatusSeeOther)
}
