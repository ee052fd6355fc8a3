// Package api serves the JSON API under /api/v1/, the operator's: every
// request carries the operator token as a bearer token. It covers the
// cluster (status, leadership, snapshots, backups), domains and their
// destinations, organisations and their users, alerts, the queue, the
// message log and the audit log, and the Prometheus metrics.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"lifeline/cluster"
	"lifeline/cluster/gossip"
	"lifeline/fsm"
	"lifeline/node"
	"lifeline/node/backup"
	"lifeline/node/msglog"
	"lifeline/webui/accounts"
	"lifeline/webui/logs"
	"lifeline/webui/session"
)

// Backend is what the API needs from its node: read-side queries, a write
// path through Raft, and the node's view of the cluster.
type Backend interface {
	// Store, ApplyVisible, Now, SendMail and MailHostname: welcome links
	// are sent from the API too.
	accounts.Backend
	// Apply encodes and commits a command through the cluster.
	Apply(ctx context.Context, cmd any) error
	ClusterStatus() cluster.Status
	// Healthy is nil when this node can accept mail.
	Healthy() error
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
	// TestDestination connects to a destination from this node and
	// reports its greeting and EHLO reply, or the error.
	TestDestination(ctx context.Context, addr string) node.DestinationTest
	// WriteBackup streams a backup of the replicated state and the message
	// bodies it references (node/backup describes the layout).
	WriteBackup(ctx context.Context, w io.Writer) (backup.Manifest, error)
	// RestoreBackup replaces the whole cluster's state with a backup; it
	// works on the leader only. Without force it refuses to replace a
	// state that holds mail or domains.
	RestoreBackup(ctx context.Context, r io.Reader, force bool) (backup.RestoreReport, error)
}

// Server is the JSON API of one node.
type Server struct {
	b      Backend
	logger *slog.Logger
	links  accounts.Links
}

// New returns the API over b.
func New(b Backend, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{b: b, logger: logger, links: accounts.Links{B: b}}
}

// Register adds every endpoint of the API to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/status", s.auth(s.apiStatus))
	mux.HandleFunc("GET /metrics", s.auth(s.b.MetricsHandler().ServeHTTP))
	mux.HandleFunc("POST /api/v1/cluster/transfer-leadership", s.auth(s.onLeader(s.transferLeadership)))
	mux.HandleFunc("DELETE /api/v1/cluster/servers/{id}", s.auth(s.onLeader(s.removeServer)))
	mux.HandleFunc("POST /api/v1/cluster/snapshot", s.auth(s.snapshot))
	mux.HandleFunc("GET /api/v1/snapshot", s.auth(s.saveBackup))
	mux.HandleFunc("POST /api/v1/snapshot/restore", s.auth(s.onLeader(s.restoreBackup)))

	mux.HandleFunc("GET /api/v1/domains", s.auth(s.listDomains))
	mux.HandleFunc("POST /api/v1/domains", s.auth(s.addDomain))
	mux.HandleFunc("GET /api/v1/domains/{name}", s.auth(s.getDomain))
	mux.HandleFunc("PUT /api/v1/domains/{name}", s.auth(s.setDomain))
	mux.HandleFunc("DELETE /api/v1/domains/{name}", s.auth(s.removeDomain))
	mux.HandleFunc("POST /api/v1/domains/{name}/test", s.auth(s.testDomain))
	mux.HandleFunc("GET /api/v1/domain-requests", s.auth(s.listDomainRequests))
	mux.HandleFunc("POST /api/v1/domain-requests/{name}/approve", s.auth(s.decideDomain(true)))
	mux.HandleFunc("DELETE /api/v1/domain-requests/{name}", s.auth(s.decideDomain(false)))

	mux.HandleFunc("GET /api/v1/orgs", s.auth(s.listOrgs))
	mux.HandleFunc("POST /api/v1/orgs", s.auth(s.addOrg))
	mux.HandleFunc("GET /api/v1/orgs/{name}", s.auth(s.getOrg))
	mux.HandleFunc("PUT /api/v1/orgs/{name}", s.auth(s.setOrg))
	mux.HandleFunc("GET /api/v1/users", s.auth(s.listUsers))
	mux.HandleFunc("POST /api/v1/users", s.auth(s.addUser))
	mux.HandleFunc("GET /api/v1/users/{email}", s.auth(s.getUser))
	mux.HandleFunc("PATCH /api/v1/users/{email}", s.auth(s.setUser))
	mux.HandleFunc("DELETE /api/v1/users/{email}", s.auth(s.deleteUser))
	mux.HandleFunc("POST /api/v1/users/import", s.auth(s.importUsers))
	mux.HandleFunc("POST /api/v1/users/welcome", s.auth(s.welcomeUsers))

	mux.HandleFunc("GET /api/v1/orgs/{name}/alerts", s.auth(s.getAlerts))
	mux.HandleFunc("PUT /api/v1/orgs/{name}/alerts", s.auth(s.putAlerts))
	mux.HandleFunc("GET /api/v1/alerts/gateway", s.auth(s.getGateway))
	mux.HandleFunc("PUT /api/v1/alerts/gateway", s.auth(s.putGateway))

	mux.HandleFunc("GET /api/v1/queue", s.auth(s.listQueue))
	mux.HandleFunc("GET /api/v1/queue/{id}", s.auth(s.showMessage))
	mux.HandleFunc("POST /api/v1/queue/flush", s.auth(s.queueOp(fsm.OpRetry)))
	mux.HandleFunc("POST /api/v1/queue/{id}/retry", s.auth(s.queueOp(fsm.OpRetry)))
	mux.HandleFunc("POST /api/v1/queue/{id}/hold", s.auth(s.queueOp(fsm.OpHold)))
	mux.HandleFunc("POST /api/v1/queue/{id}/release", s.auth(s.queueOp(fsm.OpRelease)))
	mux.HandleFunc("DELETE /api/v1/queue/{id}", s.auth(s.queueOp(fsm.OpDelete)))

	mux.HandleFunc("GET /api/v1/log", s.auth(s.searchLog))
	mux.HandleFunc("GET /api/v1/log.csv", s.auth(s.exportLog))
	mux.HandleFunc("GET /api/v1/audit", s.auth(s.listAudit))
	mux.HandleFunc("GET /api/v1/audit/verify", s.auth(s.verifyAudit))
	mux.HandleFunc("GET /api/v1/audit.csv", s.auth(s.auditCSV))

	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint")
	})
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

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

// auth lets a request through only with the operator token.
func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		ok, err := s.b.Store().IsAdminToken(tok)
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

// applyAudited commits cmd with the audit entry that records it.
func (s *Server) applyAudited(w http.ResponseWriter, r *http.Request, cmd any, kind, org, target, detail string) bool {
	a, err := logs.Audited(cmd, fsm.AuditEntry{At: s.b.Now().UnixNano(), Kind: kind, Actor: session.Operator, Target: target, Org: org,
		Addr: session.ClientAddr(r), Detail: detail})
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return s.apply(w, r, a)
}
