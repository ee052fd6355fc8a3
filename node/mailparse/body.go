package mailparse

import (
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"golang.org/x/net/html"
)

// SectionKind says what a section of the reading view holds.
type SectionKind int

const (
	// SectionText is text, shown as it is.
	SectionText SectionKind = iota
	// SectionHTML is HTML, sanitised and shown in a sandboxed frame.
	SectionHTML
	// SectionMessage is the header of an enclosed message (RFC 2046
	// §5.2.1); the sections after it are its body.
	SectionMessage
)

// Section is one piece of what the reading view shows, in order.
type Section struct {
	Kind SectionKind
	// Part is the leaf index of a text or HTML section, -1 for a header.
	Part int
	// Text is the text of a text section, or the plain text alternative
	// of an HTML section when the message has one.
	Text string
	HTML string
	// Raw is set on text that could not be read as MIME: it is shown as
	// it arrived.
	Raw bool
	// Header is the enclosed message's header of a SectionMessage.
	Header *Enclosed
}

// IsText, IsHTML and IsMessage say what the section is.
func (s *Section) IsText() bool    { return s.Kind == SectionText }
func (s *Section) IsHTML() bool    { return s.Kind == SectionHTML }
func (s *Section) IsMessage() bool { return s.Kind == SectionMessage }

// Enclosed is what the reading view shows of an enclosed message's header.
type Enclosed struct {
	From, To, Cc, Subject string
	Date                  time.Time
}

func enclosed(h *textproto.Header) *Enclosed {
	mh := mail.Header{Header: message.Header{Header: *h}}
	e := &Enclosed{}
	e.From, _, _ = addresses(&mh, "From")
	e.To, _, _ = addresses(&mh, "To")
	e.Cc, _, _ = addresses(&mh, "Cc")
	e.Subject = subjectOf(&mh)
	e.Date, _ = mh.Date()
	return e
}

// hasContent says whether sections show anything at all.
func hasContent(ss []Section) bool {
	for _, s := range ss {
		if s.Kind == SectionMessage || strings.TrimSpace(s.Text) != "" || strings.TrimSpace(s.HTML) != "" {
			return true
		}
	}
	return false
}

// sections picks what the reading view shows of n, the way mail clients
// do.
func sections(n *node) []Section {
	switch {
	case n.raw:
		if len(n.text) == 0 {
			return nil
		}
		return []Section{{Kind: SectionText, Part: n.part, Text: normalizeText(n), Raw: true}}
	case n.msg != nil:
		out := []Section{{Kind: SectionMessage, Part: -1, Header: enclosed(n.msg)}}
		for _, c := range n.children {
			out = append(out, sections(c)...)
		}
		return out
	case strings.HasPrefix(n.typ, "multipart/"):
		return multipartSections(n)
	case n.part < 0 || !n.shownInline() || strings.TrimSpace(string(n.text)) == "":
		return nil
	case n.typ == "text/html":
		return []Section{{Kind: SectionHTML, Part: n.part, HTML: toUTF8(n.params["charset"], n.text)}}
	}
	return []Section{{Kind: SectionText, Part: n.part, Text: normalizeText(n)}}
}

func multipartSections(n *node) []Section {
	if len(n.children) == 0 {
		return nil
	}
	switch n.typ {
	case "multipart/alternative":
		// RFC 2046 §5.1.4: the alternatives come in increasing
		// faithfulness to the original, and a reader shows the last one
		// it can. An HTML choice keeps an earlier plain text alternative
		// for those who prefer it, and for quoting in a reply.
		for i := len(n.children) - 1; i >= 0; i-- {
			chosen := sections(n.children[i])
			if !hasContent(chosen) {
				continue
			}
			for k := range chosen {
				if chosen[k].Kind != SectionHTML {
					continue
				}
				for j := i - 1; j >= 0 && chosen[k].Text == ""; j-- {
					if t, ok := plainOnly(sections(n.children[j])); ok {
						chosen[k].Text = t
					}
				}
				break
			}
			return chosen
		}
		return nil
	case "multipart/related":
		// RFC 2387 §3.2: the root is the part the start parameter names,
		// by default the first; the others are what it refers to.
		root := n.children[0]
		if start := strings.Trim(n.params["start"], "<> "); start != "" {
			for _, c := range n.children {
				if c.cid == start {
					root = c
				}
			}
		}
		return sections(root)
	case "multipart/signed":
		// RFC 1847 §2.1: the first part is the content, the second the
		// signature.
		return sections(n.children[0])
	case "multipart/encrypted":
		// RFC 1847 §2.2: nothing here can be read without the key.
		return nil
	}
	// multipart/mixed, digest, report and any unknown subtype (RFC 2046
	// §5.1.3, §5.1.7): every part in order.
	var out []Section
	for _, c := range n.children {
		out = append(out, sections(c)...)
	}
	return out
}

// plainOnly joins sections that are all plain text.
func plainOnly(ss []Section) (string, bool) {
	var b []string
	for _, s := range ss {
		if s.Kind != SectionText || s.Raw {
			return "", false
		}
		b = append(b, s.Text)
	}
	return strings.Join(b, "\n"), len(b) > 0
}

// normalizeText decodes a text leaf and gives it LF line endings, without
// the blank lines around it (the indentation of its first line stays).
func normalizeText(n *node) string {
	t := strings.ReplaceAll(toUTF8(n.params["charset"], n.text), "\r\n", "\n")
	t = strings.TrimRight(t, " \t\r\n")
	for {
		line, rest, ok := strings.Cut(t, "\n")
		if !ok || strings.TrimSpace(line) != "" {
			break
		}
		t = rest
	}
	if t == "" {
		return ""
	}
	return t + "\n"
}

// plainText is what a message says as plain text: the text sections, the
// plain alternative of an HTML section or else its text, and a header
// line block for each enclosed message. Search reads it, and replies and
// forwards quote it.
func plainText(ss []Section) string {
	var b strings.Builder
	for _, s := range ss {
		var t string
		switch s.Kind {
		case SectionText:
			t = s.Text
		case SectionHTML:
			t = s.Text
			if t == "" {
				t = HTMLText(s.HTML)
			}
		case SectionMessage:
			var hb strings.Builder
			hb.WriteString("---------- Enclosed message ----------\n")
			for _, f := range [][2]string{{"From", s.Header.From}, {"Date", dateText(s.Header.Date)}, {"Subject", s.Header.Subject}, {"To", s.Header.To}, {"Cc", s.Header.Cc}} {
				if f[1] != "" {
					hb.WriteString(f[0] + ": " + f[1] + "\n")
				}
			}
			t = hb.String()
		}
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n\n") {
			b.WriteString("\n")
		}
		b.WriteString(t)
		if !strings.HasSuffix(t, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

func dateText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC1123Z)
}

// HTMLText renders HTML as plain text for quoting and search: the text of
// the document with a line break for each block, nothing of scripts,
// styles or the head, and white space collapsed as a browser would
// outside <pre>.
func HTMLText(src string) string {
	z := html.NewTokenizer(strings.NewReader(src))
	var b strings.Builder
	skip, pre := 0, 0
	lineStart, gap := true, false
	newline := func() {
		if s := b.String(); s != "" && !strings.HasSuffix(s, "\n\n") {
			b.WriteString("\n")
		}
		lineStart, gap = true, false
	}
	for b.Len() < MaxInline {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return strings.TrimSpace(b.String()) + "\n"
		case html.StartTagToken, html.EndTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			tag := string(name)
			opening := tt != html.EndTagToken
			switch tag {
			case "script", "style", "head", "title", "template", "noscript":
				if tt == html.StartTagToken {
					skip++
				} else if tt == html.EndTagToken && skip > 0 {
					skip--
				}
				continue
			case "pre":
				if opening {
					pre++
				} else if pre > 0 {
					pre--
				}
			}
			switch tag {
			case "br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "hr", "dd", "dt", "section", "article", "header", "footer":
				newline()
			case "td", "th":
				gap = true
			}
		case html.TextToken:
			if skip > 0 {
				continue
			}
			for _, r := range string(z.Text()) {
				switch {
				case pre > 0:
					b.WriteRune(r)
					lineStart = r == '\n'
				case r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f':
					gap = true
				default:
					if gap && !lineStart {
						b.WriteByte(' ')
					}
					b.WriteRune(r)
					lineStart, gap = false, false
				}
			}
		}
	}
	return strings.TrimSpace(b.String()) + "\n"
}
