package api

import (
	"bufio"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"time"

	"lifeline/cluster"
	"lifeline/node/backup"
)

// saveBackup streams a backup (a tar file: manifest, state, bodies). The
// answer may take longer than the server's write timeout allows other
// requests, so that deadline is lifted for it.
func (s *Server) saveBackup(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", `attachment; filename="lifeline-backup.tar"`)
	w.Header().Set("Cache-Control", "no-store")
	// Headers go out with the first byte of the body; an error before
	// that still gets a JSON answer.
	bw := &lazyWriter{w: w}
	if _, err := s.b.WriteBackup(r.Context(), bw); err != nil {
		if !bw.started {
			writeError(w, http.StatusServiceUnavailable, "backup failed: "+err.Error())
			return
		}
		// Mid-stream: cut the connection so the client sees a truncated
		// archive rather than a complete-looking one.
		s.logger.Error("backup failed mid-stream", "err", err)
		panic(http.ErrAbortHandler)
	}
}

type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

// restoreBackup replaces the cluster's state with the uploaded backup (a
// tar, or a gzipped tar). It runs on the leader; followers redirect.
func (s *Server) restoreBackup(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	force := r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
	br := bufio.NewReaderSize(r.Body, 64<<10)
	var body io.Reader = br
	if head, err := br.Peek(2); err == nil && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			writeError(w, http.StatusBadRequest, "restore: bad gzip stream: "+err.Error())
			return
		}
		defer zr.Close()
		body = zr
	}
	rep, err := s.b.RestoreBackup(r.Context(), body, force)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, rep)
	case errors.Is(err, backup.ErrUnusable):
		writeError(w, http.StatusBadRequest, "restore: "+err.Error())
	case errors.Is(err, backup.ErrConflict):
		writeError(w, http.StatusConflict, "restore: "+err.Error())
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNoQuorum):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "restore: "+err.Error())
	default:
		s.logger.Error("restore failed", "err", err)
		writeError(w, http.StatusInternalServerError, "restore failed: "+err.Error())
	}
}
