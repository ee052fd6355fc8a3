// Package inbox serves the Emergency Inbox: sign-in with an optional TOTP
// second factor, the list of mail spooled for the user, the reading view
// with hostile HTML kept in a sandboxed frame, replies and new mail that go
// out through the spool, and the organisation admin pages.
//
// Pages are server-rendered with templ and work without JavaScript; a
// small script saves drafts while the user types. Every page takes the
// tenant from the session, never from the request: an ID that belongs to
// someone else answers 404, the same as an ID that does not exist.
package inbox

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/a-h/templ"

	"lifeline/cluster"
	"lifeline/fsm"
	"lifeline/webui/auth"
)

// Backend is what the Emergency Inbox needs from its node.
type Backend interface {
	Store() *fsm.Store
	// Apply commits a command through Raft from any node.
	Apply(ctx context.Context, cmd any) error
	// ApplyVisible commits a command and waits (briefly) until this
	// node's state shows it, so a redirect reads its own write.
	ApplyVisible(ctx context.Context, cmd any) error
	Now() time.Time
	// OpenBody reads a stored body, fetching it from a peer if needed.
	OpenBody(ctx context.Context, hash string) (io.ReadCloser, error)
	// PutBlob stores r as a blob held by a quorum and returns its hash.
	PutBlob(ctx context.Context, r io.Reader) (hash string, size int64, err error)
	// SendMail queues a message composed here through the spool, like
	// received mail, and returns its queue ID.
	SendMail(ctx context.Context, from string, rcpts []string, body []byte) (string, error)
	// MailHostname names this cluster in Message-IDs.
	MailHostname() string
}

// Config tunes the Emergency Inbox.
type Config struct {
	// SessionIdle is how long a session lives without use.
	SessionIdle time.Duration
	// AccountFailures failed logins per account per fsm.LoginFailureWindow
	// are allowed before HTTP 429.
	AccountFailures int
	// AddrFailures failed logins per client address per AddrWindow.
	AddrFailures int
	AddrWindow   time.Duration
	// PageSize is how many messages one inbox page lists.
	PageSize int
	// MaxUpload bounds one compose request (attachments included).
	MaxUpload int64
	// Rand, if set, replaces crypto/rand (tests).
	Rand io.Reader
	// Operator, if set, reports whether the request carries the
	// operator's sign-in (the status page's cookie) and returns its
	// token; the operator may use every organisation's console.
	Operator func(r *http.Request) (token string, ok bool)
}

func (c *Config) setDefaults() {
	if c.SessionIdle == 0 {
		c.SessionIdle = 12 * time.Hour
	}
	if c.AccountFailures == 0 {
		c.AccountFailures = 5
	}
	if c.AddrFailures == 0 {
		c.AddrFailures = 20
	}
	if c.AddrWindow == 0 {
		c.AddrWindow = 15 * time.Minute
	}
	if c.PageSize == 0 {
		c.PageSize = 50
	}
	if c.MaxUpload == 0 {
		c.MaxUpload = 25 << 20
	}
}

// Server is the Emergency Inbox of one node.
type Server struct {
	b       Backend
	cfg     Config
	logger  *slog.Logger
	limiter *auth.Limiter
	html    *sanitizers
}

// New returns the Emergency Inbox over b.
func New(b Backend, cfg Config, logger *slog.Logger) *Server {
	cfg.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{b: b, cfg: cfg, logger: logger, limiter: auth.NewLimiter(cfg.AddrFailures, cfg.AddrWindow), html: newSanitizers()}
}

// Register adds the Emergency Inbox's routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.signedIn(s.logout))
	mux.HandleFunc("GET /account/totp", s.signedIn(s.totpPage))
	mux.HandleFunc("POST /account/totp", s.signedIn(s.totpEnrol))
	mux.HandleFunc("GET /static/inbox.js", s.script)

	mux.HandleFunc("GET /mail", s.signedIn(s.home))
	mux.HandleFunc("GET /mail/{owner}/{$}", s.mailbox(s.list))
	mux.HandleFunc("GET /mail/{owner}/m/{id}", s.mailbox(s.read))
	mux.HandleFunc("GET /mail/{owner}/m/{id}/frame", s.mailbox(s.frame))
	mux.HandleFunc("GET /mail/{owner}/m/{id}/cid/{cid}", s.mailbox(s.cidPart))
	mux.HandleFunc("GET /mail/{owner}/m/{id}/part/{n}", s.mailbox(s.download))
	mux.HandleFunc("POST /mail/{owner}/m/{id}/unread", s.mailbox(s.markUnread))

	mux.HandleFunc("POST /compose", s.signedIn(s.compose))
	mux.HandleFunc("GET /drafts/{id}", s.signedIn(s.draftPage))
	mux.HandleFunc("POST /drafts/{id}", s.signedIn(s.draftPost))
	mux.HandleFunc("POST /drafts/{id}/autosave", s.signedIn(s.autosave))

	mux.HandleFunc("GET /admin", s.console(s.adminPage))
	mux.HandleFunc("GET /admin/orgs/{org}", s.console(s.adminOrg))
	mux.HandleFunc("POST /admin/orgs/{org}/totp", s.console(s.adminOrgTOTP))
	s.registerConsole(mux)
}

// sessionCookie is HttpOnly, SameSite=Strict, and Secure over TLS.
const sessionCookie = "lifeline_session"

// viewer is the signed-in person of one request.
type viewer struct {
	User      fsm.User
	Org       fsm.Org
	SessionID string
	CSRF      string
	// Operator is set for the operator in the admin console; SessionID
	// is then the operator token of the status page's cookie.
	Operator bool
}

type ctxKey struct{}

func viewerOf(r *http.Request) *viewer { v, _ := r.Context().Value(ctxKey{}).(*viewer); return v }

// session returns the viewer of r, or nil when r carries no valid session.
func (s *Server) session(r *http.Request) (*viewer, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, nil
	}
	hash := auth.HashSessionID(c.Value)
	sess, ok, err := s.b.Store().Session(hash)
	if err != nil || !ok {
		return nil, err
	}
	now := s.b.Now()
	if now.UnixNano() >= sess.Expires {
		return nil, nil
	}
	u, ok, err := s.b.Store().User(sess.Email)
	if err != nil || !ok || u.Disabled {
		return nil, err
	}
	v := &viewer{User: u, SessionID: c.Value, CSRF: auth.CSRFToken(c.Value)}
	if u.Org != "" {
		v.Org, _, _ = s.b.Store().Org(u.Org)
	}
	// Slide the expiry, at most every few minutes, so a busy user costs
	// a handful of commits an hour rather than one per click.
	if now.UnixNano()-sess.LastSeen > int64(5*time.Minute) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.b.Apply(ctx, &fsm.SessionTouch{Hash: hash, At: now.UnixNano(), Expires: now.Add(s.cfg.SessionIdle).UnixNano()}); err != nil {
			s.logger.Warn("session touch failed", "err", err)
		}
	}
	return v, nil
}

// signedIn wraps a handler that needs a session. POSTs also need a
// same-origin request and the session's CSRF token.
func (s *Server) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := s.session(r)
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		if v == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.errorPage(w, r, http.StatusForbidden, "Your session has ended. Sign in again.")
			return
		}
		if r.Method == http.MethodPost && !s.checkPost(w, r, v) {
			return
		}
		// An organisation that requires a second factor lets its users
		// do nothing but enrol until they have one.
		if (v.Org.RequireTOTP || v.User.RequireTOTP) && !v.User.TOTPEnrolled() && !strings.HasPrefix(r.URL.Path, "/account/totp") && r.URL.Path != "/logout" {
			http.Redirect(w, r, "/account/totp", http.StatusSeeOther)
			return
		}
		if v.User.Role == fsm.RoleUser && (strings.HasPrefix(r.URL.Path, "/compose") || strings.HasPrefix(r.URL.Path, "/drafts")) {
			if set, err := s.b.Store().OrgSettingsOf(v.User.Org); err == nil && !set.InboxAllowed(&v.User) {
				s.errorPage(w, r, http.StatusForbidden, "Your organisation has not opened the Emergency Inbox to you. Ask your administrator.")
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, v)))
	}
}

// checkPost refuses cross-site posts: the Origin (or Referer) must be this
// site, and the form must carry the session's token. It answers 403 itself.
func (s *Server) checkPost(w http.ResponseWriter, r *http.Request, v *viewer) bool {
	if !sameOrigin(r) {
		s.errorPage(w, r, http.StatusForbidden, "Cross-site form post refused.")
		return false
	}
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxUpload)
			if err := r.ParseMultipartForm(1 << 20); err != nil {
				s.errorPage(w, r, http.StatusBadRequest, "The form could not be read: "+err.Error())
				return false
			}
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		}
		tok = r.PostFormValue("csrf")
	}
	if !auth.CheckCSRF(v.SessionID, tok) {
		s.errorPage(w, r, http.StatusForbidden, "This form has expired or came from another site. Reload the page and try again.")
		return false
	}
	return true
}

// sameOrigin accepts a request whose Origin, or failing that Referer,
// names this host. Browsers send Origin on every cross-site POST.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" || o == "null" {
		return false
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host && (u.Scheme == "http" || u.Scheme == "https")
}

// clientAddr is the peer's IP, the key of the per-address limit. Proxies
// are not trusted: the appliance faces clients directly.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// pageHeaders: no framing, scripts only from us, nothing from elsewhere.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, c templ.Component) {
	pageHeaders(w)
	w.WriteHeader(code)
	if err := c.Render(r.Context(), w); err != nil {
		s.logger.Warn("render failed", "err", err)
	}
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.render(w, r, code, errorPage(viewerOf(r), code, msg))
}

// notFound is the one answer for what does not exist and for what belongs
// to someone else, so IDs reveal nothing across tenants.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.errorPage(w, r, http.StatusNotFound, "There is nothing here.")
}

func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	var ue *cluster.UpgradeRequiredError
	if errors.As(err, &ue) {
		// A feature of a newer release, used while some node still runs
		// the older one: not busy, and not worth retrying in a moment.
		s.errorPage(w, r, http.StatusConflict, "This is not available until every node of the cluster has been upgraded.")
		return
	}
	s.logger.Warn("emergency inbox unavailable", "err", err)
	w.Header().Set("Retry-After", "2")
	s.errorPage(w, r, http.StatusServiceUnavailable, "The service is busy. Try again in a moment.")
}

// apply commits cmd and answers failures itself.
func (s *Server) apply(w http.ResponseWriter, r *http.Request, cmd any) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	err := s.b.ApplyVisible(ctx, cmd)
	if err == nil {
		return true
	}
	var ve *fsm.ValidationError
	switch {
	case errors.As(err, &ve):
		s.errorPage(w, r, http.StatusBadRequest, ve.Msg)
	case errors.Is(err, fsm.ErrCommandTooLarge):
		s.errorPage(w, r, http.StatusBadRequest, "This is too large for one change: split it into smaller ones.")
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrTimeout), errors.Is(err, cluster.ErrUnknown):
		s.unavailable(w, r, err)
	default:
		s.unavailable(w, r, err)
	}
	return false
}

func (s *Server) script(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=300")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	io.WriteString(w, inboxJS)
}

// inboxJS saves a draft a moment after the user stops typing. Without it
// the Save button does the same.
const inboxJS = `(function () {
  var form = document.getElementById('compose');
  if (!form) return;
  var timer = null, status = document.getElementById('draft-status');
  function save() {
    var data = new URLSearchParams();
    ['to', 'cc', 'subject', 'text', 'csrf'].forEach(function (n) {
      var el = form.elements[n]; if (el) data.append(n, el.value);
    });
    fetch(form.getAttribute('data-autosave'), {method: 'POST', body: data, credentials: 'same-origin',
      headers: {'Content-Type': 'application/x-www-form-urlencoded'}})
      .then(function (r) { if (status) status.textContent = r.ok ? 'Draft saved' : 'Draft not saved'; })
      .catch(function () { if (status) status.textContent = 'Draft not saved'; });
  }
  form.addEventListener('input', function () {
    if (timer) clearTimeout(timer);
    timer = setTimeout(save, 800);
  });
})();
`
