package inbox

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/webui/auth"
)

// Users and groups. Users are added one at a time or from a CSV file,
// without a password: a welcome email carries a one-time link (kept as a
// hash in the replicated state, valid for WelcomeTTL) to choose one, so
// people can sign in before an outage rather than during one. Groups are
// labels on users; an organisation can limit the Emergency Inbox to
// some of them.

// WelcomeTTL and ResetTTL are how long password links work.
const (
	WelcomeTTL = 7 * 24 * time.Hour
	ResetTTL   = 48 * time.Hour
)

// ImportProblem is one refused line of a CSV import.
type ImportProblem struct {
	Line  int
	Email string
	Error string
}

// UsersPage is Company settings > Users.
type UsersPage struct {
	Org         fsm.Org
	Users       []fsm.User
	Query       string
	Groups      []string
	InboxGroups []string
	Problems    []ImportProblem
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

func parseRole(s string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "user":
		return fsm.RoleUser, true
	case "admin", "org-admin", "orgadmin":
		return fsm.RoleOrgAdmin, true
	}
	return "", false
}

// checkImported validates one user for an import; "" when it is fine.
func (s *Server) checkImported(u fsm.ImportedUser, seen map[string]bool) string {
	switch {
	case !fsm.ValidEmail(u.Email):
		return "not a valid email address"
	case seen[u.Email]:
		return "listed twice in this file"
	}
	if _, exists, _ := s.b.Store().User(u.Email); exists {
		return "a user with this address exists already"
	}
	if u.DisplayName != "" && (len(u.DisplayName) > 200 || strings.ContainsAny(u.DisplayName, "\r\n\t")) {
		return "the name must be at most 200 characters on one line"
	}
	for _, g := range u.Groups {
		if !fsm.ValidGroup(g) {
			return "invalid group name " + strconv.Quote(g)
		}
	}
	return ""
}

func (s *Server) userAdd(w http.ResponseWriter, r *http.Request) {
	_, o, ok := s.orgOf(w, r)
	if !ok {
		return
	}
	role, okRole := parseRole(r.PostFormValue("role"))
	u := fsm.ImportedUser{Email: strings.ToLower(strings.TrimSpace(r.PostFormValue("email"))), DisplayName: strings.TrimSpace(r.PostFormValue("name")),
		Role: role, Org: o.Name, Groups: splitList(r.PostFormValue("groups"))}
	if !okRole {
		s.renderUsers(w, r, http.StatusBadRequest, o, UsersPage{Error: "Role must be user or admin."})
		return
	}
	if msg := s.checkImported(u, map[string]bool{}); msg != "" {
		s.renderUsers(w, r, http.StatusBadRequest, o, UsersPage{Error: u.Email + ": " + msg})
		return
	}
	if !s.applyAudited(w, r, &fsm.UserImport{Users: []fsm.ImportedUser{u}, At: s.b.Now().UnixNano()}, AuditUserAdd, o.Name, u.Email, "role "+u.Role) {
		return
	}
	flash := "added"
	if r.PostFormValue("welcome") == "on" {
		n, err := s.sendPasswordLinks(r, o, []string{u.Email}, fsm.TokenWelcome)
		if err != nil {
			s.renderUsers(w, r, http.StatusServiceUnavailable, o, UsersPage{Error: "The user was added, but the welcome email could not be queued: " + err.Error()})
			return
		}
		flash = fmt.Sprintf("added; %d welcome email queued", n)
	}
	http.Redirect(w, r, orgURL(o.Name)+"/users?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

// ParseUserCSV reads an import file: one user per line, the columns
// email, name, role (user or admin) and groups (separated by ; or
// spaces); a first line starting with "email" is a header. Empty lines
// and lines starting with # are skipped. Every line is checked with
// check; the users come back only if no line has a problem.
func ParseUserCSV(rd io.Reader, org string, check func(fsm.ImportedUser, map[string]bool) string) ([]fsm.ImportedUser, []ImportProblem) {
	cr := csv.NewReader(rd)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	var users []fsm.ImportedUser
	var problems []ImportProblem
	seen := map[string]bool{}
	for first := true; ; first = false {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			problems = append(problems, ImportProblem{Line: line, Error: "not valid CSV: " + err.Error()})
			break
		}
		if first && strings.EqualFold(strings.TrimSpace(rec[0]), "email") {
			continue
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		field := func(i int) string {
			if i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		u := fsm.ImportedUser{Email: strings.ToLower(field(0)), DisplayName: field(1), Org: org,
			Groups: strings.FieldsFunc(field(3), func(r rune) bool { return r == ';' || r == ' ' || r == '|' })}
		role, ok := parseRole(field(2))
		u.Role = role
		switch {
		case len(rec) > 4:
			problems = append(problems, ImportProblem{Line: line, Email: u.Email, Error: "too many columns: want email, name, role, groups"})
		case !ok:
			problems = append(problems, ImportProblem{Line: line, Email: u.Email, Error: "role must be user or admin, not " + strconv.Quote(field(2))})
		default:
			if msg := check(u, seen); msg != "" {
				problems = append(problems, ImportProblem{Line: line, Email: u.Email, Error: msg})
			}
		}
		seen[u.Email] = true
		users = append(users, u)
		if len(users) > fsm.MaxImport {
			problems = append(problems, ImportProblem{Line: line, Error: fmt.Sprintf("a file holds at most %d users; split it", fsm.MaxImport)})
			break
		}
	}
	if len(users) == 0 && len(problems) == 0 {
		problems = append(problems, ImportProblem{Line: 1, Error: "the file lists no users"})
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return users, nil
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
	users, problems := ParseUserCSV(io.LimitReader(f, 2<<20), o.Name, s.checkImported)
	if len(problems) > 0 {
		s.renderUsers(w, r, http.StatusBadRequest, o, UsersPage{Problems: problems,
			Error: fmt.Sprintf("Nothing was imported: %s in the file. Correct them and import the whole file again.", plural(len(problems), "line has a problem", "lines have problems"))})
		return
	}
	var emails []string
	for _, u := range users {
		emails = append(emails, u.Email)
	}
	if !s.applyAudited(w, r, &fsm.UserImport{Users: users, At: s.b.Now().UnixNano()}, AuditUserImport, o.Name, "", plural(len(users), "user", "users")+": "+strings.Join(emails, " ")) {
		return
	}
	flash := "imported " + plural(len(users), "user", "users")
	if r.PostFormValue("welcome") == "on" {
		n, err := s.sendPasswordLinks(r, o, emails, fsm.TokenWelcome)
		if err != nil {
			s.renderUsers(w, r, http.StatusServiceUnavailable, o, UsersPage{Error: "The users were imported, but the welcome emails could not be queued: " + err.Error()})
			return
		}
		flash += fmt.Sprintf("; %s queued", plural(n, "welcome email", "welcome emails"))
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
	n, err := s.sendPasswordLinks(r, o, emails, fsm.TokenWelcome)
	if err != nil {
		s.renderUsers(w, r, http.StatusBadRequest, o, UsersPage{Error: "Welcome emails not sent: " + err.Error()})
		return
	}
	http.Redirect(w, r, orgURL(o.Name)+"/users?flash="+url.QueryEscape(plural(n, "welcome email", "welcome emails")+" queued"), http.StatusSeeOther)
}

// sendPasswordLinks issues one-time links for emails (one command, with
// its audit entry) and queues an email with the link to each, through
// the spool like any mail the cluster writes.
func (s *Server) sendPasswordLinks(r *http.Request, o fsm.Org, emails []string, kind string) (int, error) {
	return s.SendPasswordLinks(r, viewerOf(r).User.Email, o, emails, kind)
}

// CheckImported validates one user of an import against the state; ""
// when it may be imported.
func (s *Server) CheckImported(u fsm.ImportedUser, seen map[string]bool) string {
	return s.checkImported(u, seen)
}

// SendPasswordLinks issues password links (welcome or reset) for users of
// o and queues an email with each; actor is who asked, for the audit log.
// The links point at the host r was sent to.
func (s *Server) SendPasswordLinks(r *http.Request, actor string, o fsm.Org, emails []string, kind string) (int, error) {
	if len(emails) > fsm.MaxImport {
		return 0, fmt.Errorf("at most %d at a time", fsm.MaxImport)
	}
	now := s.b.Now()
	ttl := WelcomeTTL
	if kind == fsm.TokenReset {
		ttl = ResetTTL
	}
	cmd := &fsm.PasswordTokens{At: now.UnixNano()}
	links := map[string]string{}
	for _, e := range emails {
		b := make([]byte, 32)
		if _, err := io.ReadFull(s.rand(), b); err != nil {
			return 0, err
		}
		tok := base64.RawURLEncoding.EncodeToString(b)
		cmd.Tokens = append(cmd.Tokens, fsm.PasswordToken{Hash: auth.HashSessionID(tok), Email: e, Kind: kind, Expires: now.Add(ttl).UnixNano(), By: actor})
		links[e] = s.baseURL(r) + "/welcome/" + tok
	}
	a, err := fsm.NewAudited(cmd, fsm.AuditEntry{At: now.UnixNano(), Kind: AuditPasswordLink, Actor: actor, Org: o.Name,
		Addr: clientAddr(r), Target: strings.Join(emails, " "), Detail: kind})
	if err != nil {
		return 0, err
	}
	if len(a.Entry.Target) > 254 {
		a.Entry.Target = a.Entry.Target[:250] + "..."
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.b.ApplyVisible(ctx, a); err != nil {
		var ve *fsm.ValidationError
		if errors.As(err, &ve) {
			return 0, errors.New(ve.Msg)
		}
		return 0, err
	}
	sent := 0
	for _, t := range cmd.Tokens {
		u, _, _ := s.b.Store().User(t.Email)
		body := passwordMail(s.b.MailHostname(), o.Name, u, links[t.Email], s.baseURL(r), kind, now, now.Add(ttl))
		if _, err := s.b.SendMail(ctx, "", []string{t.Email}, body); err != nil {
			return sent, err
		}
		sent++
	}
	return sent, nil
}

func passwordMail(host, org string, u fsm.User, link, base, kind string, now, until time.Time) []byte {
	var b bytes.Buffer
	subject := "Your Lifeline Emergency Inbox account"
	intro := fmt.Sprintf("%s uses Lifeline to keep your email flowing when its mail server is down.\r\n"+
		"In an outage you can read and answer your mail at %s/login.\r\n\r\n"+
		"Choose your password now, so you can sign in when you need it:\r\n", org, base)
	if kind == fsm.TokenReset {
		subject = "Choose a new password for your Lifeline Emergency Inbox"
		intro = "An administrator of " + org + " asked for your Lifeline Emergency Inbox password to be reset.\r\nChoose a new one here:\r\n"
	}
	fmt.Fprintf(&b, "From: Lifeline <noreply@%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.%s@%s>\r\n",
		host, u.Email, subject, now.UTC().Format(time.RFC1123Z), now.UnixNano(), kind, host)
	b.WriteString("Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	if u.DisplayName != "" {
		fmt.Fprintf(&b, "Hello %s,\r\n\r\n", u.DisplayName)
	}
	b.WriteString(intro)
	fmt.Fprintf(&b, "\r\n  %s\r\n\r\nThe link works once, until %s. Your sign-in name is %s.\r\n", link, until.UTC().Format("2 Jan 2006 15:04 MST"), u.Email)
	return b.Bytes()
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
	role, okRole := parseRole(r.PostFormValue("role"))
	groups := splitList(r.PostFormValue("groups"))
	disabled := r.PostFormValue("disabled") == "on"
	mfa := r.PostFormValue("require_totp") == "on"
	page := UserEditPage{Org: o, User: u, Self: u.Email == v.User.Email}
	if !okRole {
		page.Error = "Role must be user or admin."
		s.render(w, r, http.StatusBadRequest, userEditPage(v, page))
		return
	}
	if page.Self && (disabled || role != u.Role) {
		page.Error = "You cannot disable yourself or change your own role."
		s.render(w, r, http.StatusBadRequest, userEditPage(v, page))
		return
	}
	cmd := &fsm.UserEdit{Email: u.Email, DisplayName: &name, Role: &role, Groups: &groups, Disabled: &disabled, RequireTOTP: &mfa,
		ClearTOTP: r.PostFormValue("reset_totp") == "on", At: s.b.Now().UnixNano()}
	detail := fmt.Sprintf("role %s, groups %s, disabled %s, require two-step %s", role, strings.Join(groups, ";"), yesNo(disabled), yesNo(mfa))
	if cmd.ClearTOTP {
		detail += ", two-step sign-in reset"
	}
	if s.applyAudited(w, r, cmd, AuditUserEdit, o.Name, u.Email, detail) {
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
	if s.applyAudited(w, r, &fsm.UserDelete{Email: u.Email, At: s.b.Now().UnixNano()}, AuditUserDelete, o.Name, u.Email, "") {
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
	if _, err := s.sendPasswordLinks(r, o, []string{u.Email}, fsm.TokenReset); err != nil {
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
	if s.applyAudited(w, r, &fsm.OrgSettingsSet{Org: o.Name, InboxGroups: &groups, At: s.b.Now().UnixNano()}, AuditInboxAccess, o.Name, "", detail) {
		http.Redirect(w, r, orgURL(o.Name)+"/users?flash="+url.QueryEscape("Emergency Inbox access saved"), http.StatusSeeOther)
	}
}

// WelcomeForm is the page behind a password link.
type WelcomeForm struct {
	Email string
	Kind  string
	Error string
}

func (s *Server) welcomeToken(w http.ResponseWriter, r *http.Request) (fsm.PasswordToken, bool) {
	tok := r.PathValue("token")
	if len(tok) > 100 {
		s.errorPage(w, r, http.StatusNotFound, fsm.ErrLinkInvalid)
		return fsm.PasswordToken{}, false
	}
	t, ok, err := s.b.Store().PasswordTokenOf(auth.HashSessionID(tok))
	if err != nil {
		s.unavailable(w, r, err)
		return t, false
	}
	if !ok || t.Expires <= s.b.Now().UnixNano() {
		s.errorPage(w, r, http.StatusNotFound, fsm.ErrLinkInvalid)
		return t, false
	}
	return t, true
}

func (s *Server) welcomePage(w http.ResponseWriter, r *http.Request) {
	t, ok := s.welcomeToken(w, r)
	if !ok {
		return
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	s.render(w, r, http.StatusOK, welcomePage(WelcomeForm{Email: t.Email, Kind: t.Kind}))
}

func (s *Server) welcomeSet(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		s.errorPage(w, r, http.StatusForbidden, "Cross-site form post refused.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	t, ok := s.welcomeToken(w, r)
	if !ok {
		return
	}
	pw, again := r.PostFormValue("password"), r.PostFormValue("password2")
	f := WelcomeForm{Email: t.Email, Kind: t.Kind}
	if pw != again {
		f.Error = "The two passwords differ."
	} else if err := auth.CheckPasswordPolicy(pw); err != nil {
		f.Error = "The password " + strings.TrimPrefix(err.Error(), "password ") + "."
	}
	if f.Error != "" {
		s.render(w, r, http.StatusBadRequest, welcomePage(f))
		return
	}
	hash, err := auth.HashPassword(pw, s.rand())
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	if !s.apply(w, r, &fsm.PasswordSetByToken{Hash: auth.HashSessionID(r.PathValue("token")), PasswordHash: hash, At: s.b.Now().UnixNano(), Addr: clientAddr(r)}) {
		return
	}
	http.Redirect(w, r, "/login?flash=password", http.StatusSeeOther)
}
