package inbox

import (
	"net/url"
	"strconv"

	"lifeline/webui/page"
)

func pageURL(owner, q, before string) string {
	v := url.Values{}
	if q != "" {
		v.Set("q", q)
	}
	if before != "" {
		v.Set("before", before)
	}
	u := page.MailboxURL(owner)
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	return u
}

func partURL(owner, id string, n int) string {
	return messageURL(owner, id) + "/part/" + strconv.Itoa(n)
}
