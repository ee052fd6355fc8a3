package console

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"lifeline/fsm"
	"lifeline/webui/accounts"
	"lifeline/webui/logs"
	"lifeline/webui/page"
)

// Users and groups. Users are added one at a time or from a CSV file,
// without a password: a welcome email carries a one-time link to choose
// one (webui/accounts). Groups are labels on users; an organisation can
// limit the Emergency Inbox to some of them.

// UsersPage is Company settings > Users.
type UsersPage struct {
	Org         fsm.Org
	Users       []fsm.User
	Query       string
	Groups      []string
	InboxGroups []string
	Problems    []accounts.ImportProblem
	Flash       string
	Error       string
	Self        string
}

func (s *Server) renderUsers(w http.ResponseWriter, r *http.Request, code int, o fsm.Org, p UsersPage) {
	users, err := s.b.Store().Users(o.Name)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	set, err := s.b.Store().OrgSettingsOf(o.Name)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	groups := map[string]bool{}
	q := strings.ToLower(strings.TrimSpace(p.Query))
	for _, u := range users {
		for _, g := range u.Groups {
			groups[g] = true
		}
		if q == "" || strings.Contains(u.Email, q) || strings.Contains(strings.ToLower(u.DisplayName), q) || hasGroup(u.Groups, q) {
			p.Users = append(p.Users, u)
		}
	}
	for _, g := range set.InboxGroups {
		groups[g] = true
	}
	for g := range groups {
		p.Groups = append(p.Groups, g)
	}
	sort.Strings(p.Groups)
	p.Org, p.InboxGroups, p.Self = o, set.InboxGroups, viewerOf(r).User.Email
	s.render(w, r, code, usersPage(viewerOf(r), p))
}

func hasGroup(gs []string, q string) bool {
	for _, g := range gs {
		if strings.ToLower(g) == q {
			return true
		}
	}
	return false
}

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	s.renderUsers(w, r, http.StatusOK, o, UsersPage{Query: r.URL.Query().Get("q"), Flash: r.URL.Query().Get("flash")})
}

func (s *Server) userAdd(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	role, okRole := accounts.ParseRole(r.PostFormValue("role"))
	u := fsm.ImportedUser{Email: strings.ToLower(strings.TrimSpace(r.PostFormValue("email"))), DisplayName: strings.TrimSpace(r.PostFormValue("name")),
		Role: role, Org: o.Name, Groups: splitList(r.PostFormValue("groups"))}
	if !okRole {
		s.renderUsers(w, r, http.StatusBadRequest, o, UsersPage{Error: "Role must be user or admin."})
		return
	}
	if msg := accounts.CheckImported(s.b.Store(), u, map[string]bool{}); msg != "" {
		s.renderUsers(w, r, http.StatusBadRequest, o, UsersPage{Error: u.Email + ": " + msg})
		return
	}
	if !s.applyAudited(w, r, &fsm.UserImport{Users: []fsm.ImportedUser{u}, At: s.b.Now().UnixNano()}, logs.AuditUserAdd, o.Name, u.Email, "role "+u.Role) {
		return
	}
	flash := "added"
	if r.PostFormValue("welcome") == "on" {
		n, err := s.sendLinks(r, o, []string{u.Email}, fsm.TokenWelcome)
		if err != nil {
			s.renderUsers(w, r, http.StatusServiceUnavailable, o, UsersPage{Error: "The user was added, but the welcome email could not be queued: " + err.Error()})
			return
		}
		flash = fmt.Sprintf("added; %d welcome email queued", n)
	}
	http.Redirect(w, r, orgURL(o.Name)+"/users?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

func (s *Server) usersImport(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	f, _, err := r.FormFile("csv")
	if err != nil {
		s.renderUsers(w, r, http.StatusBadRequest, o, UsersPage{Error: "Choose a CSV file to import."})
		return
	}
	defer f.Close()
	users, problems := accounts.ParseUserCSV(io.LimitReader(f, 2<<20), o.Name, s.b.Store())
	if len(problems) > 0 {
		s.renderUsers(w, r, http.StatusBadRequest, o, UsersPage{Problems: problems,
			Error: fmt.Sprintf("Nothing was imported: %s in the file. Correct them and import the whole file again.", page.Plural(len(problems), "line has a problem", "lines have problems"))})
		return
	}
	var emails []string
	for _, u := range users {
		emails = append(emails, u.Email)
	}
	if !s.applyAudited(w, r, &fsm.UserImport{Users: users, At: s.b.Now().UnixNano()}, logs.AuditUserImport, o.Name, "", page.Plural(len(users), "user", "users")+": "+strings.Join(emails, " ")) {
		return
	}
	flash := "imported " + page.Plural(len(users), "user", "users")
	if r.PostFormValue("welcome") == "on" {
		n, err := s.sendLinks(r, o, emails, fsm.TokenWelcome)
		if err != nil {
			s.renderUsers(w, r, http.StatusServiceUnavailable, o, UsersPage{Error: "The users were imported, but the welcome emails could not be queued: " + err.Error()})
			return
		}
		flash += fmt.Sprintf("; %s queued", page.Plural(n, "welcome email", "welcome emails"))
	}
	http.Redirect(w, r, orgURL(o.Name)+"/users?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

func (s *Server) usersWelcome(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	emails := r.PostForm["email"]
	if r.PostFormValue("all") == "nopassword" {
		users, err := s.b.Store().Users(o.Name)
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		emails = nil
		for _, u := range users {
			if !u.PasswordSet() && !u.Disabled {
				emails = append(emails, u.Email)
			}
		}
	}
	if len(emails) == 0 {
		s.renderUsers(w, r, http.StatusBadRequest, o, UsersPage{Error: "Select the users to send a welcome email to."})
		return
	}
	for _, e := range emails {
		u, exists, err := s.b.Store().User(e)
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		if !exists || u.Org != o.Name {
			s.notFound(w, r)
			return
		}
	}
	n, err := s.sendLinks(r, o, emails, fsm.TokenWelcome)
	if err != nil {
		s.renderUsers(w, r, http.StatusBadRequest, o, UsersPage{Error: "Welcome emails not sent: " + err.Error()})
		return
	}
	http.Redirect(w, r, orgURL(o.Name)+"/users?flash="+url.QueryEscape(page.Plural(n, "welcome email", "welcome emails")+" queued"), http.StatusSeeOther)
}

// manageUser resolves {email} to a user of the organisation; 404 else.
func (s *Server) manageUser(w http.ResponseWriter, r *http.Request, org string) (fsm.User, bool) {
	u, ok, err := s.b.Store().User(strings.ToLower(r.PathValue("email")))
	if err != nil {
		s.unavailable(w, r, err)
		return u, false
	}
	if !ok || u.Org != org || u.Role == fsm.RolePartner {
		s.notFound(w, r)
		return u, false
	}
	return u, true
}

// UserEditPage is one user's page.
type UserEditPage struct {
	Org   fsm.Org
	User  fsm.User
	Self  bool
	Flash string
	Error string
}

func (s *Server) userPage(w http.ResponseWriter, r *http.Request) {
	v, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	u, ok := s.manageUser(w, r, o.Name)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, userEditPage(v, UserEditPage{Org: o, User: u, Self: u.Email == v.User.Email, Flash: r.URL.Query().Get("flash")}))
}

func userURL(org, email string) string { return orgURL(org) + "/users/" + url.PathEscape(email) }

func (s *Server) userEdit(w http.ResponseWriter, r *http.Request) {
	v, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	u, ok := s.manageUser(w, r, o.Name)
	if !ok {
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	role, okRole := accounts.ParseRole(r.PostFormValue("role"))
	groups := splitList(r.PostFormValue("groups"))
	disabled := r.PostFormValue("disabled") == "on"
	mfa := r.PostFormValue("require_totp") == "on"
	ep := UserEditPage{Org: o, User: u, Self: u.Email == v.User.Email}
	if !okRole {
		ep.Error = "Role must be user or admin."
		s.render(w, r, http.StatusBadRequest, userEditPage(v, ep))
		return
	}
	if ep.Self && (disabled || role != u.Role) {
		ep.Error = "You cannot disable yourself or change your own role."
		s.render(w, r, http.StatusBadRequest, userEditPage(v, ep))
		return
	}
	cmd := &fsm.UserEdit{Email: u.Email, DisplayName: &name, Role: &role, Groups: &groups, Disabled: &disabled, RequireTOTP: &mfa,
		ClearTOTP: r.PostFormValue("reset_totp") == "on", At: s.b.Now().UnixNano()}
	detail := fmt.Sprintf("role %s, groups %s, disabled %s, require two-step %s", role, strings.Join(groups, ";"), page.YesNo(disabled), page.YesNo(mfa))
	if cmd.ClearTOTP {
		detail += ", two-step sign-in reset"
	}
	if s.applyAudited(w, r, cmd, logs.AuditUserEdit, o.Name, u.Email, detail) {
		http.Redirect(w, r, userURL(o.Name, u.Email)+"?flash=saved", http.StatusSeeOther)
	}
}

func (s *Server) userDelete(w http.ResponseWriter, r *http.Request) {
	v, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	u, ok := s.manageUser(w, r, o.Name)
	if !ok {
		return
	}
	if u.Email == v.User.Email {
		s.errorPage(w, r, http.StatusBadRequest, "You cannot delete yourself.")
		return
	}
	if s.applyAudited(w, r, &fsm.UserDelete{Email: u.Email, At: s.b.Now().UnixNano()}, logs.AuditUserDelete, o.Name, u.Email, "") {
		http.Redirect(w, r, orgURL(o.Name)+"/users?flash="+url.QueryEscape("deleted "+u.Email), http.StatusSeeOther)
	}
}

func (s *Server) userReset(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	u, ok := s.manageUser(w, r, o.Name)
	if !ok {
		return
	}
	if _, err := s.sendLinks(r, o, []string{u.Email}, fsm.TokenReset); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "No reset link sent: "+err.Error())
		return
	}
	http.Redirect(w, r, userURL(o.Name, u.Email)+"?flash="+url.QueryEscape("password reset link sent"), http.StatusSeeOther)
}

func (s *Server) inboxAccess(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	groups := []string{}
	if r.PostFormValue("access") == "groups" {
		groups = splitList(r.PostFormValue("groups"))
		if len(groups) == 0 {
			s.renderUsers(w, r, http.StatusBadRequest, o, UsersPage{Error: "Name the groups that may use the Emergency Inbox."})
			return
		}
	}
	detail := "everyone"
	if len(groups) > 0 {
		detail = "groups " + strings.Join(groups, ";")
	}
	if s.applyAudited(w, r, &fsm.OrgSettingsSet{Org: o.Name, InboxGroups: &groups, At: s.b.Now().UnixNano()}, logs.AuditInboxAccess, o.Name, "", detail) {
		http.Redirect(w, r, orgURL(o.Name)+"/users?flash="+url.QueryEscape("Emergency Inbox access saved"), http.StatusSeeOther)
	}
}
