package api

import (
	"net/http"
	"strconv"
	"strings"

	"lifeline/fsm"
	"lifeline/webui/accounts"
	"lifeline/webui/logs"
	"lifeline/webui/session"
)

// The accounts API is the operator's: organisations, their users and
// partners, and the audit log. Passwords arrive in the request (over TLS
// in production) and are hashed here, by the proposer, so the replicated
// state holds only argon2id hashes. Every change commits together with
// its audit entry (actor "operator").

// OrgRequest is the body of POST /api/v1/orgs and PUT /api/v1/orgs/{name}.
type OrgRequest struct {
	Name        string `json:"name"`
	RequireTOTP *bool  `json:"require_totp,omitempty"`
}

func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request) {
	os, err := s.b.Store().Orgs()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if os == nil {
		os = []fsm.Org{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"orgs": os})
}

func (s *Server) addOrg(w http.ResponseWriter, r *http.Request) {
	var req OrgRequest
	if !decodeBody(w, r, &req) {
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 100 {
		writeError(w, http.StatusBadRequest, "organisation name must be 1 to 100 characters")
		return
	}
	if _, ok, _ := s.b.Store().Org(req.Name); ok {
		writeError(w, http.StatusConflict, "organisation already exists: "+req.Name)
		return
	}
	if !s.applyAudited(w, r, &fsm.OrgPut{Name: req.Name, Create: true, RequireTOTP: req.RequireTOTP, At: s.b.Now().UnixNano()}, logs.AuditOrgAdd, req.Name, "", "") {
		return
	}
	o, _, _ := s.b.Store().Org(req.Name)
	writeJSON(w, http.StatusCreated, o)
}

func (s *Server) getOrg(w http.ResponseWriter, r *http.Request) {
	o, ok, err := s.b.Store().Org(r.PathValue("name"))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no such organisation")
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) setOrg(w http.ResponseWriter, r *http.Request) {
	var req OrgRequest
	if !decodeBody(w, r, &req) {
		return
	}
	name := r.PathValue("name")
	if _, ok, _ := s.b.Store().Org(name); !ok {
		writeError(w, http.StatusNotFound, "no such organisation")
		return
	}
	detail := ""
	if req.RequireTOTP != nil {
		detail = "require two-step sign-in: " + strconv.FormatBool(*req.RequireTOTP)
	}
	if !s.applyAudited(w, r, &fsm.OrgPut{Name: name, RequireTOTP: req.RequireTOTP, At: s.b.Now().UnixNano()}, logs.AuditOrgSet, name, "", detail) {
		return
	}
	o, _, _ := s.b.Store().Org(name)
	writeJSON(w, http.StatusOK, o)
}

// UserRequest is the body of POST /api/v1/users. Role is user, org-admin
// or partner; a partner has Orgs instead of Org.
type UserRequest struct {
	Email       string   `json:"email"`
	DisplayName string   `json:"display_name,omitempty"`
	Role        string   `json:"role,omitempty"`
	Org         string   `json:"org,omitempty"`
	Orgs        []string `json:"orgs,omitempty"`
	Password    string   `json:"password"`
}

// UserPatch is the body of PATCH /api/v1/users/{email}; absent fields stay.
type UserPatch struct {
	DisplayName *string   `json:"display_name,omitempty"`
	Role        *string   `json:"role,omitempty"`
	Orgs        *[]string `json:"orgs,omitempty"`
	Password    *string   `json:"password,omitempty"`
	Disabled    *bool     `json:"disabled,omitempty"`
	ResetTOTP   bool      `json:"reset_totp,omitempty"`
	// Groups and RequireTOTP cannot be combined with Password or Orgs in
	// one request.
	Groups      *[]string `json:"groups,omitempty"`
	RequireTOTP *bool     `json:"require_totp,omitempty"`
}

// UserView is a login as the API shows it: never a hash or a secret.
type UserView struct {
	fsm.User
	TOTP bool `json:"totp"`
}

func viewUser(u fsm.User) UserView { return UserView{User: u, TOTP: u.TOTPEnrolled()} }

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	org := r.URL.Query().Get("org")
	us, err := s.b.Store().Users(org)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if org != "" {
		if _, ok, _ := s.b.Store().Org(org); !ok {
			writeError(w, http.StatusNotFound, "no such organisation")
			return
		}
	}
	out := []UserView{}
	role := r.URL.Query().Get("role")
	for _, u := range us {
		if role == "" || u.Role == role {
			out = append(out, viewUser(u))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

func (s *Server) addUser(w http.ResponseWriter, r *http.Request) {
	var req UserRequest
	if !decodeBody(w, r, &req) {
		return
	}
	req.Email = strings.ToLower(strings.TrimSpace(req.Email))
	if req.Role == "" {
		req.Role = fsm.RoleUser
	}
	if req.Role == "admin" {
		req.Role = fsm.RoleOrgAdmin
	}
	if !fsm.ValidEmail(req.Email) {
		writeError(w, http.StatusBadRequest, "invalid email address: "+strconv.Quote(req.Email))
		return
	}
	if err := session.CheckPasswordPolicy(req.Password); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, ok, _ := s.b.Store().User(req.Email); ok {
		writeError(w, http.StatusConflict, "user already exists: "+req.Email)
		return
	}
	hash, err := session.HashPassword(req.Password, nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot hash the password")
		return
	}
	cmd := &fsm.UserAdd{Email: req.Email, DisplayName: req.DisplayName, Role: req.Role, Org: req.Org, Orgs: req.Orgs, PasswordHash: hash, At: s.b.Now().UnixNano()}
	if !s.applyAudited(w, r, cmd, logs.AuditUserAdd, req.Org, req.Email, "role "+req.Role) {
		return
	}
	u, _, _ := s.b.Store().User(req.Email)
	writeJSON(w, http.StatusCreated, viewUser(u))
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	u, ok, err := s.b.Store().User(strings.ToLower(r.PathValue("email")))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no such user")
		return
	}
	writeJSON(w, http.StatusOK, viewUser(u))
}

func (s *Server) setUser(w http.ResponseWriter, r *http.Request) {
	var req UserPatch
	if !decodeBody(w, r, &req) {
		return
	}
	email := strings.ToLower(r.PathValue("email"))
	prev, ok, _ := s.b.Store().User(email)
	if !ok {
		writeError(w, http.StatusNotFound, "no such user")
		return
	}
	cmd := &fsm.UserSet{Email: email, DisplayName: req.DisplayName, Role: req.Role, Orgs: req.Orgs, Disabled: req.Disabled, ClearTOTP: req.ResetTOTP, At: s.b.Now().UnixNano()}
	if cmd.Role != nil && *cmd.Role == "admin" {
		admin := fsm.RoleOrgAdmin
		cmd.Role = &admin
	}
	if req.Password != nil {
		if err := session.CheckPasswordPolicy(*req.Password); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		hash, err := session.HashPassword(*req.Password, nil)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "cannot hash the password")
			return
		}
		cmd.PasswordHash = &hash
	}
	var changes []string
	var apply any = cmd
	if req.Groups != nil || req.RequireTOTP != nil {
		if req.Password != nil || req.Orgs != nil {
			writeError(w, http.StatusBadRequest, "set groups or require_totp in a request of their own, without password or orgs")
			return
		}
		apply = &fsm.UserEdit{Email: email, DisplayName: req.DisplayName, Role: cmd.Role, Groups: req.Groups, Disabled: req.Disabled,
			RequireTOTP: req.RequireTOTP, ClearTOTP: req.ResetTOTP, At: cmd.At}
		if req.Groups != nil {
			changes = append(changes, "groups "+strings.Join(*req.Groups, ";"))
		}
		if req.RequireTOTP != nil {
			changes = append(changes, "require two-step "+strconv.FormatBool(*req.RequireTOTP))
		}
	}
	if req.Password != nil {
		changes = append(changes, "password set")
	}
	if req.Disabled != nil {
		changes = append(changes, "disabled "+strconv.FormatBool(*req.Disabled))
	}
	if cmd.Role != nil {
		changes = append(changes, "role "+*cmd.Role)
	}
	if req.ResetTOTP {
		changes = append(changes, "two-step sign-in reset")
	}
	if !s.applyAudited(w, r, apply, logs.AuditUserEdit, prev.Org, email, strings.Join(changes, ", ")) {
		return
	}
	u, _, _ := s.b.Store().User(email)
	writeJSON(w, http.StatusOK, viewUser(u))
}

// ImportReport is the answer to POST /api/v1/users/import.
type ImportReport struct {
	Imported int                      `json:"imported"`
	Welcomed int                      `json:"welcomed"`
	Problems []accounts.ImportProblem `json:"problems,omitempty"`
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
	users, problems := accounts.ParseUserCSV(http.MaxBytesReader(w, r.Body, 2<<20), org, s.b.Store())
	if len(problems) > 0 {
		writeJSON(w, http.StatusBadRequest, ImportReport{Problems: problems})
		return
	}
	var emails []string
	for _, u := range users {
		emails = append(emails, u.Email)
	}
	if !s.applyAudited(w, r, &fsm.UserImport{Users: users, At: s.b.Now().UnixNano()}, logs.AuditUserImport, org, "", strconv.Itoa(len(users))+" users: "+strings.Join(emails, " ")) {
		return
	}
	rep := ImportReport{Imported: len(users)}
	if r.URL.Query().Get("welcome") == "true" {
		n, err := s.sendLinks(r, o, emails, fsm.TokenWelcome)
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
		n, err := s.sendLinks(r, o, emails, kind)
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
	if s.applyAudited(w, r, &fsm.UserDelete{Email: email, At: s.b.Now().UnixNano()}, logs.AuditUserDelete, u.Org, email, "") {
		w.WriteHeader(http.StatusNoContent)
	}
}

// sendLinks issues password links for users of o, as the operator.
func (s *Server) sendLinks(r *http.Request, o fsm.Org, emails []string, kind string) (int, error) {
	return s.links.Send(r.Context(), accounts.Request{Actor: session.Operator, Addr: session.ClientAddr(r), Site: session.SiteOf(r)}, o, emails, kind)
}
