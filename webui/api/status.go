package api

import (
	"net/http"

	"lifeline/cluster"
	"lifeline/cluster/gossip"
	"lifeline/fsm"
)

// StatusReport is the body of GET /api/v1/status.
type StatusReport struct {
	Cluster cluster.Status  `json:"cluster"`
	Queue   fsm.QueueStats  `json:"queue"`
	Healthy bool            `json:"healthy"`
	Problem string          `json:"problem,omitempty"`
	Members []gossip.Member `json:"members"`
	// BlobLag counts spooled messages whose body this node lacks.
	BlobLag int64 `json:"blob_lag"`
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	rep := StatusReport{Cluster: s.b.ClusterStatus(), Healthy: true}
	if err := s.b.Healthy(); err != nil {
		rep.Healthy = false
		rep.Problem = err.Error()
	}
	q, err := s.b.QueueStats()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	rep.Queue = q
	rep.Members = s.b.Members()
	rep.BlobLag = s.b.BlobLag()
	writeJSON(w, http.StatusOK, rep)
}
