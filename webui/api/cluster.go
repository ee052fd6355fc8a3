package api

import (
	"errors"
	"net"
	"net/http"

	"lifeline/cluster"
)

// onLeader runs a Raft membership action on the leader: a follower
// redirects the request there (307 keeps the method and body), since only
// the leader can change the configuration.
func (s *Server) onLeader(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st := s.b.ClusterStatus()
		if st.State == "Leader" {
			next(w, r)
			return
		}
		if st.LeaderID == "" {
			writeError(w, http.StatusServiceUnavailable, "the cluster has no leader")
			return
		}
		for _, m := range s.b.Members() {
			if m.Name == st.LeaderID && m.Meta.HTTPAddr != "" {
				if _, _, err := net.SplitHostPort(m.Meta.HTTPAddr); err != nil {
					break
				}
				u := *r.URL
				u.Scheme, u.Host = "http", m.Meta.HTTPAddr
				if r.TLS != nil {
					u.Scheme = "https"
				}
				http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
				return
			}
		}
		writeError(w, http.StatusServiceUnavailable, "the leader's web address is not known yet")
	}
}

type transferRequest struct {
	To string `json:"to,omitempty"`
}

func (s *Server) transferLeadership(w http.ResponseWriter, r *http.Request) {
	var req transferRequest
	if r.ContentLength != 0 && !decodeBody(w, r, &req) {
		return
	}
	if req.To != "" && !s.isServer(req.To) {
		writeError(w, http.StatusNotFound, "no such server: "+req.To)
		return
	}
	if err := s.b.TransferLeadership(req.To); err != nil {
		writeError(w, http.StatusConflict, "leadership transfer failed: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "leadership transferred"})
}

func (s *Server) removeServer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.isServer(id) {
		writeError(w, http.StatusNotFound, "no such server: "+id)
		return
	}
	if id == s.b.ClusterStatus().ID {
		writeError(w, http.StatusConflict, "the leader cannot remove itself: transfer leadership first")
		return
	}
	if err := s.b.RemoveServer(id); err != nil {
		status := http.StatusConflict
		if errors.Is(err, cluster.ErrNoLeader) {
			status = http.StatusServiceUnavailable
		}
		writeError(w, status, "removing the server failed: "+err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) isServer(id string) bool {
	for _, sv := range s.b.ClusterStatus().Servers {
		if sv.ID == id {
			return true
		}
	}
	return false
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	d, err := s.b.Snapshot()
	if err != nil {
		writeError(w, http.StatusConflict, "snapshot failed: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "snapshot written", "seconds": d.Seconds()})
}
