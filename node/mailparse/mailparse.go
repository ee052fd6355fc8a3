// Package mailparse is the node's one MIME parser, on go-message: it reads
// stored messages (a header summary for the inbox index, the parts of a
// message for the Emergency Inbox's reading view, one part for a download
// or a cid: image) and composes outgoing mail.
package mailparse

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode the legacy charsets mail still arrives in
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

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

func readHeader(r io.Reader) (mail.Header, error) {
	br := bufio.NewReader(io.LimitReader(r, MaxHeader))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return mail.Header{}, err
	}
	return mail.Header{Header: message.Header{Header: h}}, nil
}

// Summarize reads the header of a message and returns what the inbox lists.
// An unreadable header gives an empty summary, never an error: the message
// is already accepted and must show up in the inbox all the same.
func Summarize(r io.Reader) fsm.InboxSummary {
	h, err := readHeader(r)
	if err != nil {
		return fsm.InboxSummary{}
	}
	var s fsm.InboxSummary
	if from, err := h.AddressList("From"); err == nil && len(from) > 0 {
		s.From = FormatAddresses(from)
	} else {
		s.From, _ = h.Text("From")
	}
	s.Subject, _ = h.Subject()
	s.Attachment = hasAttachment(&h)
	return s
}

// hasAttachment guesses from the top-level header, which is all the index
// gets: multipart/mixed or a single non-text body is what mail clients
// send files as.
func hasAttachment(h *mail.Header) bool {
	t, _, err := h.ContentType()
	if err != nil {
		return false
	}
	switch {
	case t == "multipart/mixed":
		return true
	case strings.HasPrefix(t, "multipart/"), strings.HasPrefix(t, "text/"), t == "":
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
}

// IsAttachment says whether the reading view lists the part as a file.
func (p *Part) IsAttachment() bool {
	if p.Disposition == "attachment" || p.Filename != "" {
		return true
	}
	return !strings.HasPrefix(p.ContentType, "text/plain") && !strings.HasPrefix(p.ContentType, "text/html") && p.ContentID == ""
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
	Text                  string
	HTML                  string
	Parts                 []Part
	// Truncated is set when text or HTML was cut at MaxInline.
	Truncated bool
}

// Parse reads a whole message.
func Parse(r io.Reader) (*Message, error) {
	e, err := message.Read(r)
	if err != nil && e == nil {
		return nil, fmt.Errorf("unreadable message: %w", err)
	}
	h := mail.Header{Header: e.Header}
	m := &Message{}
	m.FromAddrs, _ = h.AddressList("From")
	m.ToAddrs, _ = h.AddressList("To")
	m.CcAddrs, _ = h.AddressList("Cc")
	m.ReplyToAddrs, _ = h.AddressList("Reply-To")
	m.From, m.To, m.Cc, m.ReplyTo = FormatAddresses(m.FromAddrs), FormatAddresses(m.ToAddrs), FormatAddresses(m.CcAddrs), FormatAddresses(m.ReplyToAddrs)
	if m.From == "" {
		m.From, _ = h.Text("From")
	}
	m.Subject, _ = h.Subject()
	m.Date, _ = h.Date()
	m.MessageID, _ = h.MessageID()
	m.References, _ = h.MsgIDList("References")
	m.InReplyTo, _ = h.MsgIDList("In-Reply-To")
	idx := 0
	err = e.Walk(func(path []int, part *message.Entity, err error) error {
		if err != nil && part == nil {
			return nil
		}
		t, _, _ := part.Header.ContentType()
		if strings.HasPrefix(t, "multipart/") {
			return nil
		}
		if t == "" {
			t = "text/plain"
		}
		ah := mail.AttachmentHeader{Header: part.Header}
		p := Part{Index: idx, ContentType: t}
		idx++
		p.Filename, _ = ah.Filename()
		p.Disposition, _, _ = part.Header.ContentDisposition()
		p.ContentID = strings.Trim(part.Header.Get("Content-Id"), "<> ")
		var n int64
		switch {
		case t == "text/plain" && m.Text == "" && !p.IsAttachment():
			var b []byte
			b, n = readCapped(part.Body, &m.Truncated)
			m.Text = string(b)
		case t == "text/html" && m.HTML == "" && !p.IsAttachment():
			var b []byte
			b, n = readCapped(part.Body, &m.Truncated)
			m.HTML = string(b)
		default:
			n, _ = io.Copy(io.Discard, part.Body)
		}
		p.Size = n
		m.Parts = append(m.Parts, p)
		return nil
	})
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return m, nil
	}
	return m, nil
}

func readCapped(r io.Reader, truncated *bool) ([]byte, int64) {
	b, _ := io.ReadAll(io.LimitReader(r, MaxInline))
	n := int64(len(b))
	if rest, _ := io.Copy(io.Discard, r); rest > 0 {
		*truncated = true
		n += rest
	}
	return b, n
}

// ErrNoPart is returned by OpenPart for an index the message lacks.
var ErrNoPart = errors.New("no such part")

// OpenPart finds leaf index of the message in r and calls fn with its
// description and decoded body.
func OpenPart(r io.Reader, index int, fn func(Part, io.Reader) error) error {
	e, err := message.Read(r)
	if err != nil && e == nil {
		return err
	}
	idx := 0
	found := false
	errStop := errors.New("stop")
	err = e.Walk(func(path []int, part *message.Entity, err error) error {
		if err != nil && part == nil {
			return nil
		}
		t, _, _ := part.Header.ContentType()
		if strings.HasPrefix(t, "multipart/") {
			return nil
		}
		if idx != index {
			idx++
			return nil
		}
		if t == "" {
			t = "text/plain"
		}
		ah := mail.AttachmentHeader{Header: part.Header}
		p := Part{Index: idx, ContentType: t}
		p.Filename, _ = ah.Filename()
		p.Disposition, _, _ = part.Header.ContentDisposition()
		p.ContentID = strings.Trim(part.Header.Get("Content-Id"), "<> ")
		found = true
		if err := fn(p, part.Body); err != nil {
			return err
		}
		return errStop
	})
	if !found {
		return ErrNoPart
	}
	if err != nil && err != errStop {
		return err
	}
	return nil
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
