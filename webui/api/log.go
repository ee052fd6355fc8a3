package api

import (
	"net/http"
	"strconv"
	"time"

	"lifeline/node/msglog"
	"lifeline/webui/logs"
)

// LogEntry is one message-log entry in the API.
type LogEntry struct {
	Time time.Time `json:"time"`
	msglog.Entry
}

// LogPage is the body of GET /api/v1/log.
type LogPage struct {
	Entries []LogEntry `json:"entries"`
	// Next is the cursor for the following (older) page, "" at the end.
	Next string `json:"next"`
	// Missing names nodes that did not answer: the page may lack their
	// part of the log.
	Missing []string `json:"missing,omitempty"`
}

// parseLogQuery reads a search from the URL; times are RFC 3339 or a
// duration back from now ("2h").
func (s *Server) parseLogQuery(r *http.Request) (msglog.Query, string) {
	v := r.URL.Query()
	q := msglog.Query{ID: v.Get("id"), Sender: v.Get("sender"), Recipient: v.Get("recipient"), Status: v.Get("status"), Limit: 100}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return q, "limit must be between 1 and 1000"
		}
		q.Limit = n
	}
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"since", &q.Since}, {"until", &q.Until}} {
		val := v.Get(p.name)
		if val == "" {
			continue
		}
		if d, err := time.ParseDuration(val); err == nil && d >= 0 {
			*p.dst = s.b.Now().Add(-d).UnixNano()
			continue
		}
		t, err := time.Parse(time.RFC3339, val)
		if err != nil {
			return q, p.name + " must be RFC 3339 time or a duration such as 2h"
		}
		*p.dst = t.UnixNano()
	}
	if c := v.Get("before"); c != "" {
		cur, ok := logs.ParseCursor(c)
		if !ok {
			return q, "invalid cursor"
		}
		q.Before = cur
	}
	return q, ""
}

func (s *Server) searchLog(w http.ResponseWriter, r *http.Request) {
	q, bad := s.parseLogQuery(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, bad)
		return
	}
	entries, missing, err := s.b.SearchLog(r.Context(), q)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot search the log: "+err.Error())
		return
	}
	page := LogPage{Entries: []LogEntry{}, Missing: missing}
	for _, e := range entries {
		page.Entries = append(page.Entries, LogEntry{Time: e.Time(), Entry: e})
	}
	if len(entries) == q.Limit {
		page.Next = logs.FormatCursor(msglog.CursorOf(&entries[len(entries)-1]))
	}
	writeJSON(w, http.StatusOK, page)
}

// exportLog streams every matching entry as CSV, page by page.
func (s *Server) exportLog(w http.ResponseWriter, r *http.Request) {
	q, bad := s.parseLogQuery(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, bad)
		return
	}
	q.Limit = 1000
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="lifeline-log.csv"`)
	logs.WriteMessageCSV(r.Context(), w, q, s.b.SearchLog, nil)
}
