// Package session is who is signed in, for every people's page and the
// JSON API: sessions and their cookie, CSRF tokens, the sign-in and
// sign-out pages, two-step sign-in (TOTP), the limits on failed sign-ins,
// the page behind a password link, and the operator's sign-in with the
// operator token.
//
// A session lives in the replicated state (only the hash of its ID), so
// every node knows it; the cookie is HttpOnly, SameSite=Strict, and
// Secure over TLS.
package session

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/webui/page"
)

// Backend is what sessions need from their node.
type Backend interface {
	Store() *fsm.Store
	// Apply commits a command through Raft from any node.
	Apply(ctx context.Context, cmd any) error
	// ApplyVisible commits a command and waits (briefly) until this
	// node's state shows it, so a redirect reads its own write.
	ApplyVisible(ctx context.Context, cmd any) error
	Now() time.Time
}

// Config tunes sign-in and sessions.
type Config struct {
	// SessionIdle is how long a session lives without use.
	SessionIdle time.Duration
	// AccountFailures failed logins per account per fsm.LoginFailureWindow
	// are allowed before HTTP 429.
	AccountFailures int
	// AddrFailures failed logins per client address per AddrWindow.
	AddrFailures int
	AddrWindow   time.Duration
	// MaxUpload bounds one signed-in form post (a message with its
	// attachments, a CSV import).
	MaxUpload int64
	// Rand, if set, replaces crypto/rand (tests).
	Rand io.Reader
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
	if c.MaxUpload == 0 {
		c.MaxUpload = 25 << 20
	}
}

// Manager keeps the sessions of one node: it signs people in and out and
// tells the surfaces who is signed in.
type Manager struct {
	b       Backend
	cfg     Config
	logger  *slog.Logger
	limiter *Limiter
	pages   *page.Renderer
}

// New returns the sessions over b.
func New(b Backend, cfg Config, logger *slog.Logger) *Manager {
	cfg.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{b: b, cfg: cfg, logger: logger, limiter: NewLimiter(cfg.AddrFailures, cfg.AddrWindow), pages: page.NewRenderer(logger)}
}

// Register adds the sign-in routes to mux.
func (m *Manager) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /login", m.loginPage)
	mux.HandleFunc("POST /login", m.login)
	mux.HandleFunc("POST /logout", m.SignedIn(m.logout))
	mux.HandleFunc("GET /account/totp", m.SignedIn(m.totpPage))
	mux.HandleFunc("POST /account/totp", m.SignedIn(m.totpEnrol))
	mux.HandleFunc("GET /welcome/{token}", m.welcomePage)
	mux.HandleFunc("POST /welcome/{token}", m.welcomeSet)
	mux.HandleFunc("POST /status/signin", m.operatorSignIn)
	mux.HandleFunc("POST /status/signout", m.operatorSignOut)
}

func (m *Manager) rand() io.Reader {
	if m.cfg.Rand != nil {
		return m.cfg.Rand
	}
	return rand.Reader
}

// sessionCookie is HttpOnly, SameSite=Strict, and Secure over TLS.
const sessionCookie = "lifeline_session"

// Viewer is the signed-in person of one request.
type Viewer struct {
	User      fsm.User
	Org       fsm.Org
	SessionID string
	CSRF      string
	// Operator is set for the operator in the admin console; SessionID
	// is then the operator token of the status page's cookie.
	Operator bool
}

// Nav is what the top bar of a page shows the viewer; nil for nobody.
func (v *Viewer) Nav() *page.Nav {
	if v == nil {
		return nil
	}
	return &page.Nav{Operator: v.Operator, Email: v.User.Email, CSRF: v.CSRF, Mail: v.User.Role != fsm.RolePartner,
		Admin: v.User.Role == fsm.RoleOrgAdmin || v.User.Role == fsm.RolePartner}
}

type ctxKey struct{}

// ViewerOf is the viewer that With put on r, or nil.
func ViewerOf(r *http.Request) *Viewer { v, _ := r.Context().Value(ctxKey{}).(*Viewer); return v }

// With returns r carrying v, for the handler and the pages it renders.
func With(r *http.Request, v *Viewer) *http.Request {
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, v))
	return page.WithNav(r, v.Nav())
}

// Lookup returns the viewer of r, or nil when r carries no valid session.
func (m *Manager) Lookup(r *http.Request) (*Viewer, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, nil
	}
	hash := HashSessionID(c.Value)
	sess, ok, err := m.b.Store().Session(hash)
	if err != nil || !ok {
		return nil, err
	}
	now := m.b.Now()
	if now.UnixNano() >= sess.Expires {
		return nil, nil
	}
	u, ok, err := m.b.Store().User(sess.Email)
	if err != nil || !ok || u.Disabled {
		return nil, err
	}
	v := &Viewer{User: u, SessionID: c.Value, CSRF: CSRFToken(c.Value)}
	if u.Org != "" {
		v.Org, _, _ = m.b.Store().Org(u.Org)
	}
	// Slide the expiry, at most every few minutes, so a busy user costs
	// a handful of commits an hour rather than one per click.
	if now.UnixNano()-sess.LastSeen > int64(5*time.Minute) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := m.b.Apply(ctx, &fsm.SessionTouch{Hash: hash, At: now.UnixNano(), Expires: now.Add(m.cfg.SessionIdle).UnixNano()}); err != nil {
			m.logger.Warn("session touch failed", "err", err)
		}
	}
	return v, nil
}

// SignedIn wraps a handler that needs a session: without one a GET goes
// to the sign-in page and a POST is refused. POSTs also need a
// same-origin request and the session's CSRF token. A person whose
// organisation requires a second factor may do nothing but enrol until
// they have one.
func (m *Manager) SignedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := m.Lookup(r)
		if err != nil {
			m.pages.Unavailable(w, r, err)
			return
		}
		if v == nil {
			m.SignInFirst(w, r)
			return
		}
		if r.Method == http.MethodPost && !m.CheckPost(w, r, v) {
			return
		}
		if (v.Org.RequireTOTP || v.User.RequireTOTP) && !v.User.TOTPEnrolled() && !strings.HasPrefix(r.URL.Path, "/account/totp") && r.URL.Path != "/logout" {
			http.Redirect(w, r, "/account/totp", http.StatusSeeOther)
			return
		}
		next(w, With(r, v))
	}
}

// SignInFirst answers a request that needs a session and has none: a GET
// goes to the sign-in page, and comes back after it.
func (m *Manager) SignInFirst(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	m.pages.Error(w, r, http.StatusForbidden, "Your session has ended. Sign in again.")
}

// CheckPost refuses cross-site posts: the Origin (or Referer) must be this
// site, and the form must carry v's token. It answers 403 itself.
func (m *Manager) CheckPost(w http.ResponseWriter, r *http.Request, v *Viewer) bool {
	if !SameOrigin(r) {
		m.pages.Error(w, r, http.StatusForbidden, "Cross-site form post refused.")
		return false
	}
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
			r.Body = http.MaxBytesReader(w, r.Body, m.cfg.MaxUpload)
			if err := r.ParseMultipartForm(1 << 20); err != nil {
				m.pages.Error(w, r, http.StatusBadRequest, "The form could not be read: "+err.Error())
				return false
			}
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		}
		tok = r.PostFormValue("csrf")
	}
	if !CheckCSRF(v.SessionID, tok) {
		m.pages.Error(w, r, http.StatusForbidden, "This form has expired or came from another site. Reload the page and try again.")
		return false
	}
	return true
}

// SameOrigin accepts a request whose Origin, or failing that Referer,
// names this host. Browsers send Origin on every cross-site POST; the
// cookies are SameSite=Strict as well, and this covers browsers that
// ignore that.
func SameOrigin(r *http.Request) bool {
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

// ClientAddr is the peer's IP, the key of the per-address limit and the
// address in the audit log. Proxies are not trusted: the appliance faces
// clients directly.
func ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// SiteOf is the site r was sent to, scheme and host: where links in the
// mail the cluster writes lead.
func SiteOf(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// HomeOf is where v lands after signing in: a partner, who reads no one's
// mail, in the console; everyone else in their inbox.
func HomeOf(v *Viewer) string {
	if v.User.Role == fsm.RolePartner {
		return "/admin"
	}
	return page.MailboxURL(v.User.Email)
}
