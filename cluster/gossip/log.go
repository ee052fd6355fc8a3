package gossip

import (
	"bytes"
	"context"
	"log/slog"
)

// memberlistLog receives memberlist's log.Logger output, one "[LEVEL]
// memberlist: text" line per Write, and re-emits it through slog so the node
// has one log stream with one set of levels.
type memberlistLog struct {
	logger *slog.Logger
}

func (w memberlistLog) Write(p []byte) (int, error) {
	n := len(p)
	line := bytes.TrimRight(p, "\r\n")
	level := slog.LevelInfo
	if bytes.HasPrefix(line, []byte("[")) {
		if end := bytes.IndexByte(line, ']'); end > 0 {
			level = memberlistLevel(string(line[1:end]))
			line = bytes.TrimLeft(line[end+1:], " ")
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	w.logger.Log(context.Background(), level, string(line))
	return n, nil
}

// memberlistLevel maps memberlist's tags onto slog levels. Its [INFO] lines
// repeat "suspect has failed" on every probe of a dead peer, and this package
// already logs the failure once at info, so they go to debug. Its [ERR] lines
// report a peer that cannot be reached or sent garbage (a wrong key, say):
// conditions a cluster that tolerates losing a minority is built to ride out,
// so they are warnings rather than errors of this process.
func memberlistLevel(tag string) slog.Level {
	switch tag {
	case "TRACE", "DEBUG", "INFO":
		return slog.LevelDebug
	case "WARN", "ERR", "ERROR":
		return slog.LevelWarn
	default:
		return slog.LevelInfo
	}
}
