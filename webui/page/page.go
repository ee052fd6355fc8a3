// Package page is the frame that the people's pages share (the Emergency
// Inbox, the organisation console, the sign-in pages): the top bar and
// the style sheet, the error page, the security headers, and the small
// formatting helpers the templates use. It knows nothing of sessions: the
// top bar shows what a Nav, put on the request by webui/session, allows.
package page

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"

	"lifeline/cluster"
	"lifeline/fsm"
)

// Nav is what the top bar shows of the signed-in person; nil when nobody
// is signed in.
type Nav struct {
	// Operator is set for the operator in the console.
	Operator bool
	Email    string
	// CSRF is the form token of the session, for the bar's buttons.
	CSRF string
	// Mail shows the links to the person's inbox and to a new message.
	Mail bool
	// Admin shows the link to the console.
	Admin bool
}

type navKey struct{}

// WithNav returns r carrying nav, for the pages rendered while it is
// served.
func WithNav(r *http.Request, nav *Nav) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), navKey{}, nav))
}

// NavOf is the Nav that r carries, or nil.
func NavOf(r *http.Request) *Nav { n, _ := r.Context().Value(navKey{}).(*Nav); return n }

// Headers sets what every page in the frame carries: no framing, scripts
// only from this site, nothing loaded from elsewhere.
func Headers(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

// Renderer writes pages and the error pages every surface answers with.
type Renderer struct {
	logger *slog.Logger
}

// NewRenderer returns a Renderer that logs to logger (nil: nowhere).
func NewRenderer(logger *slog.Logger) *Renderer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Renderer{logger: logger}
}

// Render writes c with the status code.
func (p *Renderer) Render(w http.ResponseWriter, r *http.Request, code int, c templ.Component) {
	Headers(w)
	w.WriteHeader(code)
	if err := c.Render(r.Context(), w); err != nil {
		p.logger.Warn("render failed", "err", err)
	}
}

// Error answers code with msg on the error page.
func (p *Renderer) Error(w http.ResponseWriter, r *http.Request, code int, msg string) {
	p.Render(w, r, code, ErrorPage(NavOf(r), code, msg))
}

// NotFound is the one answer for what does not exist and for what belongs
// to someone else, so IDs reveal nothing across tenants.
func (p *Renderer) NotFound(w http.ResponseWriter, r *http.Request) {
	p.Error(w, r, http.StatusNotFound, "There is nothing here.")
}

// Unavailable answers a failure of the state or the cluster: busy, try
// again, or (for a change a newer release brought) wait for the upgrade.
func (p *Renderer) Unavailable(w http.ResponseWriter, r *http.Request, err error) {
	var ue *cluster.UpgradeRequiredError
	if errors.As(err, &ue) {
		// A feature of a newer release, used while some node still runs
		// the older one: not busy, and not worth retrying in a moment.
		p.Error(w, r, http.StatusConflict, "This is not available until every node of the cluster has been upgraded.")
		return
	}
	p.logger.Warn("emergency inbox unavailable", "err", err)
	w.Header().Set("Retry-After", "2")
	p.Error(w, r, http.StatusServiceUnavailable, "The service is busy. Try again in a moment.")
}

// Apply commits cmd with apply (a backend's ApplyVisible) and answers a
// failure itself; it reports whether the commit happened.
func (p *Renderer) Apply(w http.ResponseWriter, r *http.Request, apply func(context.Context, any) error, cmd any) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	err := apply(ctx, cmd)
	if err == nil {
		return true
	}
	var ve *fsm.ValidationError
	switch {
	case errors.As(err, &ve):
		p.Error(w, r, http.StatusBadRequest, ve.Msg)
	case errors.Is(err, fsm.ErrCommandTooLarge):
		p.Error(w, r, http.StatusBadRequest, "This is too large for one change: split it into smaller ones.")
	default:
		p.Unavailable(w, r, err)
	}
	return false
}

// MailboxURL is the Emergency Inbox of owner.
func MailboxURL(owner string) string { return "/mail/" + url.PathEscape(owner) + "/" }

func statusText(code int) string {
	if code == http.StatusNotFound {
		return "Not found"
	}
	return http.StatusText(code)
}

// Plural counts n of a thing: "1 message", "3 messages".
func Plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// TimeOf is the time of unix nanoseconds, as the state keeps them.
func TimeOf(ns int64) time.Time { return time.Unix(0, ns) }

// When says when t was, relative to now for the recent past, as a person
// scanning a list of urgent mail reads it.
func When(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return t.UTC().Format("2 Jan 15:04 UTC")
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return Plural(int(d/time.Minute), "minute", "minutes") + " ago"
	case d < 24*time.Hour:
		return Plural(int(d/time.Hour), "hour", "hours") + " ago"
	}
	return t.UTC().Format("2 Jan 2006 15:04 UTC")
}

// Size is a size in bytes as people read it.
func Size(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%d KB", (n+512)/1024)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

// YesNo says a setting.
func YesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Or is s, or def when s is blank.
func Or(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}
