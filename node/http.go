package node

import (
	"encoding/json"
	"net/http"
)

// httpHandler is what the HTTP listener serves: /healthz, which load
// balancers and the CLI poll whatever else the node serves, and the rest
// from Config.Web.
func (n *Node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		n.healthz(w, r)
	})
	if n.cfg.Web != nil {
		mux.Handle("/", n.cfg.Web(n, n.logger))
	}
	return mux
}

// healthz answers 200 when this node can accept mail and 503 with the
// reason when it cannot.
func (n *Node) healthz(w http.ResponseWriter, r *http.Request) {
	st := n.ClusterStatus()
	body := map[string]any{"id": st.ID, "state": st.State, "leader": st.LeaderID, "applied_index": st.AppliedIndex}
	code := http.StatusOK
	if err := n.Healthy(); err != nil {
		body["status"] = "unhealthy"
		body["error"] = err.Error()
		code = http.StatusServiceUnavailable
	} else {
		body["status"] = "ok"
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(body)
}
