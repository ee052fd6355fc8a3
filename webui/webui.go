// Package webui assembles what a node serves over HTTP (besides /healthz,
// which the node answers itself) into one handler: the cluster status
// page (webui/status), the Emergency Inbox (webui/inbox), the
// organisation console (webui/console), the sign-in pages (webui/session)
// and the JSON API (webui/api). Each surface declares what it needs of
// the node; Backend is all of it, and *node.Node is one.
package webui

import (
	"log/slog"
	"net/http"

	"lifeline/webui/api"
	"lifeline/webui/console"
	"lifeline/webui/inbox"
	"lifeline/webui/session"
	"lifeline/webui/status"
)

// Backend is what the web side needs from its node.
type Backend interface {
	api.Backend
	inbox.Backend
	console.Backend
	status.Backend
	session.Backend
}

// Server is the HTTP face of one node.
type Server struct {
	mux *http.ServeMux
}

// New builds the handler tree over b.
func New(b Backend, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{mux: http.NewServeMux()}
	sessions := session.New(b, session.Config{}, logger)
	sessions.Register(s.mux)
	status.New(b, sessions).Register(s.mux)
	inbox.New(b, sessions, inbox.Config{}, logger).Register(s.mux)
	console.New(b, sessions, console.Config{}, logger).Register(s.mux)
	api.New(b, logger).Register(s.mux)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}
