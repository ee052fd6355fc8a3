package inbox

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/node/mailparse"
	"lifeline/webui/page"
	"lifeline/webui/session"
)

func messageURL(owner, id string) string {
	return "/mail/" + url.PathEscape(owner) + "/m/" + url.PathEscape(id)
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, session.HomeOf(viewerOf(r)), http.StatusSeeOther)
}

// mailboxHandler serves one person's mailbox: owner is whose it is.
type mailboxHandler func(w http.ResponseWriter, r *http.Request, v *session.Viewer, owner fsm.User)

// mailbox resolves {owner} against the session: a user reaches their own
// inbox, an org admin any inbox of their organisation (audited), nobody
// else anything: 404, as for an inbox that does not exist. A partner
// manages organisations but never reads their mail.
func (s *Server) mailbox(next mailboxHandler) http.HandlerFunc {
	return s.signedIn(func(w http.ResponseWriter, r *http.Request) {
		v := viewerOf(r)
		email := strings.ToLower(r.PathValue("owner"))
		var owner fsm.User
		switch {
		case v.User.Role == fsm.RolePartner:
			s.notFound(w, r)
			return
		case email == v.User.Email:
			owner = v.User
		case v.User.Role == fsm.RoleOrgAdmin:
			u, ok, err := s.b.Store().User(email)
			if err != nil {
				s.unavailable(w, r, err)
				return
			}
			if !ok || u.Org != v.User.Org || u.Role == fsm.RolePartner {
				s.notFound(w, r)
				return
			}
			owner = u
		default:
			s.notFound(w, r)
			return
		}
		if owner.Email == v.User.Email && v.User.Role == fsm.RoleUser {
			// The organisation may keep the Emergency Inbox to some groups.
			set, err := s.b.Store().OrgSettingsOf(v.User.Org)
			if err != nil {
				s.unavailable(w, r, err)
				return
			}
			if !set.InboxAllowed(&v.User) {
				s.errorPage(w, r, http.StatusForbidden, "Your organisation has not opened the Emergency Inbox to you. Ask your administrator.")
				return
			}
		}
		if id := r.PathValue("id"); id != "" {
			ok, err := s.b.Store().InboxHas(owner.Email, id)
			if err != nil {
				s.unavailable(w, r, err)
				return
			}
			if !ok {
				s.notFound(w, r)
				return
			}
		}
		if owner.Email != v.User.Email && r.Method == http.MethodGet && (r.PathValue("id") == "" || strings.Count(r.URL.Path, "/") == 4) {
			// An admin opening someone else's inbox or message: audited
			// before anything is shown.
			detail := ""
			if id := r.PathValue("id"); id != "" {
				detail = "message " + id
			}
			if !s.apply(w, r, &fsm.AuditAdd{Entry: fsm.AuditEntry{At: s.b.Now().UnixNano(), Kind: fsm.AuditOpenInbox,
				Actor: v.User.Email, Target: owner.Email, Org: owner.Org, Addr: session.ClientAddr(r), Detail: detail}}) {
				return
			}
		}
		next(w, r, v, owner)
	})
}

// DomainState is what the inbox says about the organisation's server.
type DomainState struct {
	Name          string
	Known         bool
	Spooling      bool
	SpoolingSince time.Time
	LastDelivered time.Time
	LastError     string
}

func (s *Server) domainState(addr string) DomainState {
	d := addr[strings.LastIndexByte(addr, '@')+1:]
	st := DomainState{Name: d}
	dom, ok, err := s.b.Store().Domain(d)
	if err != nil || !ok {
		return st
	}
	st.Known, st.Spooling, st.LastError = true, dom.Spooling, dom.LastError
	if dom.SpoolingSince != 0 {
		st.SpoolingSince = time.Unix(0, dom.SpoolingSince)
	}
	if dom.LastDelivered != 0 {
		st.LastDelivered = time.Unix(0, dom.LastDelivered)
	}
	return st
}

// ListPage is the inbox page.
type ListPage struct {
	Owner    fsm.User
	Self     bool
	Items    []fsm.InboxItem
	Total    int
	Query    string
	Next     string // cursor of the next page, "" at the end
	First    bool
	Searched bool
	// SearchCut is set when a search stopped before the end of the inbox.
	SearchCut bool
	Domain    DomainState
	Drafts    []fsm.Draft
	Now       time.Time
	Flash     string
}

func parseCursor(s string) (fsm.InboxCursor, bool) {
	if s == "" {
		return fsm.InboxCursor{}, true
	}
	at, id, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || n <= 0 || id == "" || len(id) > 80 {
		return fsm.InboxCursor{}, false
	}
	return fsm.InboxCursor{At: n, ID: id}, true
}

func formatCursor(c fsm.InboxCursor) string {
	if c.At == 0 {
		return ""
	}
	return strconv.FormatInt(c.At, 10) + "." + c.ID
}

// searchScan bounds how many messages one search request reads, so a
// search of a huge inbox answers in steps rather than stalling.
const searchScan = 2000

func (s *Server) list(w http.ResponseWriter, r *http.Request, v *session.Viewer, owner fsm.User) {
	q := r.URL.Query()
	cur, ok := parseCursor(q.Get("before"))
	if !ok {
		s.errorPage(w, r, http.StatusBadRequest, "The page link is damaged.")
		return
	}
	query := strings.TrimSpace(q.Get("q"))
	if len(query) > 200 {
		s.errorPage(w, r, http.StatusBadRequest, "The search is too long (200 characters at most).")
		return
	}
	page := ListPage{Owner: owner, Self: owner.Email == v.User.Email, Query: query, First: cur.At == 0, Now: s.b.Now(), Flash: q.Get("flash")}
	var match func(*fsm.InboxItem) bool
	maxScan := 0
	if query != "" {
		page.Searched = true
		maxScan = searchScan
		needle := strings.ToLower(query)
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		match = func(it *fsm.InboxItem) bool {
			if strings.Contains(strings.ToLower(it.From), needle) || strings.Contains(strings.ToLower(it.Subject), needle) {
				return true
			}
			return s.bodyContains(ctx, it.ID, needle)
		}
	}
	items, next, total, err := s.b.Store().InboxPage(owner.Email, cur, s.cfg.PageSize, maxScan, match)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	page.Items, page.Total, page.Next = items, total, formatCursor(next)
	page.SearchCut = page.Searched && page.Next != "" && len(items) < s.cfg.PageSize
	page.Domain = s.domainState(owner.Email)
	if page.Self {
		page.Drafts, _ = s.b.Store().Drafts(v.User.Email)
	}
	s.render(w, r, http.StatusOK, listPage(v, page))
}

// bodyContains searches the text of a message for needle. It reads at most
// the first 256 KiB of each body.
func (s *Server) bodyContains(ctx context.Context, id, needle string) bool {
	if ctx.Err() != nil {
		return false
	}
	m, ok, err := s.b.Store().Message(id)
	if err != nil || !ok {
		return false
	}
	rc, err := s.b.OpenBody(ctx, m.BlobHash)
	if err != nil {
		return false
	}
	defer rc.Close()
	pm, err := mailparse.Parse(io.LimitReader(rc, 256<<10))
	if err != nil {
		return false
	}
	return strings.Contains(strings.ToLower(pm.Text), needle)
}

func (s *Server) openMessage(r *http.Request, id string) (fsm.Message, *mailparse.Message, error) {
	m, ok, err := s.b.Store().Message(id)
	if err != nil {
		return m, nil, err
	}
	if !ok {
		return m, nil, fmt.Errorf("message %s left the spool", id)
	}
	rc, err := s.b.OpenBody(r.Context(), m.BlobHash)
	if err != nil {
		return m, nil, err
	}
	defer rc.Close()
	pm, err := mailparse.Parse(rc)
	return m, pm, err
}

// ReadPage is the reading view.
type ReadPage struct {
	Owner     fsm.User
	Self      bool
	ID        string
	Msg       *mailparse.Message
	Received  time.Time
	Size      int64
	Files     []mailparse.Part
	Remote    bool
	HasRemote bool
}

// FrameURL is the address of the sanitised HTML of section part.
func (p *ReadPage) FrameURL(part int) string {
	u := messageURL(p.Owner.Email, p.ID) + "/frame?part=" + strconv.Itoa(part)
	if p.Remote {
		u += "&remote=1"
	}
	return u
}

// RawURL is the address of the message as it was received.
func (p *ReadPage) RawURL() string { return messageURL(p.Owner.Email, p.ID) + "/raw" }

func (s *Server) read(w http.ResponseWriter, r *http.Request, v *session.Viewer, owner fsm.User) {
	id := r.PathValue("id")
	m, pm, err := s.openMessage(r, id)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	p := ReadPage{Owner: owner, Self: owner.Email == v.User.Email, ID: id, Msg: pm, Received: time.Unix(0, m.ReceivedAt), Size: m.Size,
		Remote: r.URL.Query().Get("remote") == "1"}
	for _, sec := range pm.Sections {
		if sec.IsHTML() && remoteImg.MatchString(sec.HTML) {
			p.HasRemote = true
		}
	}
	for _, part := range pm.Parts {
		if part.IsAttachment() {
			p.Files = append(p.Files, part)
		}
	}
	// Reading marks the message read, but only for its owner: an admin
	// looking on changes nothing the user sees.
	if p.Self && !s.b.Store().InboxRead(owner.Email, id) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		if err := s.b.Apply(ctx, &fsm.MarkRead{Address: owner.Email, IDs: []string{id}, Read: true}); err != nil {
			s.logger.Warn("mark read failed", "err", err)
		}
		cancel()
	}
	s.render(w, r, http.StatusOK, readPage(v, p))
}

// frame serves one sanitised HTML section of the message, the first
// unless ?part= names the leaf it comes from. It is shown in an iframe with
// sandbox (no allow-scripts) and carries its own CSP: nothing but our own
// images (cid: parts) unless the user asked for remote ones, no script,
// no forms, no plugins. Even opened on its own it stays sandboxed.
func (s *Server) frame(w http.ResponseWriter, r *http.Request, v *session.Viewer, owner fsm.User) {
	want := -1
	if q := r.URL.Query().Get("part"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 0 {
			s.errorPage(w, r, http.StatusBadRequest, "The part number is not a number.")
			return
		}
		want = n
	}
	_, pm, err := s.openMessage(r, r.PathValue("id"))
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	found := false
	var src string
	for _, sec := range pm.Sections {
		if sec.IsHTML() && (want < 0 || sec.Part == want) {
			src, found = sec.HTML, true
			break
		}
	}
	if !found {
		s.notFound(w, r)
		return
	}
	remote := r.URL.Query().Get("remote") == "1"
	pol := s.html.blocking
	img := "'self'"
	if remote {
		pol = s.html.remote
		img = "'self' https: http:"
	}
	clean := pol.Sanitize(src)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; img-src "+img+"; style-src 'unsafe-inline'; font-src 'none'; form-action 'none'; frame-ancestors 'self'; base-uri 'none'; sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	io.WriteString(w, `<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><base target="_blank">`+
		`<style>body{font-family:system-ui,sans-serif;margin:0;padding:.5rem;overflow-wrap:anywhere}img{max-width:100%;height:auto}</style></head><body>`)
	io.WriteString(w, clean)
	io.WriteString(w, `</body></html>`)
}

// raw serves the message as it was received, for mail whose structure the
// reading view could not recover and for anyone who wants the original:
// always as a download, never shown by the browser.
func (s *Server) raw(w http.ResponseWriter, r *http.Request, v *session.Viewer, owner fsm.User) {
	id := r.PathValue("id")
	m, ok, err := s.b.Store().Message(id)
	if err != nil || !ok {
		s.notFound(w, r)
		return
	}
	rc, err := s.b.OpenBody(r.Context(), m.BlobHash)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", "private, no-store")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": SafeFilename(id) + ".eml"}))
	io.Copy(w, rc)
}

// cidPart serves an inline image of the message by its Content-ID
// (RFC 2392), for the cid: URLs of its HTML part.
func (s *Server) cidPart(w http.ResponseWriter, r *http.Request, v *session.Viewer, owner fsm.User) {
	_, pm, err := s.openMessage(r, r.PathValue("id"))
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	cid := r.PathValue("cid")
	for _, p := range pm.Parts {
		if p.ContentID != "" && p.ContentID == cid && strings.HasPrefix(p.ContentType, "image/") && p.ContentType != "image/svg+xml" {
			s.servePart(w, r, p.Index, false)
			return
		}
	}
	s.notFound(w, r)
}

func (s *Server) download(w http.ResponseWriter, r *http.Request, v *session.Viewer, owner fsm.User) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 || n > 10000 {
		s.notFound(w, r)
		return
	}
	s.servePart(w, r, n, true)
}

// SafeFilename keeps what a file name needs to be saved and nothing that
// could steer where: no directories, no control characters.
func SafeFilename(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' || r == '"' {
			return '_'
		}
		return r
	}, name)
	name = strings.Trim(strings.TrimSpace(name), ".")
	if name == "" {
		return "attachment"
	}
	if len(name) > 200 {
		name = name[:200]
	}
	return name
}

func (s *Server) servePart(w http.ResponseWriter, r *http.Request, index int, attachment bool) {
	m, ok, err := s.b.Store().Message(r.PathValue("id"))
	if err != nil || !ok {
		s.notFound(w, r)
		return
	}
	rc, err := s.b.OpenBody(r.Context(), m.BlobHash)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	defer rc.Close()
	err = mailparse.OpenPart(rc, index, func(p mailparse.Part, body io.Reader) error {
		h := w.Header()
		ct := "application/octet-stream"
		if mt, _, err := mime.ParseMediaType(p.ContentType); err == nil && !attachment {
			ct = mt
		} else if err == nil && attachment && !strings.HasPrefix(mt, "text/html") && !strings.Contains(mt, "xml") {
			ct = mt
		}
		h.Set("Content-Type", ct)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		h.Set("Cache-Control", "private, no-store")
		if attachment {
			name := p.Filename
			if name == "" {
				name = fmt.Sprintf("part-%d", index)
			}
			// mime.FormatMediaType quotes the name, or encodes it per
			// RFC 2231 when it is not plain ASCII (as RFC 6266 allows).
			h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": SafeFilename(name)}))
		} else {
			h.Set("Content-Disposition", "inline")
		}
		_, err := io.Copy(w, body)
		return err
	})
	if err == mailparse.ErrNoPart {
		s.notFound(w, r)
	}
}

func (s *Server) markUnread(w http.ResponseWriter, r *http.Request, v *session.Viewer, owner fsm.User) {
	if owner.Email != v.User.Email {
		s.notFound(w, r)
		return
	}
	if s.apply(w, r, &fsm.MarkRead{Address: owner.Email, IDs: []string{r.PathValue("id")}, Read: false}) {
		http.Redirect(w, r, page.MailboxURL(owner.Email), http.StatusSeeOther)
	}
}
