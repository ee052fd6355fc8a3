// Package console serves the organisation console (Company settings):
// domains, users and groups, alerts, the message log, the queue and the
// audit log of one organisation, for its org admins, the partners linked
// to it, and the operator (signed in on the status page with the operator
// token), who also sees every organisation and approves domains.
//
// The organisation comes from the URL but is checked against the session:
// anything of an organisation the viewer does not manage is 404.
package console

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/a-h/templ"

	"lifeline/fsm"
	"lifeline/node"
	"lifeline/node/msglog"
	"lifeline/webui/accounts"
	"lifeline/webui/logs"
	"lifeline/webui/page"
	"lifeline/webui/session"
)

// Backend is what the console needs from its node.
type Backend interface {
	// Store, ApplyVisible, Now, SendMail and MailHostname: password links
	// are sent from the console.
	accounts.Backend
	// TestDestination connects to a destination from this node and
	// reports its greeting and EHLO reply, or the error.
	TestDestination(ctx context.Context, addr string) node.DestinationTest
	// SearchLog searches every node's message log; missing names the
	// nodes that did not answer.
	SearchLog(ctx context.Context, q msglog.Query) (entries []msglog.Entry, missing []string, err error)
	QueueStats() (fsm.QueueStats, error)
	// LogEvent records an event of this node in its message log.
	LogEvent(e msglog.Entry)
}

// Config tunes the console.
type Config struct {
	// Rand, if set, replaces crypto/rand (tests).
	Rand io.Reader
}

// Server is the console of one node.
type Server struct {
	b        Backend
	logger   *slog.Logger
	sessions *session.Manager
	pages    *page.Renderer
	links    accounts.Links
}

// New returns the console over b; sessions say who is signed in.
func New(b Backend, sessions *session.Manager, cfg Config, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{b: b, logger: logger, sessions: sessions, pages: page.NewRenderer(logger), links: accounts.Links{B: b, Rand: cfg.Rand}}
}

// Register adds the console's routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin", s.console(s.adminPage))
	mux.HandleFunc("GET /admin/orgs/{org}", s.console(s.adminOrg))
	mux.HandleFunc("POST /admin/orgs/{org}/totp", s.console(s.adminOrgTOTP))

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

func viewerOf(r *http.Request) *session.Viewer { return session.ViewerOf(r) }

func isConsoleRole(v *session.Viewer) bool {
	return v.Operator || v.User.Role == fsm.RoleOrgAdmin || v.User.Role == fsm.RolePartner
}

// canManage reports whether v administers org.
func canManage(v *session.Viewer, org string) bool {
	return v.Operator || v.User.Manages(org)
}

// console wraps a console handler: an org admin's or partner's session,
// or else the operator's cookie. Everyone else gets 404, as for a page
// that does not exist; posts need the same origin and the form token.
func (s *Server) console(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := s.sessions.Lookup(r)
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		if v == nil || !isConsoleRole(v) {
			if tok, ok := s.sessions.OperatorSignedIn(r); ok {
				v = session.OperatorViewer(tok)
			}
		}
		if v == nil {
			s.sessions.SignInFirst(w, r)
			return
		}
		if !isConsoleRole(v) {
			s.render(w, r, http.StatusNotFound, page.ErrorPage(v.Nav(), http.StatusNotFound, "There is nothing here."))
			return
		}
		if r.Method == http.MethodPost && !s.sessions.CheckPost(w, r, v) {
			return
		}
		if !v.Operator && (v.Org.RequireTOTP || v.User.RequireTOTP) && !v.User.TOTPEnrolled() {
			http.Redirect(w, r, "/account/totp", http.StatusSeeOther)
			return
		}
		next(w, session.With(r, v))
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

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, c templ.Component) {
	s.pages.Render(w, r, code, c)
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.pages.Error(w, r, code, msg)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) { s.pages.NotFound(w, r) }

func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	s.pages.Unavailable(w, r, err)
}

// apply commits cmd and answers failures itself.
func (s *Server) apply(w http.ResponseWriter, r *http.Request, cmd any) bool {
	return s.pages.Apply(w, r, s.b.ApplyVisible, cmd)
}

// applyAudited commits cmd together with its audit entry.
func (s *Server) applyAudited(w http.ResponseWriter, r *http.Request, cmd any, kind, org, target, detail string) bool {
	a, err := logs.Audited(cmd, fsm.AuditEntry{At: s.b.Now().UnixNano(), Kind: kind, Actor: viewerOf(r).User.Email, Target: target, Org: org,
		Addr: session.ClientAddr(r), Detail: detail})
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

// sendLinks issues password links for users of o, as the viewer.
func (s *Server) sendLinks(r *http.Request, o fsm.Org, emails []string, kind string) (int, error) {
	return s.links.Send(r.Context(), accounts.Request{Actor: viewerOf(r).User.Email, Addr: session.ClientAddr(r), Site: session.SiteOf(r)}, o, emails, kind)
}

// orgOf resolves {org} for a console page; it answers 404 itself.
func (s *Server) orgOf(w http.ResponseWriter, r *http.Request) (*session.Viewer, fsm.Org, bool) {
	return s.managed(w, r)
}

func orgURL(org string) string { return "/admin/orgs/" + url.PathEscape(org) }

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
