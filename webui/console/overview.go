package console

import (
	"net/http"
	"sort"
	"time"

	"lifeline/fsm"
	"lifeline/webui/logs"
	"lifeline/webui/page"
	"lifeline/webui/session"
)

// managedOrgs lists what the viewer administers: an org admin their own
// organisation, a partner the organisations linked to them.
func managedOrgs(v *session.Viewer) []string {
	switch v.User.Role {
	case fsm.RoleOrgAdmin:
		return []string{v.User.Org}
	case fsm.RolePartner:
		out := append([]string(nil), v.User.Orgs...)
		sort.Strings(out)
		return out
	}
	return nil
}

func (s *Server) adminPage(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	if v.Operator {
		s.operatorHome(w, r)
		return
	}
	orgs := managedOrgs(v)
	if len(orgs) == 0 {
		s.notFound(w, r)
		return
	}
	if len(orgs) == 1 && v.User.Role == fsm.RoleOrgAdmin {
		http.Redirect(w, r, orgURL(orgs[0]), http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, adminHome(v, orgs))
}

// OperatorHome is the operator's console page: every organisation and
// the domains waiting for approval.
type OperatorHome struct {
	Orgs     []fsm.Org
	Requests []fsm.DomainRequestRecord
	Flash    string
}

func (s *Server) operatorHome(w http.ResponseWriter, r *http.Request) {
	orgs, err := s.b.Store().Orgs()
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	reqs, err := s.b.Store().DomainRequests("")
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, operatorHomePage(viewerOf(r), OperatorHome{Orgs: orgs, Requests: reqs, Flash: r.URL.Query().Get("flash")}))
}

// UserRow is one user on the organisation page.
type UserRow struct {
	User  fsm.User
	Inbox int
}

// OrgPage is the organisation admin page.
type OrgPage struct {
	Org fsm.Org
	// CanOpen is set for org admins, who may open users' inboxes;
	// partners may not.
	CanOpen bool
	Users   []UserRow
	Audit   []fsm.AuditEntry
	Domains []fsm.Domain
	Now     time.Time
}

// managed resolves {org} for the viewer; anything else is 404.
func (s *Server) managed(w http.ResponseWriter, r *http.Request) (*session.Viewer, fsm.Org, bool) {
	v := viewerOf(r)
	name := r.PathValue("org")
	if !canManage(v, name) {
		s.notFound(w, r)
		return v, fsm.Org{}, false
	}
	o, ok, err := s.b.Store().Org(name)
	if err != nil {
		s.unavailable(w, r, err)
		return v, o, false
	}
	if !ok {
		s.notFound(w, r)
		return v, o, false
	}
	return v, o, true
}

func (s *Server) adminOrg(w http.ResponseWriter, r *http.Request) {
	v, o, ok := s.managed(w, r)
	if !ok {
		return
	}
	users, err := s.b.Store().Users(o.Name)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	p := OrgPage{Org: o, CanOpen: v.User.Role == fsm.RoleOrgAdmin, Now: s.b.Now()}
	p.Domains, _ = s.b.Store().OrgDomains(o.Name)
	for _, u := range users {
		p.Users = append(p.Users, UserRow{User: u, Inbox: s.b.Store().InboxCount(u.Email)})
	}
	p.Audit, _ = s.b.Store().Audit([]string{o.Name}, 0, 100)
	s.render(w, r, http.StatusOK, orgPage(v, p))
}

func (s *Server) adminOrgTOTP(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.managed(w, r)
	if !ok {
		return
	}
	req := r.PostFormValue("require") == "on"
	if s.applyAudited(w, r, &fsm.OrgPut{Name: o.Name, RequireTOTP: &req, At: s.b.Now().UnixNano()}, logs.AuditOrgSet, o.Name, "", "require two-step sign-in: "+page.YesNo(req)) {
		http.Redirect(w, r, orgURL(o.Name), http.StatusSeeOther)
	}
}
