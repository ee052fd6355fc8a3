// Package status serves the cluster status page: every node as Raft and
// gossip see it, the spool, and whether this node takes mail. Anyone may
// see the summary; the operator, signed in with the operator token, also
// sees the spool per domain.
package status

import (
	"net/http"
	"sort"
	"time"

	"lifeline/cluster"
	"lifeline/cluster/gossip"
	"lifeline/fsm"
	"lifeline/webui/session"
)

// Backend is what the status page needs from its node.
type Backend interface {
	ClusterStatus() cluster.Status
	// Members is the gossip view of the nodes.
	Members() []gossip.Member
	// Healthy is nil when this node can accept mail.
	Healthy() error
	Now() time.Time
	// QueueStats is a recent summary of the spool.
	QueueStats() (fsm.QueueStats, error)
	// BlobLag counts spooled messages whose body this node lacks.
	BlobLag() int64
}

// Server is the status page of one node.
type Server struct {
	b        Backend
	sessions *session.Manager
}

// New returns the status page over b; sessions tell the operator apart.
func New(b Backend, sessions *session.Manager) *Server {
	return &Server{b: b, sessions: sessions}
}

// Register adds the status page's routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.statusPage)
	mux.HandleFunc("GET /status", s.statusPage)
}

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
	_, isOp := s.sessions.OperatorSignedIn(r)
	securePage(w)
	statusPage(s.b.ClusterStatus(), s.nodeRows(), q, problem, isOp, s.b.BlobLag(), s.b.Now()).Render(r.Context(), w)
}
