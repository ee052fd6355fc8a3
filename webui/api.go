// Package webui serves Lifeline over HTTP: the JSON API under /api/v1/,
// /healthz, and the pages people use.
package webui

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"lifeline/cluster"
	"lifeline/cluster/gossip"
	"lifeline/fsm"
	"lifeline/node/backup"
	"lifeline/node/msglog"
	"lifeline/webui/inbox"
)

// Backend is what the web layer needs from its node: read-side queries,
// a write path through Raft, and the node's view of the cluster.
type Backend interface {
	Store() *fsm.Store
	// Apply encodes and commits a command through the cluster.
	Apply(ctx context.Context, cmd any) error
	// The Emergency Inbox's needs: bodies, blobs, sending.
	inbox.Backend
	// The admin console's: destination tests, the log, queue figures.
	inbox.AdminBackend
	ClusterStatus() cluster.Status
	// Healthy is nil when this node can accept mail.
	Healthy() error
	Now() time.Time
	// QueueStats is a recent summary of the spool.
	QueueStats() (fsm.QueueStats, error)
	// Members is the gossip view of the nodes.
	Members() []gossip.Member
	BlobLag() int64
	MetricsHandler() http.Handler
	// TransferLeadership and RemoveServer are the operator's tools for
	// rolling upgrades; they work on the leader only.
	TransferLeadership(to string) error
	RemoveServer(id string) error
	// Snapshot makes this node write a Raft snapshot now and compact its
	// log; it returns how long that took.
	Snapshot() (time.Duration, error)
	// SearchLog searches every node's message log; missing names the
	// nodes that did not answer.
	SearchLog(ctx context.Context, q msglog.Query) (entries []msglog.Entry, missing []string, err error)
	// LogEvent records an event of this node in its message log.
	LogEvent(e msglog.Entry)
	// WriteBackup streams a backup of the replicated state and the message
	// bodies it references (node/backup describes the layout).
	WriteBackup(ctx context.Context, w io.Writer) (backup.Manifest, error)
	// RestoreBackup replaces the whole cluster's state with a backup; it
	// works on the leader only. Without force it refuses to replace a
	// state that holds mail or domains.
	RestoreBackup(ctx context.Context, r io.Reader, force bool) (backup.RestoreReport, error)
}

// Server is the HTTP face of one node.
type Server struct {
	b      Backend
	logger *slog.Logger
	mux    *http.ServeMux
	inbox  *inbox.Server
}

// New builds the handler tree.
func New(b Backend, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{b: b, logger: logger, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /{$}", s.statusPage)
	s.mux.HandleFunc("GET /status", s.statusPage)
	s.mux.HandleFunc("GET /api/v1/status", s.auth(s.apiStatus))
	s.mux.HandleFunc("GET /api/v1/domains", s.auth(s.listDomains))
	s.mux.HandleFunc("POST /api/v1/domains", s.auth(s.addDomain))
	s.mux.HandleFunc("GET /api/v1/domains/{name}", s.auth(s.getDomain))
	s.mux.HandleFunc("PUT /api/v1/domains/{name}", s.auth(s.setDomain))
	s.mux.HandleFunc("DELETE /api/v1/domains/{name}", s.auth(s.removeDomain))
	s.mux.HandleFunc("GET /api/v1/queue", s.auth(s.listQueue))
	s.mux.HandleFunc("GET /api/v1/queue/{id}", s.auth(s.showMessage))
	s.mux.HandleFunc("POST /api/v1/queue/flush", s.auth(s.queueOp(fsm.OpRetry)))
	s.mux.HandleFunc("POST /api/v1/queue/{id}/retry", s.auth(s.queueOp(fsm.OpRetry)))
	s.mux.HandleFunc("POST /api/v1/queue/{id}/hold", s.auth(s.queueOp(fsm.OpHold)))
	s.mux.HandleFunc("POST /api/v1/queue/{id}/release", s.auth(s.queueOp(fsm.OpRelease)))
	s.mux.HandleFunc("DELETE /api/v1/queue/{id}", s.auth(s.queueOp(fsm.OpDelete)))
	s.mux.HandleFunc("POST /api/v1/cluster/transfer-leadership", s.auth(s.onLeader(s.transferLeadership)))
	s.mux.HandleFunc("DELETE /api/v1/cluster/servers/{id}", s.auth(s.onLeader(s.removeServer)))
	s.mux.HandleFunc("POST /api/v1/cluster/snapshot", s.auth(s.snapshot))
	s.mux.HandleFunc("GET /api/v1/log", s.auth(s.searchLog))
	s.mux.HandleFunc("GET /api/v1/log.csv", s.auth(s.exportLog))
	s.mux.HandleFunc("GET /metrics", s.auth(s.b.MetricsHandler().ServeHTTP))
	s.backupRoutes()
	s.mux.HandleFunc("POST /status/signin", s.statusSignIn)
	s.mux.HandleFunc("POST /status/signout", s.statusSignOut)
	s.registerAccounts()
	s.registerConsoleAPI()
	s.inbox = inbox.New(b, inbox.Config{Operator: s.operatorSignIn}, logger)
	s.inbox.Register(s.mux)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint")
	})
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

// maxBody bounds every API request body; none needs more.
const maxBody = 1 << 20

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

// operatorToken reports whether tok is the cluster's operator token.
func (s *Server) operatorToken(tok string) (bool, error) {
	return s.b.Store().IsAdminToken(tok)
}

func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		ok, err := s.operatorToken(tok)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "state store unavailable")
			return
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lifeline"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong operator token")
			return
		}
		next(w, r)
	}
}

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

// DomainRequest is the body of POST /api/v1/domains and PUT .../{name}.
type DomainRequest struct {
	Name        string `json:"name"`
	Destination string `json:"destination,omitempty"`
	Org         string `json:"org,omitempty"`
	// Destinations, when given, replace Destination: several, tried in
	// order of preference.
	Destinations []fsm.Destination `json:"destinations,omitempty"`
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

// ValidDomainName accepts an LDH host name of at least two labels, the
// shape RFC 5321 §2.3.5 allows for a mail domain. It returns the name in
// lower case without a trailing dot.
func ValidDomainName(name string) (string, bool) {
	name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if len(name) == 0 || len(name) > 253 {
		return "", false
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return "", false
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", false
			}
		}
	}
	return name, true
}

// ValidDestination accepts host:port with a port from 1 to 65535.
func ValidDestination(dest string) bool {
	host, port, err := net.SplitHostPort(dest)
	if err != nil || host == "" || strings.ContainsAny(host, " /\\@") {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p > 0 && p < 65536
}

func (s *Server) putDomain(w http.ResponseWriter, r *http.Request, req DomainRequest, create bool) {
	name, ok := ValidDomainName(req.Name)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid domain name: "+strconv.Quote(req.Name))
		return
	}
	if len(req.Destinations) == 0 && !ValidDestination(req.Destination) {
		writeError(w, http.StatusBadRequest, "destination must be host:port, got "+strconv.Quote(req.Destination))
		return
	}
	for _, d := range req.Destinations {
		if !ValidDestination(d.Addr) {
			writeError(w, http.StatusBadRequest, "destination must be host:port, got "+strconv.Quote(d.Addr))
			return
		}
	}
	prev, exists, err := s.b.Store().Domain(name)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if create && exists {
		writeError(w, http.StatusConflict, "domain already exists: "+name)
		return
	}
	if !create && !exists {
		writeError(w, http.StatusNotFound, "no such domain: "+name)
		return
	}
	if !create && req.Org == "" {
		// A change of destination keeps the domain's organisation.
		req.Org = prev.Org
	}
	// One destination travels in the command older releases know, so a
	// cluster in the middle of an upgrade can still change it.
	var cmd any = &fsm.DomainPut{Name: name, Destination: req.Destination, Org: req.Org, At: s.b.Now().UnixNano()}
	dests := req.Destination
	if len(req.Destinations) > 0 {
		cmd = &fsm.DomainSet{Name: name, Org: req.Org, Destinations: req.Destinations, Create: create, At: s.b.Now().UnixNano()}
		var a []string
		for _, d := range req.Destinations {
			a = append(a, d.Addr)
		}
		dests = strings.Join(a, ", ")
	}
	kind := inbox.AuditDomainSet
	if create {
		kind = inbox.AuditDomainAdd
	}
	if !s.applyAudited(w, r, cmd, kind, req.Org, name, dests) {
		return
	}
	d, _, _ := s.b.Store().Domain(name)
	code := http.StatusOK
	if create {
		code = http.StatusCreated
	}
	writeJSON(w, code, d)
}

// apply commits a command and answers the failure itself. It returns once
// this node's state shows the commit, so a handler that reads back what it
// wrote (the domain just added, on a follower) sees it.
func (s *Server) apply(w http.ResponseWriter, r *http.Request, cmd any) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	err := s.b.ApplyVisible(ctx, cmd)
	if err == nil {
		return true
	}
	var ve *fsm.ValidationError
	var ue *cluster.UpgradeRequiredError
	switch {
	case errors.As(err, &ve):
		writeError(w, http.StatusBadRequest, ve.Msg)
	case errors.As(err, &ue):
		// Not a fault of the cluster and not worth retrying in a second:
		// the change waits for the rolling upgrade to finish.
		writeError(w, http.StatusConflict, "not available until the rolling upgrade completes: "+ue.Error())
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrTimeout), errors.Is(err, cluster.ErrUnknown):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "cluster cannot commit now: "+err.Error())
	default:
		s.logger.Error("apply failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "cannot commit: "+err.Error())
	}
	return false
}

func (s *Server) addDomain(w http.ResponseWriter, r *http.Request) {
	var req DomainRequest
	if decodeBody(w, r, &req) {
		s.putDomain(w, r, req, true)
	}
}

func (s *Server) setDomain(w http.ResponseWriter, r *http.Request) {
	var req DomainRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Name != "" && !strings.EqualFold(strings.TrimSuffix(req.Name, "."), r.PathValue("name")) {
		writeError(w, http.StatusBadRequest, "name in body does not match the URL")
		return
	}
	req.Name = r.PathValue("name")
	s.putDomain(w, r, req, false)
}

func (s *Server) getDomain(w http.ResponseWriter, r *http.Request) {
	name, ok := ValidDomainName(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid domain name")
		return
	}
	d, exists, err := s.b.Store().Domain(name)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if !exists {
		writeError(w, http.StatusNotFound, "no such domain: "+name)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) removeDomain(w http.ResponseWriter, r *http.Request) {
	name, ok := ValidDomainName(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid domain name")
		return
	}
	d, exists, _ := s.b.Store().Domain(name)
	if !exists {
		writeError(w, http.StatusNotFound, "no such domain: "+name)
		return
	}
	if s.applyAudited(w, r, &fsm.DomainRemove{Name: name}, inbox.AuditDomainRemove, d.Org, name, "") {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) listDomains(w http.ResponseWriter, r *http.Request) {
	ds, err := s.b.Store().Domains()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if ds == nil {
		ds = []fsm.Domain{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"domains": ds})
}
