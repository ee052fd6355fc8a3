package webui

import (
	"net/http"
	"net/url"
	"sort"
	"time"

	"lifeline/cluster/gossip"
)

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedDomains(m map[string]int64) []string {
	var ds []string
	for d := range m {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	return ds
}

// securePage sets the headers every HTML page carries: no framing, no
// script, nothing loaded from elsewhere.
func securePage(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

const operatorCookie = "lifeline_operator"

func (s *Server) isOperator(r *http.Request) bool {
	c, err := r.Cookie(operatorCookie)
	if err != nil {
		return false
	}
	ok, _ := s.operatorToken(c.Value)
	return ok
}

// sameOrigin refuses form posts from other sites. The cookie is
// SameSite=Strict as well; this covers browsers that ignore that.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (s *Server) statusSignIn(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site form post refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	tok := r.PostFormValue("token")
	ok, err := s.operatorToken(tok)
	if err != nil {
		http.Error(w, "state store unavailable", http.StatusServiceUnavailable)
		return
	}
	if !ok {
		http.Error(w, "wrong operator token", http.StatusUnauthorized)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: operatorCookie, Value: tok, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: 8 * 3600})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) statusSignOut(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site form post refused", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: operatorCookie, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) nodeRows() []NodeRow {
	st := s.b.ClusterStatus()
	members := map[string]gossip.Member{}
	for _, m := range s.b.Members() {
		members[m.Name] = m
	}
	var rows []NodeRow
	for _, sv := range st.Servers {
		row := NodeRow{ID: sv.ID, RaftAddr: sv.Address, Suffrage: sv.Suffrage, Role: "follower", Health: "unknown", LastContact: "-"}
		if sv.Leader {
			row.Role = "leader"
		}
		if m, ok := members[sv.ID]; ok {
			row.HTTPAddr = m.Meta.HTTPAddr
			row.Health = m.State.String()
			row.Healthy = m.State == gossip.StateAlive
		}
		if sv.Self {
			row.Health, row.Healthy = "this node", s.b.Healthy() == nil
			if !sv.Leader && !st.LastContact.IsZero() {
				row.LastContact = s.b.Now().Sub(st.LastContact).Round(time.Millisecond).String() + " ago"
			}
		}
		rows = append(rows, row)
		delete(members, sv.ID)
	}
	// Gossip members not (yet) in Raft: a node waiting to be added.
	for _, m := range members {
		rows = append(rows, NodeRow{ID: m.Name, RaftAddr: m.Meta.RaftAddr, HTTPAddr: m.Meta.HTTPAddr, Role: "not a member", Suffrage: "-",
			Health: m.State.String(), Healthy: m.State == gossip.StateAlive, LastContact: "-"})
	}
	return rows
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	q, err := s.b.QueueStats()
	if err != nil {
		http.Error(w, "state store unavailable", http.StatusServiceUnavailable)
		return
	}
	problem := ""
	if err := s.b.Healthy(); err != nil {
		problem = err.Error()
	}
	securePage(w)
	statusPage(s.b.ClusterStatus(), s.nodeRows(), q, problem, s.isOperator(r), s.b.BlobLag(), s.b.Now()).Render(r.Context(), w)
}
