package node

import (
	"bufio"
	"bytes"
	"context"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"lifeline/cluster"
	"lifeline/node/msglog"
	"lifeline/smtp"
)

// opLogSearch asks a peer to search its message log.
const opLogSearch = cluster.OpAppFirst

func (n *Node) appHandler(op byte, req []byte) ([]byte, error) {
	switch op {
	case opLogSearch:
		var q msglog.Query
		if err := codec.NewDecoderBytes(req, &codec.MsgpackHandle{}).Decode(&q); err != nil {
			return nil, err
		}
		entries, err := n.msglog.Search(q)
		if err != nil {
			return nil, err
		}
		var out []byte
		err = codec.NewEncoderBytes(&out, &codec.MsgpackHandle{}).Encode(entries)
		return out, err
	}
	return nil, msglog.ErrBadQuery
}

// SearchLog searches the message log of every node and merges the pages,
// newest first. Nodes that did not answer are named in missing, so a
// partial answer says so. A search by ID also finds the entries of the
// queue IDs that a Message-ID leads to: a message's whole history.
func (n *Node) SearchLog(ctx context.Context, q msglog.Query) (entries []msglog.Entry, missing []string, err error) {
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 100
	}
	entries, missing, err = n.searchAll(ctx, q)
	if err != nil || q.ID == "" {
		return entries, missing, err
	}
	seen := map[string]bool{strings.ToLower(q.ID): true}
	lists := [][]msglog.Entry{entries}
	for _, e := range entries {
		id := strings.ToLower(e.QueueID)
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		more := q
		more.ID = e.QueueID
		found, miss, err := n.searchAll(ctx, more)
		if err != nil {
			return nil, nil, err
		}
		lists = append(lists, found)
		missing = append(missing, miss...)
	}
	return dedupe(msglog.Merge(lists, q.Limit*len(lists)), q.Limit), unique(missing), nil
}

func (n *Node) searchAll(ctx context.Context, q msglog.Query) ([]msglog.Entry, []string, error) {
	servers, err := n.cluster.Servers()
	if err != nil {
		return nil, nil, err
	}
	var req []byte
	if err := codec.NewEncoderBytes(&req, &codec.MsgpackHandle{}).Encode(q); err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var lists [][]msglog.Entry
	var missing []string
	local, err := n.msglog.Search(q)
	if err != nil {
		return nil, nil, err
	}
	lists = append(lists, local)
	for _, s := range servers {
		if string(s.ID) == n.cfg.ID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			resp, err := n.cluster.Call(cctx, string(s.Address), opLogSearch, req)
			var found []msglog.Entry
			if err == nil {
				err = codec.NewDecoderBytes(resp, &codec.MsgpackHandle{}).Decode(&found)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				missing = append(missing, string(s.ID))
				return
			}
			lists = append(lists, found)
		}()
	}
	wg.Wait()
	return msglog.Merge(lists, q.Limit), missing, nil
}

func dedupe(es []msglog.Entry, limit int) []msglog.Entry {
	seen := map[msglog.Cursor]bool{}
	var out []msglog.Entry
	for _, e := range es {
		c := msglog.CursorOf(&e)
		if seen[c] {
			continue
		}
		seen[c] = true
		out = append(out, e)
		if len(out) == limit {
			break
		}
	}
	return out
}

func unique(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// LogEvent records an event of this node in its message log.
func (n *Node) LogEvent(e msglog.Entry) { n.msglog.Append(e) }

func (n *Node) logRefusal(r smtp.Refusal) {
	n.msglog.Append(msglog.Entry{
		At: r.At.UnixNano(), Kind: msglog.KindSMTP, Status: "rejected", QueueID: r.QueueID,
		From: r.From, To: r.To, Code: r.Code, Detail: r.Stage + ": " + r.Text, Remote: r.Remote,
	})
}

// messageID reads the Message-ID field of a stored body, so the log can
// find a message by the ID its sender knows.
func (n *Node) messageID(hash string) string {
	f, err := n.blobs.Open(hash)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	k, _ := f.Read(buf)
	end := bytes.Index(buf[:k], []byte("\r\n\r\n"))
	if end < 0 {
		end = k
	}
	hdr, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(buf[:end:end], "\r\n\r\n"...)))).ReadMIMEHeader()
	return strings.TrimSpace(hdr.Get("Message-Id"))
}
