package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type statusJSON struct {
	Cluster struct {
		ID           string `json:"id"`
		State        string `json:"state"`
		LeaderID     string `json:"leader_id"`
		AppliedIndex uint64 `json:"applied_index"`
		Servers      []struct {
			ID       string `json:"id"`
			Suffrage string `json:"suffrage"`
			Leader   bool   `json:"leader"`
		} `json:"servers"`
	} `json:"cluster"`
	Healthy bool `json:"healthy"`
}

func (p *proc) status() (statusJSON, error) {
	var st statusJSON
	out, err := p.cli("status", "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

func startCluster(t *testing.T, n int, extra ...string) []*proc {
	t.Helper()
	return startClusterSetup(t, n, nil, extra...)
}

// startClusterSetup is startCluster with a hook that may change each node
// (its data directory, say) before it starts.
func startClusterSetup(t *testing.T, n int, setup func(*proc), extra ...string) []*proc {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	var procs []*proc
	for i := 0; i < n; i++ {
		p := newProc(t)
		p.id = fmt.Sprintf("n%d", i+1)
		p.env = []string{"LIFELINE_CLUSTER_KEY=" + hex.EncodeToString(key)}
		if setup != nil {
			setup(p)
		}
		procs = append(procs, p)
	}
	for i, p := range procs {
		p.token = procs[0].token
		var join []string
		for j, q := range procs {
			if j != i {
				join = append(join, q.gossip)
			}
		}
		p.extra = append([]string{"--bootstrap-expect", fmt.Sprint(n), "--join", strings.Join(join, ","), "--log-level", "info"}, extra...)
	}
	for _, p := range procs {
		p.launch()
	}
	// A port picked for a node can be taken by another process before the
	// node binds it; such a node exits at once and is moved to fresh
	// ports, while the others keep waiting for it to form the cluster.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if p.exitedOnBusyPort() {
				p.cmd.Wait()
				p.smtp, p.http, p.raft = freePort(t), freePort(t), freePort(t)
				t.Logf("node %s: a port was taken by another process; restarting on fresh ports", p.id)
				p.launch()
			}
		}
		if ready(procs) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range procs {
		p.waitHealthy()
	}
	return procs
}

// ready reports whether every node answers its API with the token and
// has a leader.
func ready(procs []*proc) bool {
	for _, p := range procs {
		hz, err := http.Get("http://" + p.http + "/healthz")
		if err != nil {
			return false
		}
		hz.Body.Close()
		if hz.StatusCode != 200 {
			return false
		}
	}
	return true
}

func leaderProc(t *testing.T, procs []*proc) *proc {
	t.Helper()
	for _, p := range procs {
		if p.cmd.ProcessState != nil {
			continue
		}
		st, err := p.status()
		if err == nil && st.Cluster.State == "Leader" {
			return p
		}
	}
	return nil
}

// sendOnce runs one transaction on a fresh connection and returns the
// final reply, or an error when the node could not be reached.
func sendOnce(addr, from, to, body string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	read := func() (string, error) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			if len(line) < 4 || line[3] != '-' {
				return strings.TrimSpace(line), nil
			}
		}
	}
	if _, err := read(); err != nil {
		return "", err
	}
	for _, c := range []string{"EHLO load.example", "MAIL FROM:<" + from + ">", "RCPT TO:<" + to + ">", "DATA"} {
		fmt.Fprintf(conn, "%s\r\n", c)
		line, err := read()
		if err != nil {
			return "", err
		}
		if line[0] != '2' && line[0] != '3' {
			return line, nil
		}
	}
	fmt.Fprintf(conn, "%s.\r\n", body)
	return read()
}

type outcome struct {
	start time.Time
	at    time.Time
	node  string
	reply string
}

// Three real nodes form one cluster from --join alone; mail to any node is
// committed on all; the leader dies under load and nothing acknowledged is
// lost; the dead node comes back and catches up.
func TestClusterSurvivesLeaderKill(t *testing.T) {
	procs := startCluster(t, 3)
	for _, p := range procs {
		var st statusJSON
		waitFor(t, "three voters and one leader seen from "+p.id, 20*time.Second, func() bool {
			var err error
			st, err = p.status()
			if err != nil || len(st.Cluster.Servers) != 3 {
				return false
			}
			leaders := 0
			for _, s := range st.Cluster.Servers {
				if s.Suffrage != "voter" {
					return false
				}
				if s.Leader {
					leaders++
				}
			}
			return leaders == 1
		})
	}
	dest := freePort(t)
	procs[1].mustCLI("admin", "domain", "add", "customer.test", "--destination", dest)

	// Mail to a follower is committed and visible through every node's API.
	leader := leaderProc(t, procs)
	var follower *proc
	for _, p := range procs {
		if p != leader {
			follower = p
			break
		}
	}
	waitFor(t, "the domain on every node", 10*time.Second, func() bool {
		for _, p := range procs {
			if out, err := p.cli("admin", "domain", "list"); err != nil || !strings.Contains(out, "customer.test") {
				return false
			}
		}
		return true
	})
	reply, err := sendOnce(follower.smtp, "first@example.net", "u@customer.test", "Subject: msg first\r\n\r\nhello\r\n")
	if err != nil || !strings.HasPrefix(reply, "250 2.0.0") {
		t.Fatalf("mail to follower %s: %q %v", follower.id, reply, err)
	}
	id := queueID(t, reply)
	for _, p := range procs {
		waitFor(t, "the message through "+p.id, 10*time.Second, func() bool {
			out, err := p.cli("admin", "queue", "show", id)
			return err == nil && strings.Contains(out, "u@customer.test")
		})
	}

	// 500 numbered messages from 10 senders across all nodes; the leader
	// is killed with SIGKILL after 150 acknowledgements. A sender retries a
	// 4xx on the next node, as a real MTA would retry later.
	const total = 500
	var (
		mu       sync.Mutex
		next     int
		acked    = map[int]bool{}
		replies  []outcome
		killedAt time.Time
	)
	killOnce := sync.Once{}
	deadline := time.Now().Add(3 * time.Minute)
	var wg sync.WaitGroup
	for s := 0; s < 10; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next == total {
					mu.Unlock()
					return
				}
				num := next
				next++
				mu.Unlock()
				body := fmt.Sprintf("Subject: msg %d\r\n\r\nbody of message %d\r\n", num, num)
				for try := 0; time.Now().Before(deadline); try++ {
					p := procs[(num+try)%len(procs)]
					began := time.Now()
					reply, err := sendOnce(p.smtp, "load@example.net", "u@customer.test", body)
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					mu.Lock()
					replies = append(replies, outcome{start: began, at: time.Now(), node: p.id, reply: reply})
					if strings.HasPrefix(reply, "250") {
						acked[num] = true
					}
					n := len(acked)
					mu.Unlock()
					if n >= 150 {
						killOnce.Do(func() {
							mu.Lock()
							killedAt = time.Now()
							mu.Unlock()
							leader.kill9()
						})
					}
					if strings.HasPrefix(reply, "250") || reply[0] == '5' {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	if killedAt.IsZero() {
		t.Fatal("the leader was never killed")
	}
	var firstAfter time.Time
	fourxx := 0
	for _, o := range replies {
		if o.reply[0] == '5' {
			t.Errorf("a 5xx during the failover from %s: %q", o.node, o.reply)
		}
		if o.reply[0] == '4' {
			fourxx++
		}
		// A transaction begun after the kill shows the new leader at work.
		if strings.HasPrefix(o.reply, "250") && o.start.After(killedAt) && (firstAfter.IsZero() || o.at.Before(firstAfter)) {
			firstAfter = o.at
		}
	}
	if len(acked) != total {
		t.Fatalf("%d of %d messages acknowledged", len(acked), total)
	}
	gap := firstAfter.Sub(killedAt)
	t.Logf("leader %s killed; first 250 after %v; %d temporary replies during the failover", leader.id, gap, fourxx)
	if gap > 5*time.Second {
		t.Errorf("no write accepted for %v after the leader died; want under 5s", gap)
	}

	// The killed node restarts with its data, catches up and fetches the
	// bodies it missed, so it can serve every spooled message.
	leader.launch()
	leader.waitHealthy()
	newLeader := leaderProc(t, procs)
	waitFor(t, "the restarted node to catch up", 30*time.Second, func() bool {
		a, err1 := leader.status()
		b, err2 := newLeader.status()
		return err1 == nil && err2 == nil && a.Cluster.AppliedIndex == b.Cluster.AppliedIndex
	})
	var queued []queuedMessage
	json.Unmarshal([]byte(leader.mustCLI("admin", "queue", "list", "--json")), &queued)
	if len(queued) < total {
		t.Fatalf("restarted node sees %d queued messages, want at least %d", len(queued), total)
	}
	var hashes []string
	for _, m := range queued {
		hashes = append(hashes, m.Blob)
	}
	waitFor(t, "every body on the restarted node", 30*time.Second, func() bool {
		have, err := leader.storedBodies(hashes)
		return err == nil && have == len(hashes)
	})

	// The customer's server comes back: everything acknowledged arrives.
	sink := startSmtpSink(t, dest)
	newLeader.mustCLI("admin", "queue", "flush")
	waitFor(t, "the spool to drain", 60*time.Second, func() bool {
		out, err := newLeader.cli("admin", "queue", "list")
		return err == nil && strings.Contains(out, "\n0 messages")
	})
	seen := map[int]int{}
	for _, m := range sink.messages() {
		var num int
		if _, err := fmt.Sscanf(subjectOf(m), "msg %d", &num); err == nil {
			seen[num]++
		}
	}
	dups := 0
	for num := range acked {
		if seen[num] == 0 {
			t.Errorf("message %d got 250 but never arrived", num)
		}
		if seen[num] > 1 {
			dups += seen[num] - 1
		}
	}
	t.Logf("%d messages acknowledged, %d delivered, %d duplicates", len(acked), len(seen), dups)
}

func subjectOf(m []byte) string {
	for _, line := range strings.Split(string(m), "\n") {
		if s, ok := strings.CutPrefix(line, "Subject: "); ok {
			return strings.TrimSpace(s)
		}
		if line == "" {
			break
		}
	}
	return ""
}
