package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
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
	} `json:"entries"`
	Missing []string `json:"missing"`
}

func (p *proc) searchLog(t *testing.T, args ...string) logPage {
	t.Helper()
	var page logPage
	out := p.mustCLI(append([]string{"admin", "log", "search", "--json"}, args...)...)
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
	leader := leaderProc(t, procs)
	var followers []*proc
	for _, p := range procs {
		if p != leader {
			followers = append(followers, p)
		}
	}
	leader.mustCLI("admin", "domain", "add", "customer.test", "--destination", freePort(t))
	waitFor(t, "the domain on every node", 10*time.Second, func() bool {
		for _, p := range procs {
			if out, err := p.cli("admin", "domain", "list"); err != nil || !strings.Contains(out, "customer.test") {
				return false
			}
		}
		return true
	})
	reply, err := sendOnce(followers[0].smtp, "alice@sender.test", "u@customer.test",
		"Message-ID: <trace-me@sender.test>\r\nSubject: trace\r\n\r\nhello\r\n")
	if err != nil || !strings.HasPrefix(reply, "250") {
		t.Fatalf("send: %q %v", reply, err)
	}
	id := queueID(t, reply)
	if reply, _ := sendOnce(followers[1].smtp, "spammer@evil.test", "victim@elsewhere.test", "x\r\n"); !strings.HasPrefix(reply, "554") {
		t.Fatalf("relay attempt: %q", reply)
	}

	ask := leader
	var page logPage
	waitFor(t, "acceptance and a delivery attempt in the log", 20*time.Second, func() bool {
		page = ask.searchLog(t, "--id", id)
		accepted, attempted := false, false
		for _, e := range page.Entries {
			accepted = accepted || (e.Status == "accepted" && e.Node == followers[0].id && e.MessageID == "<trace-me@sender.test>")
			attempted = attempted || (e.Kind == "delivery" && e.Status == "deferred" && e.Node == leader.id)
		}
		return accepted && attempted
	})
	byMsgID := followers[1].searchLog(t, "--id", "trace-me@sender.test")
	if len(byMsgID.Entries) < len(page.Entries) {
		t.Fatalf("by Message-ID: %d entries, by queue ID: %d", len(byMsgID.Entries), len(page.Entries))
	}
	var rejected logPage
	waitFor(t, "the follower's rejection", 10*time.Second, func() bool {
		rejected = ask.searchLog(t, "--status", "rejected", "--since", "10m")
		return len(rejected.Entries) > 0
	})
	r := rejected.Entries[0]
	if r.Node != followers[1].id || r.Code != 554 || r.From != "spammer@evil.test" || len(r.To) != 1 || r.To[0] != "victim@elsewhere.test" {
		t.Fatalf("rejection entry: %+v", r)
	}
	csv := ask.mustCLI("admin", "log", "search", "--csv", "--sender", "alice@sender.test")
	if !strings.HasPrefix(csv, "time,node,kind,status") || !strings.Contains(csv, id) {
		t.Fatalf("CSV export:\n%s", csv)
	}
}
