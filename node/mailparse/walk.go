package mailparse

import (
	"bytes"
	"io"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// maxDepth bounds how deeply parts nest; a multipart or a message deeper
// than that is kept as one opaque part, so hostile nesting costs nothing.
const maxDepth = 32

// maxParts bounds the leaves of one message that are kept; the rest are
// read past.
const maxParts = 2000

// node is one entity of a message's MIME tree.
type node struct {
	typ      string            // media type, lower case (RFC 2045 §5.1)
	params   map[string]string // its parameters
	disp     string            // Content-Disposition (RFC 2183), lower case
	filename string
	cid      string
	children []*node
	msg      *textproto.Header // the header of an enclosed message (RFC 2046 §5.2.1)
	part     int               // leaf index, -1 for a container or a leaf past maxParts
	raw      bool              // structure could not be recovered: the text as it arrived
	text     []byte            // a shown leaf's body, decoded, up to its share of MaxInline
	size     int64             // a leaf's decoded size
	// truncated is set when text was cut at its share of MaxInline.
	truncated bool
}

// isTextual says whether the reading view can show n as text or HTML.
// RFC 2046 §4.1.4: an unknown subtype of text is shown as text/plain; the
// delivery reports of RFC 3464 §2.1 and RFC 8098 §3.1 are lines of text
// too, and mail clients show them so.
func (n *node) isTextual() bool {
	if n.raw || strings.HasPrefix(n.typ, "text/") {
		return true
	}
	switch n.typ {
	case "message/delivery-status", "message/global-delivery-status", "message/disposition-notification", "message/global-disposition-notification":
		return true
	}
	return false
}

// shownInline says whether a textual leaf is shown in the message rather
// than only offered as a download: unless it is marked as an attachment
// (RFC 2183 §2.2), an inline part with a file name included.
func (n *node) shownInline() bool { return n.isTextual() && n.disp != "attachment" }

// isMessageType says whether t is an enclosed message the reading view
// opens (RFC 2046 §5.2.1; message/global, RFC 6532 §3.5).
func isMessageType(t string) bool { return t == "message/rfc822" || t == "message/global" }

// isToken says whether s is an RFC 2045 §5.1 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// newNode reads what the header says about an entity. A Content-Type
// that is missing or cannot be read is the default (RFC 2045 §5.2:
// text/plain; RFC 2046 §5.1.5: message/rfc822 in a digest), keeping its
// parameters: "Content-Type: text; charset=us-ascii" is plain text.
func newNode(h textproto.Header, defType string) *node {
	n := &node{part: -1}
	n.typ, n.params = parseMediaValue(h.Get("Content-Type"))
	if t, sub, ok := strings.Cut(n.typ, "/"); !ok || !isToken(t) || !isToken(sub) {
		n.typ = defType
	}
	disp, dparams := parseMediaValue(h.Get("Content-Disposition"))
	n.disp = disp
	// RFC 2183 §2.3 names the file; "name" of the Content-Type is the
	// older form (RFC 1341) that mailers still write.
	name := dparams["filename"]
	if name == "" {
		name = n.params["name"]
	}
	n.filename = strings.TrimSpace(cleanText(decodeWords(name)))
	n.cid = strings.Trim(cleanText(h.Get("Content-Id")), "<> ")
	return n
}

// walk reads a message into a tree of nodes, handing each leaf's decoded
// body to leaf as it passes. It recovers what structure it can: a header
// that runs into its body, parts whose header has no blank line after
// it, nested multiparts that share a boundary (the innermost claims it, as
// Python's email package does), a missing close delimiter. A multipart
// whose boundary is missing or never appears becomes a raw leaf: its text
// as it arrived.
type walk struct {
	leaf  func(n *node, body io.Reader) error
	parts int
	err   error // returned by leaf: the walk stops
}

func (w *walk) entity(lr *lineReader, h textproto.Header, defType string, depth int, bounds []string) *node {
	n := newNode(h, defType)
	switch {
	case w.err != nil:
	case strings.HasPrefix(n.typ, "multipart/") && depth < maxDepth:
		if b := n.params["boundary"]; b != "" {
			w.multipart(lr, n, b, depth, bounds)
		} else {
			// RFC 2046 §5.1.1 requires the boundary: without one the
			// parts cannot be told apart.
			body, trunc := readCapped(&bodyReader{lr: lr, bounds: bounds}, MaxInline)
			w.raw(n, body, trunc)
		}
	case isMessageType(n.typ) && depth < maxDepth:
		enc := h.Get("Content-Transfer-Encoding")
		inner, innerBounds := lr, bounds
		var body *bodyReader
		if !isIdentityEncoding(enc) {
			// RFC 2046 §5.2.1 allows only 7bit, 8bit and binary here;
			// an enclosed message encoded anyway is decoded and read.
			body = &bodyReader{lr: lr, bounds: bounds}
			inner, innerBounds = newLineReader(transferDecoder(enc, body)), nil
		}
		eh := readHeader(inner, innerBounds)
		n.msg = &eh
		n.children = []*node{w.entity(inner, eh, "text/plain", depth+1, innerBounds)}
		if body != nil && w.err == nil {
			io.Copy(io.Discard, body)
		}
	default:
		body := &bodyReader{lr: lr, bounds: bounds}
		w.deliver(n, transferDecoder(h.Get("Content-Transfer-Encoding"), body))
		if w.err == nil {
			io.Copy(io.Discard, body)
		}
	}
	return n
}

// multipart reads the parts of n (RFC 2046 §5.1.1), whose boundary is b,
// inside the enclosing bounds.
func (w *walk) multipart(lr *lineReader, n *node, b string, depth int, bounds []string) {
	inner := append([]string{b}, bounds...)
	// The preamble is not shown (RFC 2046 §5.1.1), but it is kept, up to
	// MaxInline, in case the boundary never comes and it is all there is.
	var pre []byte
	trunc := false
	for {
		line, start, ok := lr.peek()
		if !ok {
			w.raw(n, pre, trunc)
			return
		}
		if start {
			if i, closing := matchDelimiter(line, inner); i == 0 {
				lr.next()
				if closing {
					w.epilogue(lr, bounds)
					return
				}
				break
			} else if i > 0 {
				// An enclosing boundary came first.
				w.raw(n, pre, trunc)
				return
			}
		}
		if len(pre)+len(line) <= MaxInline {
			pre = append(pre, line...)
		} else {
			trunc = true
		}
		lr.next()
	}
	defType := "text/plain"
	if n.typ == "multipart/digest" {
		defType = "message/rfc822" // RFC 2046 §5.1.5
	}
	for w.err == nil {
		ph := readHeader(lr, inner)
		n.children = append(n.children, w.entity(lr, ph, defType, depth+1, inner))
		line, _, ok := lr.peek()
		if !ok || w.err != nil {
			return // the close delimiter is missing: the parts read are kept
		}
		i, closing := matchDelimiter(line, inner)
		if i != 0 {
			return // an enclosing multipart goes on: this one ended unclosed
		}
		lr.next()
		if closing {
			w.epilogue(lr, bounds)
			return
		}
	}
}

// epilogue reads past what follows a close delimiter, up to the next
// delimiter of an enclosing multipart.
func (w *walk) epilogue(lr *lineReader, bounds []string) {
	io.Copy(io.Discard, &bodyReader{lr: lr, bounds: bounds})
}

// raw makes n a leaf of plain text that holds body as it arrived.
func (w *walk) raw(n *node, body []byte, truncated bool) {
	n.typ, n.raw = "text/plain", true
	n.params = map[string]string{}
	n.truncated = truncated
	w.deliver(n, bytes.NewReader(body))
}

// deliver numbers leaf n and hands its body to the walk's leaf function.
func (w *walk) deliver(n *node, body io.Reader) {
	if w.parts >= maxParts {
		io.Copy(io.Discard, body)
		return
	}
	n.part = w.parts
	w.parts++
	c := &countingReader{r: body}
	if w.leaf != nil {
		if err := w.leaf(n, c); err != nil {
			w.err = err
			return
		}
	}
	io.Copy(io.Discard, c)
	n.size = c.n
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readCapped reads r to its end and keeps the first max bytes; truncated
// says that there was more.
func readCapped(r io.Reader, max int) ([]byte, bool) {
	b, _ := io.ReadAll(io.LimitReader(r, int64(max)))
	rest, _ := io.Copy(io.Discard, r)
	return b, rest > 0
}

// leaves lists the numbered leaves under n in order.
func leaves(n *node, out []Part) []Part {
	if n.part >= 0 {
		out = append(out, n.describe())
	}
	for _, c := range n.children {
		out = leaves(c, out)
	}
	return out
}

func (n *node) describe() Part {
	return Part{Index: n.part, ContentType: n.typ, Filename: n.filename, ContentID: n.cid, Disposition: n.disp, Size: max(n.size, 0),
		textual: n.shownInline(), raw: n.raw}
}
