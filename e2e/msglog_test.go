package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

type logPage struct {
	Entries []struct {
		Node      string   `json:"node"`
		Kind      string   `json:"kind"`
		Status    string   `json:"status"`
		QueueID   string   `json:"queue_id"`
		MessageID string   `json:"message_id"`
		From      string   `json:"from"`
		To        []string `json:"to"`
		Code      int      `json:"code"`
		Detail    string   `json:"detail"`
	} `json:"entries"`
	Missing []string `json:"missing"`
}

func searchLog(t *testing.T, p *kit.Proc, args ...string) logPage {
	t.Helper()
	var page logPage
	out := p.MustCLI(append([]string{"admin", "log", "search", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("log search output: %v\n%s", err, out)
	}
	return page
}

// The message log finds a message by its queue ID or its Message-ID from
// any node, with its whole history across nodes: accepted on one node,
// attempted by the leader; and a rejection on a follower is there too.
func TestMessageLogAcrossNodes(t *testing.T) {
	procs := startCluster(t, 3)
	leader := kit.Leader(procs)
	var followers []*kit.Proc
	for _, p := range procs {
		if p != leader {
			followers = append(followers, p)
		}
	}
	leader.MustCLI("admin", "domain", "add", "customer.test", "--destination", kit.FreePort(t))
	kit.Wait(t, 10*time.Second, 50*time.Millisecond, "the domain on every node", func() (bool, error) {
		for _, p := range procs {
			if out, err := p.CLI("admin", "domain", "list"); err != nil || !strings.Contains(out, "customer.test") {
				return false, nil
			}
		}
		return true, nil
	})
	sent, err := kit.Send(followers[0].SMTP, "alice@sender.test", []string{"u@customer.test"}, "Message-ID: <trace-me@sender.test>\r\nSubject: trace\r\n\r\nhello\r\n")
	reply := sent.String()
	if err != nil || !strings.HasPrefix(reply, "250") {
		t.Fatalf("send: %q %v", reply, err)
	}
	id := queueID(t, reply)
	if reply, _ := kit.Send(followers[1].SMTP, "spammer@evil.test", []string{"victim@elsewhere.test"}, "x\r\n"); !strings.HasPrefix(reply.String(), "554") {
		t.Fatalf("relay attempt: %q", reply)
	}

	ask := leader
	var page logPage
	kit.Wait(t, 20*time.Second, 50*time.Millisecond, "acceptance and a delivery attempt in the log", func() (bool, error) {
		page = searchLog(t, ask, "--id", id)
		accepted, attempted := false, false
		for _, e := range page.Entries {
			accepted = accepted || (e.Status == "accepted" && e.Node == followers[0].ID && e.MessageID == "<trace-me@sender.test>")
			attempted = attempted || (e.Kind == "delivery" && e.Status == "deferred" && e.Node == leader.ID)
		}
		return accepted && attempted, nil
	})
	byMsgID := searchLog(t, followers[1], "--id", "trace-me@sender.test")
	if len(byMsgID.Entries) < len(page.Entries) {
		t.Fatalf("by Message-ID: %d entries, by queue ID: %d", len(byMsgID.Entries), len(page.Entries))
	}
	var rejected logPage
	kit.Wait(t, 10*time.Second, 50*time.Millisecond, "the follower's rejection", func() (bool, error) {
		rejected = searchLog(t, ask, "--status", "rejected", "--since", "10m")
		return len(rejected.Entries) > 0, nil
	})
	r := rejected.Entries[0]
	if r.Node != followers[1].ID || r.Code != 554 || r.From != "spammer@evil.test" || len(r.To) != 1 || r.To[0] != "victim@elsewhere.test" {
		t.Fatalf("rejection entry: %+v", r)
	}
	csv := ask.MustCLI("admin", "log", "search", "--csv", "--sender", "alice@sender.test")
	if !strings.HasPrefix(csv, "time,node,kind,status") || !strings.Contains(csv, id) {
		t.Fatalf("CSV export:\n%s", csv)
	}
}
