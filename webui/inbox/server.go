// Package inbox serves the Emergency Inbox: the list of mail spooled for
// the user, the reading view with hostile HTML kept in a sandboxed frame,
// attachments, and replies, new mail and drafts that go out through the
// spool. Sign-in is webui/session's; an org admin's pages are the
// console's (webui/console).
//
// Pages are server-rendered with templ and work without JavaScript; a
// small script saves drafts while the user types. Every page takes the
// tenant from the session, never from the request: an ID that belongs to
// someone else answers 404, the same as an ID that does not exist.
package inbox

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/a-h/templ"

	"lifeline/fsm"
	"lifeline/webui/page"
	"lifeline/webui/session"
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
	// PageSize is how many messages one inbox page lists.
	PageSize int
	// Rand, if set, replaces crypto/rand (tests).
	Rand io.Reader
}

func (c *Config) setDefaults() {
	if c.PageSize == 0 {
		c.PageSize = 50
	}
}

// Server is the Emergency Inbox of one node.
type Server struct {
	b        Backend
	cfg      Config
	logger   *slog.Logger
	sessions *session.Manager
	pages    *page.Renderer
	html     *sanitizers
}

// New returns the Emergency Inbox over b; sessions say who is signed in.
func New(b Backend, sessions *session.Manager, cfg Config, logger *slog.Logger) *Server {
	cfg.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{b: b, cfg: cfg, logger: logger, sessions: sessions, pages: page.NewRenderer(logger), html: newSanitizers()}
}

// Register adds the Emergency Inbox's routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /static/inbox.js", s.script)

	mux.HandleFunc("GET /mail", s.signedIn(s.home))
	mux.HandleFunc("GET /mail/{owner}/{$}", s.mailbox(s.list))
	mux.HandleFunc("GET /mail/{owner}/m/{id}", s.mailbox(s.read))
	mux.HandleFunc("GET /mail/{owner}/m/{id}/frame", s.mailbox(s.frame))
	mux.HandleFunc("GET /mail/{owner}/m/{id}/raw", s.mailbox(s.raw))
	mux.HandleFunc("GET /mail/{owner}/m/{id}/cid/{cid}", s.mailbox(s.cidPart))
	mux.HandleFunc("GET /mail/{owner}/m/{id}/part/{n}", s.mailbox(s.download))
	mux.HandleFunc("POST /mail/{owner}/m/{id}/unread", s.mailbox(s.markUnread))

	mux.HandleFunc("POST /compose", s.signedIn(s.compose))
	mux.HandleFunc("GET /drafts/{id}", s.signedIn(s.draftPage))
	mux.HandleFunc("POST /drafts/{id}", s.signedIn(s.draftPost))
	mux.HandleFunc("POST /drafts/{id}/autosave", s.signedIn(s.autosave))
}

func (s *Server) rand() io.Reader {
	if s.cfg.Rand != nil {
		return s.cfg.Rand
	}
	return rand.Reader
}

func viewerOf(r *http.Request) *session.Viewer { return session.ViewerOf(r) }

// signedIn wraps a handler that needs a session (session.SignedIn). A
// user may write mail only if the organisation opened the Emergency
// Inbox to them.
func (s *Server) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return s.sessions.SignedIn(func(w http.ResponseWriter, r *http.Request) {
		v := viewerOf(r)
		if v.User.Role == fsm.RoleUser && (strings.HasPrefix(r.URL.Path, "/compose") || strings.HasPrefix(r.URL.Path, "/drafts")) {
			if set, err := s.b.Store().OrgSettingsOf(v.User.Org); err == nil && !set.InboxAllowed(&v.User) {
				s.errorPage(w, r, http.StatusForbidden, "Your organisation has not opened the Emergency Inbox to you. Ask your administrator.")
				return
			}
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
