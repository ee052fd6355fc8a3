package logs

import (
	"context"
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/node/msglog"
)

// SafeCSV keeps a field from being read as a formula by a spreadsheet: a
// sender can choose its address, so it must not choose a formula.
func SafeCSV(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// WriteMessageCSV writes every entry of the message log that q finds, page
// by page of q.Limit; keep, if set, filters each page. It stops quietly at
// the first failed search: the answer has begun, and what is missing shows
// as a short file.
func WriteMessageCSV(ctx context.Context, w io.Writer, q msglog.Query, search func(context.Context, msglog.Query) ([]msglog.Entry, []string, error), keep func([]msglog.Entry) []msglog.Entry) {
	cw := csv.NewWriter(w)
	cw.Write([]string{"time", "node", "kind", "status", "queue_id", "message_id", "from", "to", "code", "detail", "remote", "size"})
	for {
		entries, _, err := search(ctx, q)
		if err != nil {
			return
		}
		page := entries
		if keep != nil {
			page = keep(entries)
		}
		for _, e := range page {
			cw.Write([]string{e.Time().Format(time.RFC3339Nano), e.Node, e.Kind, e.Status, e.QueueID, SafeCSV(e.MessageID), SafeCSV(e.From),
				SafeCSV(strings.Join(e.To, " ")), strconv.Itoa(e.Code), SafeCSV(e.Detail), e.Remote, strconv.FormatInt(e.Size, 10)})
		}
		cw.Flush()
		if len(entries) < q.Limit {
			return
		}
		q.Before = msglog.CursorOf(&entries[len(entries)-1])
	}
}

// WriteAuditCSV writes every entry that page returns, page by page.
func WriteAuditCSV(w io.Writer, page func(before string) ([]fsm.AuditEntry, string, error)) {
	cw := csv.NewWriter(w)
	cw.Write([]string{"time", "seq", "kind", "actor", "target", "org", "addr", "detail", "hash"})
	before := ""
	for {
		es, next, err := page(before)
		if err != nil {
			break
		}
		for _, e := range es {
			cw.Write([]string{time.Unix(0, e.At).UTC().Format(time.RFC3339Nano), strconv.FormatUint(e.Seq, 10), e.Kind, SafeCSV(e.Actor), SafeCSV(e.Target),
				SafeCSV(e.Org), e.Addr, SafeCSV(e.Detail), e.Hash})
		}
		cw.Flush()
		if next == "" {
			break
		}
		before = next
	}
}
