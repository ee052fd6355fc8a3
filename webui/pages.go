package webui

import "net/http"

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// securePage sets the headers every HTML page carries: no framing, no
// inline script, nothing loaded from elsewhere.
func securePage(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	q, err := s.b.Store().Stats()
	if err != nil {
		http.Error(w, "state store unavailable", http.StatusServiceUnavailable)
		return
	}
	problem := ""
	if err := s.b.Healthy(); err != nil {
		problem = err.Error()
	}
	securePage(w)
	statusPage(s.b.ClusterStatus(), q, problem).Render(r.Context(), w)
}
