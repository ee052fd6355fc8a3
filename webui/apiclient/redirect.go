package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// checkRedirect decides where the operator token may follow a redirect.
//
// A follower answers what only the leader can do (membership changes, a
// restore) with a 307 to the same path on the leader's web address, as the
// leader announced it through gossip (webui's onLeader): another host:port
// by design, so the token has to go along. Anywhere else it must not: a
// proxy, a captive portal or a mistyped --server that redirects would hand
// the cluster's operator token, and the request's body, to a stranger.
// Go's own rule does not protect it: net/http compares host names only, so
// it forwards the token to any port of the same host and from https to
// plain http.
//
// So with a token on the request, a redirect is followed only when both
// hold:
//   - it does not go from https to http (the token would cross the
//     network in the clear);
//   - it goes to the host:port the client was configured for, or to one
//     that the configured node announces as a node's web address in GET
//     /api/v1/status (asked only when a redirect leaves the configured
//     host, which is rare: a membership change or a restore on a
//     follower).
//
// Any other redirect fails instead of being followed without the token: a
// 307 would still carry the body (a backup, a password) to the stranger,
// and the node there would refuse the request anyway.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("too many redirects")
	}
	auth := via[0].Header.Get("Authorization")
	if auth == "" {
		return nil
	}
	req.Header.Del("Authorization")
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refusing to follow a redirect from https to %s with the operator token", req.URL.Redacted())
	}
	base, err := url.Parse(c.BaseURL)
	if err != nil {
		return err
	}
	target := hostPort(req.URL)
	if target != hostPort(base) || req.URL.Scheme != base.Scheme {
		announced, err := c.announcedHosts(req.Context(), base, auth)
		if err != nil {
			return fmt.Errorf("redirected to %s; cannot tell whether it is a node of this cluster: %w", req.URL.Host, err)
		}
		if !announced[target] {
			return fmt.Errorf("refusing to follow a redirect to %s with the operator token: %s announces no node there", req.URL.Host, base.Host)
		}
	}
	req.Header.Set("Authorization", auth)
	return nil
}

// announcedHosts asks the configured node for the web addresses of the
// cluster's nodes. The lookup follows no redirect itself.
func (c *Client) announcedHosts(ctx context.Context, base *url.URL, auth string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.JoinPath("/api/v1/status").String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", auth)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if c.HTTP != nil {
		hc.Transport = c.HTTP.Transport
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status: %s", resp.Status)
	}
	// Only the members' addresses are read, so the shape of the rest of
	// the status report does not matter here.
	var st struct {
		Members []struct {
			Meta struct {
				HTTPAddr string
			}
		} `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	hosts := map[string]bool{}
	for _, m := range st.Members {
		if h, p, err := net.SplitHostPort(m.Meta.HTTPAddr); err == nil {
			hosts[strings.ToLower(net.JoinHostPort(h, p))] = true
		}
	}
	return hosts, nil
}

// hostPort is u's host:port, with the scheme's port when u names none, so
// that http://node and http://node:80 compare equal.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return strings.ToLower(net.JoinHostPort(u.Hostname(), port))
}
