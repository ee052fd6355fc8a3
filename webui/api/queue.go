package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/node/delivery"
	"lifeline/node/msglog"
)

// QueueRecipient is one recipient in the queue API.
type QueueRecipient struct {
	Address     string     `json:"address"`
	State       string     `json:"state"`
	Notify      []string   `json:"notify,omitempty"`
	ORCPT       string     `json:"orcpt,omitempty"`
	Attempts    int        `json:"attempts"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	LastAttempt *time.Time `json:"last_attempt,omitempty"`
	LastReply   string     `json:"last_reply,omitempty"`
	History     []Attempt  `json:"attempts_history,omitempty"`
}

// Attempt is one delivery attempt in the queue API.
type Attempt struct {
	At    time.Time `json:"at"`
	Reply string    `json:"reply"`
}

// QueueMessage is one message in the queue API.
type QueueMessage struct {
	ID         string           `json:"id"`
	From       string           `json:"from"`
	Recipients []QueueRecipient `json:"recipients"`
	Size       int64            `json:"size"`
	Received   time.Time        `json:"received"`
	Ret        string           `json:"ret,omitempty"`
	EnvID      string           `json:"envid,omitempty"`
	Helo       string           `json:"helo,omitempty"`
	RemoteAddr string           `json:"remote_addr,omitempty"`
	TLS        bool             `json:"tls"`
	Node       string           `json:"node,omitempty"`
	Blob       string           `json:"blob"`
	Held       bool             `json:"held"`
}

func unixTime(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

func toQueueMessage(m *fsm.Message) QueueMessage {
	q := QueueMessage{
		ID: m.ID, From: m.From, Size: m.Size, Received: time.Unix(0, m.ReceivedAt).UTC(),
		Ret: m.Ret, EnvID: m.EnvID, Helo: m.Helo, RemoteAddr: m.RemoteAddr, TLS: m.TLS, Node: m.Node, Blob: m.BlobHash, Held: m.Held,
		Recipients: []QueueRecipient{},
	}
	for _, r := range m.Recipients {
		q.Recipients = append(q.Recipients, QueueRecipient{
			Address: r.Address, State: r.State, Notify: r.Notify, ORCPT: r.ORCPT, Attempts: r.Attempts,
			NextAttempt: unixTime(r.NextAttempt), LastAttempt: unixTime(r.LastAttempt), LastReply: r.LastReply,
			History: history(r.History),
		})
	}
	return q
}

func (s *Server) listQueue(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit must be between 1 and 1000")
			return
		}
		limit = n
	}
	f := fsm.MessageFilter{Domain: q.Get("domain"), Sender: q.Get("sender"), Recipient: q.Get("recipient"), State: q.Get("state")}
	if !fsm.ValidState(f.State) {
		writeError(w, http.StatusBadRequest, "state must be held, deferred or new")
		return
	}
	now := s.b.Now()
	for _, p := range []struct {
		name  string
		bound *int64
	}{{"older_than", &f.ReceivedBefore}, {"newer_than", &f.ReceivedAfter}} {
		if v := q.Get(p.name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				writeError(w, http.StatusBadRequest, p.name+" must be a duration such as 30m or 4h")
				return
			}
			*p.bound = now.Add(-d).UnixNano()
		}
	}
	msgs, next, err := s.b.Store().Messages(f, q.Get("after"), limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	out := make([]QueueMessage, 0, len(msgs))
	for i := range msgs {
		out = append(out, toQueueMessage(&msgs[i]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": out, "next": next})
}

func (s *Server) showMessage(w http.ResponseWriter, r *http.Request) {
	m, ok, err := s.b.Store().Message(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no such message in the queue")
		return
	}
	writeJSON(w, http.StatusOK, toQueueMessage(&m))
}

// queueOp applies an operator action to one message or, for a flush, to
// the whole queue. It is a command, so every node sees it at once.
func (s *Server) queueOp(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cmd := &fsm.QueueOp{Op: op, At: s.b.Now().UnixNano()}
		if id := r.PathValue("id"); id != "" {
			if _, ok, err := s.b.Store().Message(id); err != nil {
				writeError(w, http.StatusServiceUnavailable, "state store unavailable")
				return
			} else if !ok {
				writeError(w, http.StatusNotFound, "no such message in the queue")
				return
			}
			cmd.IDs = []string{id}
		}
		if op == fsm.OpDelete && r.URL.Query().Get("dsn") == "true" {
			cmd.Op = fsm.OpBounce
		}
		if op == fsm.OpRetry && len(cmd.IDs) == 0 {
			// A flush of the whole queue goes in chunks (see RetryInChunks).
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
			defer cancel()
			n, err := delivery.RetryInChunks(ctx, s.b.Store(), s.b.Apply, fsm.MessageFilter{}, s.b.Now())
			if err != nil {
				writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("flush stopped after %d messages: %v", n, err))
				return
			}
			s.b.LogEvent(msglog.Entry{Kind: msglog.KindOperator, Status: "flush", Detail: fmt.Sprintf("queue flush by the operator: %d messages", n)})
			writeJSON(w, http.StatusOK, map[string]any{"op": "retry", "messages": n})
			return
		}
		if s.applyAudited(w, r, cmd, "queue_"+cmd.Op, "", strings.Join(cmd.IDs, " "), "by the operator") {
			s.b.LogEvent(msglog.Entry{Kind: msglog.KindOperator, Status: cmd.Op, QueueID: strings.Join(cmd.IDs, " "),
				Detail: "queue " + cmd.Op + " by the operator"})
			writeJSON(w, http.StatusOK, map[string]any{"op": cmd.Op, "ids": cmd.IDs})
		}
	}
}

func history(h []fsm.AttemptRecord) []Attempt {
	var out []Attempt
	for _, a := range h {
		out = append(out, Attempt{At: time.Unix(0, a.At).UTC(), Reply: a.Reply})
	}
	return out
}
