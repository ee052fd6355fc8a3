package inbox

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"lifeline/fsm"
	"lifeline/node"
	"lifeline/node/msglog"
	"lifeline/webui/auth"
)

// The admin console (Company settings): domains, users and groups,
// alerts, the message log, the queue and the audit log of one
// organisation, for its org admins, the partners linked to it, and the
// operator (signed in on the status page with the operator token). The
// organisation comes from the URL but is checked against the session:
// anything of an organisation the viewer does not manage is 404.

// AdminBackend is what the console needs from its node beyond the inbox.
type AdminBackend interface {
	// TestDestination connects to a destination from this node and
	// reports its greeting and EHLO reply, or the error.
	TestDestination(ctx context.Context, addr string) node.DestinationTest
	SearchLog(ctx context.Context, q msglog.Query) (entries []msglog.Entry, missing []string, err error)
	QueueStats() (fsm.QueueStats, error)
	LogEvent(e msglog.Entry)
}

// RoleOperator is the viewer role of the operator in the console.
const RoleOperator = "operator"

func (s *Server) admin() AdminBackend {
	ab, _ := s.b.(AdminBackend)
	return ab
}

func operatorViewer(token string) *viewer {
	return &viewer{User: fsm.User{Email: RoleOperator, Role: RoleOperator}, SessionID: token, CSRF: auth.CSRFToken(token), Operator: true}
}

func isConsoleRole(v *viewer) bool {
	return v.Operator || v.User.Role == fsm.RoleOrgAdmin || v.User.Role == fsm.RolePartner
}

// canManage reports whether v administers org.
func canManage(v *viewer, org string) bool {
	return v.Operator || v.User.Manages(org)
}

// console wraps a console handler: an org admin's or partner's session,
// or else the operator's cookie. Everyone else gets 404, as for a page
// that does not exist; posts need the same origin and the form token.
func (s *Server) console(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := s.session(r)
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		if (v == nil || !isConsoleRole(v)) && s.cfg.Operator != nil {
			if tok, ok := s.cfg.Operator(r); ok {
				v = operatorViewer(tok)
			}
		}
		if v == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.errorPage(w, r, http.StatusForbidden, "Your session has ended. Sign in again.")
			return
		}
		if !isConsoleRole(v) {
			s.render(w, r, http.StatusNotFound, errorPage(v, http.StatusNotFound, "There is nothing here."))
			return
		}
		if r.Method == http.MethodPost && !s.checkPost(w, r, v) {
			return
		}
		if !v.Operator && (v.Org.RequireTOTP || v.User.RequireTOTP) && !v.User.TOTPEnrolled() {
			http.Redirect(w, r, "/account/totp", http.StatusSeeOther)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, v)))
	}
}

// operatorOnly wraps a console handler that only the operator may use.
func (s *Server) operatorOnly(next http.HandlerFunc) http.HandlerFunc {
	return s.console(func(w http.ResponseWriter, r *http.Request) {
		if !viewerOf(r).Operator {
			s.notFound(w, r)
			return
		}
		next(w, r)
	})
}

// registerConsole adds the console's routes.
func (s *Server) registerConsole(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/orgs/{org}/domains", s.console(s.domainsPage))
	mux.HandleFunc("POST /admin/orgs/{org}/domains", s.console(s.domainAdd))
	mux.HandleFunc("POST /admin/orgs/{org}/domains/{name}", s.console(s.domainSet))
	mux.HandleFunc("POST /admin/orgs/{org}/domains/{name}/test", s.console(s.domainTest))
	mux.HandleFunc("POST /admin/orgs/{org}/domains/{name}/remove", s.console(s.domainRemove))
	mux.HandleFunc("POST /admin/domains/{name}/approve", s.operatorOnly(s.domainApprove))
	mux.HandleFunc("POST /admin/domains/{name}/refuse", s.operatorOnly(s.domainRefuse))

	mux.HandleFunc("GET /admin/orgs/{org}/users", s.console(s.usersPage))
	mux.HandleFunc("POST /admin/orgs/{org}/users", s.console(s.userAdd))
	mux.HandleFunc("POST /admin/orgs/{org}/users/import", s.console(s.usersImport))
	mux.HandleFunc("POST /admin/orgs/{org}/users/welcome", s.console(s.usersWelcome))
	mux.HandleFunc("POST /admin/orgs/{org}/access", s.console(s.inboxAccess))
	mux.HandleFunc("GET /admin/orgs/{org}/users/{email}", s.console(s.userPage))
	mux.HandleFunc("POST /admin/orgs/{org}/users/{email}", s.console(s.userEdit))
	mux.HandleFunc("POST /admin/orgs/{org}/users/{email}/delete", s.console(s.userDelete))
	mux.HandleFunc("POST /admin/orgs/{org}/users/{email}/reset", s.console(s.userReset))
	mux.HandleFunc("GET /welcome/{token}", s.welcomePage)
	mux.HandleFunc("POST /welcome/{token}", s.welcomeSet)

	mux.HandleFunc("GET /admin/orgs/{org}/alerts", s.console(s.alertsPage))
	mux.HandleFunc("POST /admin/orgs/{org}/alerts", s.console(s.alertsSet))

	mux.HandleFunc("GET /admin/orgs/{org}/log", s.console(s.logPage))
	mux.HandleFunc("GET /admin/orgs/{org}/log.csv", s.console(s.logCSV))
	mux.HandleFunc("GET /admin/log", s.operatorOnly(s.logPage))
	mux.HandleFunc("GET /admin/log.csv", s.operatorOnly(s.logCSV))

	mux.HandleFunc("GET /admin/orgs/{org}/queue", s.console(s.queuePage))
	mux.HandleFunc("GET /admin/orgs/{org}/queue/{id}", s.console(s.queueMessage))
	mux.HandleFunc("POST /admin/orgs/{org}/queue/{id}/{op}", s.console(s.queueAction))

	mux.HandleFunc("GET /admin/orgs/{org}/audit", s.console(s.auditPage))
	mux.HandleFunc("GET /admin/orgs/{org}/audit.csv", s.console(s.auditCSV))
	mux.HandleFunc("GET /admin/audit", s.operatorOnly(s.auditPage))
	mux.HandleFunc("GET /admin/audit.csv", s.operatorOnly(s.auditCSV))
}

// Audit kinds of console changes.
const (
	AuditDomainRequest = "domain_request"
	AuditDomainAdd     = "domain_add"
	AuditDomainSet     = "domain_set"
	AuditDomainRemove  = "domain_remove"
	AuditDomainApprove = "domain_approve"
	AuditDomainRefuse  = "domain_refuse"
	AuditUserAdd       = "user_add"
	AuditUserImport    = "user_import"
	AuditUserEdit      = "user_edit"
	AuditUserDelete    = "user_delete"
	AuditPasswordLink  = "password_link_sent"
	AuditInboxAccess   = "inbox_access_set"
	AuditAlertsSet     = "alerts_set"
	AuditOrgSet        = "org_set"
	AuditQueuePrefix   = "queue_"
)

// applyAudited commits cmd together with its audit entry.
func (s *Server) applyAudited(w http.ResponseWriter, r *http.Request, cmd any, kind, org, target, detail string) bool {
	v := viewerOf(r)
	if len(detail) > 1000 {
		detail = detail[:1000]
	}
	if len(target) > 254 {
		target = target[:250] + "..."
	}
	a, err := fsm.NewAudited(cmd, fsm.AuditEntry{At: s.b.Now().UnixNano(), Kind: kind, Actor: v.User.Email, Target: target, Org: org,
		Addr: clientAddr(r), Detail: detail})
	if errors.Is(err, fsm.ErrCommandTooLarge) {
		s.errorPage(w, r, http.StatusBadRequest, "This is too large for one change: split it into smaller ones (for example an import file into several).")
		return false
	}
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, err.Error())
		return false
	}
	return s.apply(w, r, a)
}

// orgOf resolves {org} for a console page; it answers 404 itself.
func (s *Server) orgOf(w http.ResponseWriter, r *http.Request) (*viewer, fsm.Org, bool) {
	return s.managed(w, r)
}

// orgDomainNames lists the protected domains of org.
func (s *Server) orgDomainNames(org string) ([]string, error) {
	ds, err := s.b.Store().OrgDomains(org)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range ds {
		out = append(out, d.Name)
	}
	sort.Strings(out)
	return out, nil
}

// Tab names the console page shown, for the navigation.
type Tab string

// ConsoleTabs are the console's pages in navigation order.
var consoleTabs = []struct {
	Tab   Tab
	Label string
	Path  string
}{
	{"overview", "Overview", ""},
	{"domains", "Domains", "/domains"},
	{"users", "Users", "/users"},
	{"alerts", "Alerts", "/alerts"},
	{"log", "Message log", "/log"},
	{"queue", "Queue", "/queue"},
	{"audit", "Audit log", "/audit"},
}

func (s *Server) baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == '\n' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func first(form map[string][]string, key string) string {
	if v := form[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func attemptsOf(rs []fsm.RecipientState) int {
	n := 0
	for _, r := range rs {
		n = max(n, r.Attempts)
	}
	return n
}

func lastReplyOf(rs []fsm.RecipientState) string {
	for _, r := range rs {
		if r.LastReply != "" {
			return r.LastReply
		}
	}
	return ""
}

func qesc(s string) string { return url.QueryEscape(s) }
