package logs

import (
	"fmt"
	"strconv"
	"strings"

	"lifeline/node/msglog"
)

// FormatCursor writes a message-log cursor for a page link: at.seq.node.
func FormatCursor(c msglog.Cursor) string {
	return fmt.Sprintf("%d.%d.%s", c.At, c.Seq, c.Node)
}

// ParseCursor reads what FormatCursor wrote.
func ParseCursor(s string) (msglog.Cursor, bool) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) != 3 {
		return msglog.Cursor{}, false
	}
	at, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseUint(parts[1], 10, 32)
	if err1 != nil || err2 != nil || parts[2] == "" {
		return msglog.Cursor{}, false
	}
	return msglog.Cursor{At: at, Seq: uint32(seq), Node: parts[2]}, true
}
