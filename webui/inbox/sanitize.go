package inbox

import (
	"net/url"
	"regexp"

	"github.com/microcosm-cc/bluemonday"
)

// sanitizers hold the two HTML policies of the reading view: one that
// blocks remote images (the default: a remote image tells the sender the
// mail was read and from where) and one for when the user asks for them.
// Policies are built once and are safe for concurrent use.
type sanitizers struct {
	blocking *bluemonday.Policy
	remote   *bluemonday.Policy
}

// cssValue admits the values of the allowed properties: words, numbers
// with units, colours, commas and spaces. No url(), no expression(), no
// escapes, so CSS can neither fetch nor run anything.
var cssValue = regexp.MustCompile(`^[a-zA-Z0-9 #%.,\-]{0,200}$`)

// cssProperties is the CSS allow-list: layout and typography that mail
// relies on to be readable; nothing positional that could draw over the
// page around the frame, nothing that loads a resource.
var cssProperties = []string{
	"color", "background-color", "font-family", "font-size", "font-style", "font-weight",
	"text-align", "text-decoration", "line-height", "vertical-align", "white-space",
	"margin", "margin-top", "margin-bottom", "margin-left", "margin-right",
	"padding", "padding-top", "padding-bottom", "padding-left", "padding-right",
	"border", "border-top", "border-bottom", "border-left", "border-right", "border-collapse", "border-color", "border-width", "border-style", "border-radius",
	"width", "max-width", "min-width", "height", "display", "list-style-type",
}

func newPolicy(allowRemote bool) *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.AllowStyles(cssProperties...).Matching(cssValue).Globally()
	p.AllowAttrs("align", "valign", "bgcolor", "color", "width", "height", "cellpadding", "cellspacing", "border").Globally()
	p.AllowElements("font", "center")
	p.AllowAttrs("face", "size").OnElements("font")
	p.AllowURLSchemes("http", "https", "mailto", "cid")
	p.RequireParseableURLs(true)
	p.AllowRelativeURLs(false)
	// Links open outside the frame, without telling the site where from.
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.RequireNoReferrerOnLinks(true)
	p.RequireNoFollowOnLinks(true)
	p.RewriteSrc(func(u *url.URL) {
		switch {
		case u.Scheme == "cid":
			// An image from the message itself, served by us beside
			// the frame: "cid/ID" is relative to the frame's URL.
			*u = url.URL{Path: "cid/" + url.PathEscape(u.Opaque)}
		case allowRemote && (u.Scheme == "https" || u.Scheme == "http"):
		default:
			// about:blank loads nothing, and the frame's CSP would
			// refuse a remote image anyway.
			*u = url.URL{Scheme: "about", Opaque: "blank"}
		}
	})
	return p
}

func newSanitizers() *sanitizers {
	return &sanitizers{blocking: newPolicy(false), remote: newPolicy(true)}
}

// hasRemoteImages reports whether html refers to images outside the
// message, so the reading view offers to load them.
var remoteImg = regexp.MustCompile(`(?i)<img[^>]+src\s*=\s*["']?\s*https?:`)
