package inbox

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

func statusText(code int) string {
	if code == http.StatusNotFound {
		return "Not found"
	}
	return http.StatusText(code)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func timeOf(ns int64) time.Time { return time.Unix(0, ns) }

// fmtTime says when, relative to now for the recent past, as a person
// scanning a list of urgent mail reads it.
func fmtTime(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return t.UTC().Format("2 Jan 15:04 UTC")
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute", "minutes") + " ago"
	case d < 24*time.Hour:
		return plural(int(d/time.Hour), "hour", "hours") + " ago"
	}
	return t.UTC().Format("2 Jan 2006 15:04 UTC")
}

func fmtSize(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%d KB", (n+512)/1024)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

func pageURL(owner, q, before string) string {
	v := url.Values{}
	if q != "" {
		v.Set("q", q)
	}
	if before != "" {
		v.Set("before", before)
	}
	u := mailboxURL(owner)
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	return u
}

func partURL(owner, id string, n int) string {
	return messageURL(owner, id) + "/part/" + strconv.Itoa(n)
}

func orgURL(org string) string { return "/admin/orgs/" + url.PathEscape(org) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
