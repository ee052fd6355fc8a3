// Package mailparse is the node's one MIME parser: it reads stored
// messages (a header summary for the inbox index, the parts of a message
// and the body the Emergency Inbox's reading view shows, one part for a
// download or a cid: image) and composes outgoing mail.
//
// Reading is lenient, because the MX accepts mail as it comes and every
// message it accepted must open: the header, the MIME structure and the
// transfer encodings are read by this package's own code, which recovers
// what real-world mail gets wrong and falls back to the text as it arrived
// where nothing can be recovered. go-message does the rest: header field
// values (addresses, dates, RFC 2047 words), charsets, and composing.
package mailparse

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode the legacy charsets mail still arrives in
	"github.com/emersion/go-message/mail"

	"lifeline/fsm"
)

// MaxHeader bounds the header we read for a summary.
const MaxHeader = 256 << 10

// MaxInline bounds the text and HTML we show of one message; the rest is
// still there to download.
const MaxInline = 2 << 20

// FormatAddress renders one address for people: "Name <addr>" or addr.
func FormatAddress(a *mail.Address) string {
	if a.Name != "" {
		return a.Name + " <" + a.Address + ">"
	}
	return a.Address
}

// FormatAddresses renders a list.
func FormatAddresses(as []*mail.Address) string {
	var s []string
	for _, a := range as {
		s = append(s, FormatAddress(a))
	}
	return strings.Join(s, ", ")
}

// addresses reads an address field for people: the formatted list, the
// addresses, and whether they could be read as addresses at all. A field
// that cannot be is shown as its text, so nothing the sender wrote is lost.
func addresses(h *mail.Header, key string) (string, []*mail.Address, bool) {
	as, err := h.AddressList(key)
	if err == nil && len(as) > 0 {
		for _, a := range as {
			a.Name, a.Address = cleanText(a.Name), cleanText(a.Address)
		}
		return FormatAddresses(as), as, true
	}
	t, _ := h.Text(key)
	return cleanText(strings.TrimSpace(t)), nil, false
}

func subjectOf(h *mail.Header) string {
	s, _ := h.Subject()
	return cleanText(strings.TrimSpace(s))
}

// Summarize reads the header of a message and returns what the inbox lists.
// It reads the header as leniently as the reading view does, so a message
// whose header has a line without a colon, or that starts with an mbox
// "From " line, still lists its sender and subject. It never fails: the
// message is already accepted and must show up in the inbox all the same.
func Summarize(r io.Reader) fsm.InboxSummary {
	lr := newLineReader(io.LimitReader(r, MaxHeader))
	th := readHeader(lr, nil)
	h := mail.Header{Header: message.Header{Header: th}}
	var s fsm.InboxSummary
	s.From, _, _ = addresses(&h, "From")
	s.Subject = subjectOf(&h)
	t, _ := parseMediaValue(th.Get("Content-Type"))
	s.Attachment = hasAttachment(t)
	return s
}

// hasAttachment guesses from the top-level media type, which is all the
// index gets: multipart/mixed or a single non-text body is what mail
// clients send files as.
func hasAttachment(t string) bool {
	switch {
	case t == "multipart/mixed":
		return true
	case strings.HasPrefix(t, "multipart/"), strings.HasPrefix(t, "text/"), !strings.Contains(t, "/"):
		return false
	}
	return true
}

// Part is one leaf of a message's MIME tree.
type Part struct {
	Index       int
	ContentType string
	Filename    string
	ContentID   string
	Disposition string
	Size        int64
	textual     bool // text the reading view shows in the message
	raw         bool
	referenced  bool // an HTML section shows it by its Content-ID
}

// IsAttachment says whether the reading view lists the part as a file: a
// part marked as an attachment, one with a file name (a text file shown
// in the message can be saved too), and any other part that is neither
// shown as text nor shown by the HTML through its Content-ID (RFC 2392).
func (p *Part) IsAttachment() bool {
	switch {
	case p.raw:
		return false
	case p.Disposition == "attachment" || p.Filename != "":
		return true
	case p.textual:
		return false
	}
	return !p.referenced
}

// Message is a parsed message for the reading view.
type Message struct {
	From, To, Cc, ReplyTo string
	FromAddrs, ToAddrs    []*mail.Address
	CcAddrs, ReplyToAddrs []*mail.Address
	Subject               string
	Date                  time.Time
	MessageID             string
	References            []string
	InReplyTo             []string
	// Sections is what the reading view shows, in order.
	Sections []Section
	// Text is the message as plain text (see plainText): what search
	// reads and replies and forwards quote.
	Text string
	// HTML is the first HTML section, "" if there is none.
	HTML  string
	Parts []Part
	// Truncated is set when text or HTML was cut at MaxInline, or parts
	// past maxParts were left out.
	Truncated bool
	// Raw is set when some of the message could not be read as MIME and
	// is shown as it arrived.
	Raw bool
}

// maxShown bounds the text and HTML kept of one message in all.
const maxShown = 4 * MaxInline

// Parse reads a whole message for the reading view. It never fails on
// what the message holds: whatever the bytes, it returns a message, with
// the text as it arrived where the structure cannot be recovered. Its
// only error is one from reading r.
func Parse(r io.Reader) (*Message, error) {
	lr := newLineReader(r)
	m := &Message{}
	budget := maxShown
	w := &walk{leaf: func(n *node, body io.Reader) error {
		if !n.shownInline() {
			return nil
		}
		b, cut := readCapped(body, min(MaxInline, budget))
		budget -= len(b)
		n.text = b
		if cut || n.truncated {
			m.Truncated = true
		}
		return nil
	}}
	th := readHeader(lr, nil)
	root := w.entity(lr, th, "text/plain", 0, nil)
	if lr.err != nil {
		return nil, fmt.Errorf("reading the message: %w", lr.err)
	}
	if w.parts >= maxParts {
		m.Truncated = true
	}
	h := mail.Header{Header: message.Header{Header: th}}
	m.From, m.FromAddrs, _ = addresses(&h, "From")
	m.To, m.ToAddrs, _ = addresses(&h, "To")
	m.Cc, m.CcAddrs, _ = addresses(&h, "Cc")
	m.ReplyTo, m.ReplyToAddrs, _ = addresses(&h, "Reply-To")
	m.Subject = subjectOf(&h)
	m.Date, _ = h.Date()
	m.MessageID, _ = h.MessageID()
	m.References, _ = h.MsgIDList("References")
	m.InReplyTo, _ = h.MsgIDList("In-Reply-To")
	m.Parts = leaves(root, nil)
	m.Sections = sections(root)
	for _, s := range m.Sections {
		if s.Kind == SectionHTML && m.HTML == "" {
			m.HTML = s.HTML
		}
		m.Raw = m.Raw || s.Raw
	}
	m.Text = plainText(m.Sections)
	var html strings.Builder
	for _, s := range m.Sections {
		if s.Kind == SectionHTML {
			html.WriteString(strings.ToLower(s.HTML))
		}
	}
	for i := range m.Parts {
		p := &m.Parts[i]
		p.referenced = p.ContentID != "" && strings.Contains(html.String(), "cid:"+strings.ToLower(p.ContentID))
	}
	return m, nil
}

// ErrNoPart is returned by OpenPart for an index the message lacks.
var ErrNoPart = errors.New("no such part")

// errFound stops the walk of OpenPart once the part was handed out.
var errFound = errors.New("part found")

// OpenPart finds leaf index of the message in r, numbered as Parse numbers
// them, and calls fn with its description and decoded body.
func OpenPart(r io.Reader, index int, fn func(Part, io.Reader) error) error {
	lr := newLineReader(r)
	var fnErr error
	w := &walk{leaf: func(n *node, body io.Reader) error {
		if n.part != index {
			return nil
		}
		fnErr = fn(n.describe(), body)
		lr.stop()
		return errFound
	}}
	th := readHeader(lr, nil)
	w.entity(lr, th, "text/plain", 0, nil)
	switch {
	case w.err == errFound:
		return fnErr
	case lr.err != nil:
		return lr.err
	}
	return ErrNoPart
}

// Attachment is a file to attach to an outgoing message.
type Attachment struct {
	Name string
	Type string
	Body io.Reader
}

// Outgoing is a message written in the Emergency Inbox.
type Outgoing struct {
	From       *mail.Address
	To, Cc     []*mail.Address
	Subject    string
	Text       string
	Date       time.Time
	MessageID  string
	InReplyTo  []string
	References []string
	Files      []Attachment
}

// Compose writes o as an RFC 5322 message with CRLF line endings.
func Compose(w io.Writer, o *Outgoing) error {
	var h mail.Header
	h.SetDate(o.Date)
	h.SetAddressList("From", []*mail.Address{o.From})
	if len(o.To) > 0 {
		h.SetAddressList("To", o.To)
	}
	if len(o.Cc) > 0 {
		h.SetAddressList("Cc", o.Cc)
	}
	h.SetSubject(o.Subject)
	h.SetMessageID(o.MessageID)
	// RFC 5322 §3.6.4: In-Reply-To names the parent; References is the
	// parent's References (or its In-Reply-To) followed by the parent.
	if len(o.InReplyTo) > 0 {
		h.SetMsgIDList("In-Reply-To", o.InReplyTo)
	}
	if len(o.References) > 0 {
		h.SetMsgIDList("References", o.References)
	}
	text := strings.ReplaceAll(strings.ReplaceAll(o.Text, "\r\n", "\n"), "\n", "\r\n")
	if len(o.Files) == 0 {
		h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		mw, err := mail.CreateSingleInlineWriter(w, h)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(mw, text); err != nil {
			return err
		}
		return mw.Close()
	}
	mw, err := mail.CreateWriter(w, h)
	if err != nil {
		return err
	}
	var th mail.InlineHeader
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	tw, err := mw.CreateSingleInline(th)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(tw, text); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	for _, f := range o.Files {
		var ah mail.AttachmentHeader
		ct := f.Type
		if _, _, err := mime.ParseMediaType(ct); err != nil || ct == "" {
			ct = "application/octet-stream"
		}
		mt, _, _ := mime.ParseMediaType(ct)
		if mt == "message/rfc822" {
			// RFC 2046 §5.2.1: a message/rfc822 body is 7bit, 8bit or
			// binary, never base64.
			ah.Set("Content-Transfer-Encoding", "8bit")
		}
		ah.SetContentType(mt, nil)
		ah.SetFilename(f.Name)
		aw, err := mw.CreateAttachment(ah)
		if err != nil {
			return err
		}
		if _, err := io.Copy(aw, f.Body); err != nil {
			return err
		}
		if err := aw.Close(); err != nil {
			return err
		}
	}
	return mw.Close()
}

// ParseAddressList parses what a user typed in To or Cc. Commas and
// semicolons both separate.
func ParseAddressList(s string) ([]*mail.Address, error) {
	s = strings.TrimSpace(strings.ReplaceAll(s, ";", ","))
	if s == "" {
		return nil, nil
	}
	as, err := mail.ParseAddressList(s)
	if err != nil {
		return nil, fmt.Errorf("cannot read the addresses %q: %v", s, err)
	}
	for _, a := range as {
		a.Address = strings.TrimSpace(a.Address)
		at := strings.LastIndexByte(a.Address, '@')
		if at < 1 || at == len(a.Address)-1 || strings.ContainsAny(a.Address, " <>\r\n") {
			return nil, fmt.Errorf("not an email address: %q", a.Address)
		}
	}
	return as, nil
}
