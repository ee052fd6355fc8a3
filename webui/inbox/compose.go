package inbox

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"

	"lifeline/fsm"
	"lifeline/node/mailparse"
	"lifeline/webui/page"
	"lifeline/webui/session"
)

func draftURL(id string) string { return "/drafts/" + url.PathEscape(id) }

func (s *Server) newID() string {
	b := make([]byte, 16)
	io.ReadFull(s.rand(), b)
	return hex.EncodeToString(b)
}

// subjectWith prefixes a subject once ("Re: Re: Re:" helps nobody).
func subjectWith(prefix, subject string) string {
	if strings.HasPrefix(strings.ToLower(subject), strings.ToLower(prefix)) {
		return subject
	}
	return prefix + " " + subject
}

func quote(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(strings.ReplaceAll(text, "\r\n", "\n"), "\n"), "\n") {
		if strings.HasPrefix(l, ">") || l == "" {
			// No space before a nested quote or after an empty line's
			// marker, as mail clients quote.
			b.WriteString(">" + l + "\n")
		} else {
			b.WriteString("> " + l + "\n")
		}
	}
	return b.String()
}

func without(as []*mail.Address, self string, seen map[string]bool) []*mail.Address {
	var out []*mail.Address
	for _, a := range as {
		k := strings.ToLower(a.Address)
		if k == self || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, a)
	}
	return out
}

// compose starts a draft: new, or a reply, reply to all or forward of a
// message in the user's own inbox.
func (s *Server) compose(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r)
	if v.User.Role == fsm.RolePartner {
		s.notFound(w, r)
		return
	}
	kind := r.PostFormValue("kind")
	now := s.b.Now()
	d := fsm.Draft{ID: s.newID(), Owner: v.User.Email, UpdatedAt: now.UnixNano()}
	switch kind {
	case "new":
	case "reply", "replyall", "forward":
		id := r.PostFormValue("id")
		ok, err := s.b.Store().InboxHas(v.User.Email, id)
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		if !ok {
			s.notFound(w, r)
			return
		}
		m, pm, err := s.openMessage(r, id)
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		date := pm.Date
		if date.IsZero() {
			date = time.Unix(0, m.ReceivedAt)
		}
		if kind == "forward" {
			d.Subject = subjectWith("Fwd:", pm.Subject)
			d.Text = fmt.Sprintf("\n\n---------- Forwarded message ----------\nFrom: %s\nDate: %s\nSubject: %s\nTo: %s\n\n%s",
				pm.From, date.Format(time.RFC1123Z), pm.Subject, pm.To, pm.Text)
			// The original travels whole, as message/rfc822, with its
			// own attachments; the draft holds a reference on its body.
			d.Attachments = []fsm.DraftAttachment{{Name: SafeFilename(page.Or(pm.Subject, "message")) + ".eml", Type: "message/rfc822", BlobHash: m.BlobHash, Size: m.Size}}
		} else {
			d.Subject = subjectWith("Re:", pm.Subject)
			to := pm.ReplyToAddrs
			if len(to) == 0 {
				to = pm.FromAddrs
			}
			seen := map[string]bool{}
			toList := without(to, "", seen)
			var cc []*mail.Address
			if kind == "replyall" {
				toList = append(toList, without(pm.ToAddrs, v.User.Email, seen)...)
				cc = without(pm.CcAddrs, v.User.Email, seen)
			}
			d.To, d.Cc = mailparse.FormatAddresses(toList), mailparse.FormatAddresses(cc)
			d.Text = fmt.Sprintf("\n\nOn %s, %s wrote:\n%s", date.Format("Mon, 2 Jan 2006 at 15:04"), pm.From, quote(pm.Text))
			// RFC 5322 §3.6.4: In-Reply-To is the parent's Message-ID;
			// References is the parent's References, or failing that
			// its In-Reply-To, followed by the parent's Message-ID.
			if pm.MessageID != "" {
				d.InReplyTo = pm.MessageID
				refs := pm.References
				if len(refs) == 0 {
					refs = pm.InReplyTo
				}
				d.References = strings.Join(append(append([]string(nil), refs...), pm.MessageID), " ")
			}
		}
		if len(d.Text) > fsm.MaxDraftText {
			d.Text = d.Text[:fsm.MaxDraftText]
		}
	default:
		s.errorPage(w, r, http.StatusBadRequest, "Unknown kind of message.")
		return
	}
	if !s.apply(w, r, &fsm.DraftPut{Draft: d}) {
		return
	}
	http.Redirect(w, r, draftURL(d.ID), http.StatusSeeOther)
}

// ComposePage is the draft editor.
type ComposePage struct {
	Draft fsm.Draft
	Error string
	Saved bool
}

func (s *Server) ownDraft(w http.ResponseWriter, r *http.Request) (*session.Viewer, fsm.Draft, bool) {
	v := viewerOf(r)
	d, ok, err := s.b.Store().Draft(v.User.Email, r.PathValue("id"))
	if err != nil {
		s.unavailable(w, r, err)
		return v, d, false
	}
	if !ok {
		s.notFound(w, r)
		return v, d, false
	}
	return v, d, true
}

func (s *Server) draftPage(w http.ResponseWriter, r *http.Request) {
	v, d, ok := s.ownDraft(w, r)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, composePage(v, ComposePage{Draft: d, Saved: r.URL.Query().Get("saved") == "1"}))
}

// fillDraft copies the typed fields into d, refusing oversized input.
func fillDraft(r *http.Request, d *fsm.Draft) string {
	to, cc, subj, text := r.PostFormValue("to"), r.PostFormValue("cc"), r.PostFormValue("subject"), r.PostFormValue("text")
	switch {
	case len(to)+len(cc) > 8000:
		return "Too many recipients."
	case len(subj) > 1000 || strings.ContainsAny(subj, "\r\n"):
		return "The subject is too long or has line breaks."
	case len(text) > fsm.MaxDraftText:
		return fmt.Sprintf("The text is too long (at most %d KiB); attach long documents as files.", fsm.MaxDraftText>>10)
	}
	d.To, d.Cc, d.Subject, d.Text = to, cc, subj, strings.ReplaceAll(text, "\r\n", "\n")
	return ""
}

func (s *Server) autosave(w http.ResponseWriter, r *http.Request) {
	_, d, ok := s.ownDraft(w, r)
	if !ok {
		return
	}
	if msg := fillDraft(r, &d); msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	d.UpdatedAt = s.b.Now().UnixNano()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := s.b.ApplyVisible(ctx, &fsm.DraftPut{Draft: d}); err != nil {
		http.Error(w, "draft not saved", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) draftPost(w http.ResponseWriter, r *http.Request) {
	v, d, ok := s.ownDraft(w, r)
	if !ok {
		return
	}
	action := r.PostFormValue("action")
	if action == "discard" {
		if s.apply(w, r, &fsm.DraftDelete{Owner: v.User.Email, ID: d.ID}) {
			http.Redirect(w, r, page.MailboxURL(v.User.Email)+"?flash=discarded", http.StatusSeeOther)
		}
		return
	}
	orig := d
	fail := func(code int, msg string) {
		s.render(w, r, code, composePage(v, ComposePage{Draft: orig, Error: msg}))
	}
	if msg := fillDraft(r, &d); msg != "" {
		fail(http.StatusBadRequest, msg)
		return
	}
	if rm := r.PostFormValue("remove"); rm != "" {
		i, err := strconv.Atoi(rm)
		if err != nil || i < 0 || i >= len(d.Attachments) {
			fail(http.StatusBadRequest, "No such attachment.")
			return
		}
		d.Attachments = append(append([]fsm.DraftAttachment(nil), d.Attachments[:i]...), d.Attachments[i+1:]...)
	}
	if r.MultipartForm != nil {
		for _, fh := range r.MultipartForm.File["attach"] {
			if fh.Filename == "" && fh.Size == 0 {
				continue
			}
			if len(d.Attachments) >= fsm.MaxDraftAttachments {
				fail(http.StatusBadRequest, fmt.Sprintf("At most %d attachments.", fsm.MaxDraftAttachments))
				return
			}
			f, err := fh.Open()
			if err != nil {
				fail(http.StatusBadRequest, "The file could not be read.")
				return
			}
			hash, size, err := s.b.PutBlob(r.Context(), f)
			f.Close()
			if err != nil {
				s.unavailable(w, r, err)
				return
			}
			ct := fh.Header.Get("Content-Type")
			if ct == "" || len(ct) > 200 {
				ct = "application/octet-stream"
			}
			d.Attachments = append(d.Attachments, fsm.DraftAttachment{Name: SafeFilename(fh.Filename), Type: ct, BlobHash: hash, Size: size})
		}
	}
	d.UpdatedAt = s.b.Now().UnixNano()
	if !s.apply(w, r, &fsm.DraftPut{Draft: d}) {
		return
	}
	if action != "send" {
		http.Redirect(w, r, draftURL(d.ID)+"?saved=1", http.StatusSeeOther)
		return
	}
	body, rcpts, msg := s.build(r.Context(), v, &d)
	if msg != "" {
		s.render(w, r, http.StatusBadRequest, composePage(v, ComposePage{Draft: d, Error: msg}))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if _, err := s.b.SendMail(ctx, v.User.Email, rcpts, body); err != nil {
		s.logger.Warn("sending from the emergency inbox failed", "err", err)
		s.render(w, r, http.StatusServiceUnavailable, composePage(v, ComposePage{Draft: d, Error: "The message could not be queued; your draft is kept. Try again in a moment."}))
		return
	}
	if !s.apply(w, r, &fsm.DraftDelete{Owner: v.User.Email, ID: d.ID}) {
		return
	}
	http.Redirect(w, r, page.MailboxURL(v.User.Email)+"?flash=sent", http.StatusSeeOther)
}

// build composes the message of a draft. A message the user cannot fix by
// retrying (no recipient, a malformed address) gives a message for them.
func (s *Server) build(ctx context.Context, v *session.Viewer, d *fsm.Draft) ([]byte, []string, string) {
	to, err := mailparse.ParseAddressList(d.To)
	if err != nil {
		return nil, nil, "To: " + err.Error()
	}
	cc, err := mailparse.ParseAddressList(d.Cc)
	if err != nil {
		return nil, nil, "Cc: " + err.Error()
	}
	if len(to)+len(cc) == 0 {
		return nil, nil, "Add at least one recipient."
	}
	var rcpts []string
	seen := map[string]bool{}
	for _, a := range append(append([]*mail.Address(nil), to...), cc...) {
		k := strings.ToLower(a.Address)
		if !seen[k] {
			seen[k] = true
			rcpts = append(rcpts, a.Address)
		}
	}
	o := &mailparse.Outgoing{
		From: &mail.Address{Name: v.User.DisplayName, Address: v.User.Email}, To: to, Cc: cc,
		Subject: d.Subject, Text: d.Text, Date: s.b.Now(),
		MessageID: s.newID() + "@" + s.b.MailHostname(),
	}
	if d.InReplyTo != "" {
		o.InReplyTo = []string{d.InReplyTo}
	}
	if d.References != "" {
		o.References = strings.Fields(d.References)
	}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for _, a := range d.Attachments {
		rc, err := s.b.OpenBody(ctx, a.BlobHash)
		if err != nil {
			return nil, nil, "An attachment is not available right now: " + a.Name
		}
		closers = append(closers, rc)
		o.Files = append(o.Files, mailparse.Attachment{Name: a.Name, Type: a.Type, Body: rc})
	}
	var buf bytes.Buffer
	if err := mailparse.Compose(&buf, o); err != nil {
		return nil, nil, "The message could not be composed: " + err.Error()
	}
	return buf.Bytes(), rcpts, ""
}
