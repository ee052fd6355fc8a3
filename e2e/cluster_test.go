package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

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
		var st kit.Status
		kit.Wait(t, 20*time.Second, 50*time.Millisecond, "three voters and one leader seen from "+p.ID, func() (bool, error) {
			var err error
			st, err = p.Status()
			if err != nil || len(st.Cluster.Servers) != 3 {
				return false, nil
			}
			leaders := 0
			for _, s := range st.Cluster.Servers {
				if s.Suffrage != "voter" {
					return false, nil
				}
				if s.Leader {
					leaders++
				}
			}
			return leaders == 1, nil
		})
	}
	dest := kit.FreePort(t)
	procs[1].MustCLI("admin", "domain", "add", "customer.test", "--destination", dest)

	// Mail to a follower is committed and visible through every node's API.
	leader := kit.Leader(procs)
	var follower *kit.Proc
	for _, p := range procs {
		if p != leader {
			follower = p
			break
		}
	}
	kit.Wait(t, 10*time.Second, 50*time.Millisecond, "the domain on every node", func() (bool, error) {
		for _, p := range procs {
			if out, err := p.CLI("admin", "domain", "list"); err != nil || !strings.Contains(out, "customer.test") {
				return false, nil
			}
		}
		return true, nil
	})
	sent, err := kit.Send(follower.SMTP, "first@example.net", []string{"u@customer.test"}, "Subject: msg first\r\n\r\nhello\r\n")
	reply := sent.String()
	if err != nil || !strings.HasPrefix(reply, "250 2.0.0") {
		t.Fatalf("mail to follower %s: %q %v", follower.ID, reply, err)
	}
	id := queueID(t, reply)
	for _, p := range procs {
		kit.Wait(t, 10*time.Second, 50*time.Millisecond, "the message through "+p.ID, func() (bool, error) {
			out, err := p.CLI("admin", "queue", "show", id)
			return err == nil && strings.Contains(out, "u@customer.test"), nil
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
					sent, err := kit.Send(p.SMTP, "load@example.net", []string{"u@customer.test"}, body)
					reply := sent.String()
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					mu.Lock()
					replies = append(replies, outcome{start: began, at: time.Now(), node: p.ID, reply: reply})
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
							leader.Kill()
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
	t.Logf("leader %s killed; first 250 after %v; %d temporary replies during the failover", leader.ID, gap, fourxx)
	if gap > 5*time.Second {
		t.Errorf("no write accepted for %v after the leader died; want under 5s", gap)
	}

	// The killed node restarts with its data, catches up and fetches the
	// bodies it missed, so it can serve every spooled message.
	leader.Launch()
	leader.WaitHealthy()
	newLeader := kit.Leader(procs)
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "the restarted node to catch up", func() (bool, error) {
		a, err1 := leader.Status()
		b, err2 := newLeader.Status()
		return err1 == nil && err2 == nil && a.Cluster.AppliedIndex == b.Cluster.AppliedIndex, nil
	})
	var queued []queuedMessage
	json.Unmarshal([]byte(leader.MustCLI("admin", "queue", "list", "--json")), &queued)
	if len(queued) < total {
		t.Fatalf("restarted node sees %d queued messages, want at least %d", len(queued), total)
	}
	var hashes []string
	for _, m := range queued {
		hashes = append(hashes, m.Blob)
	}
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "every body on the restarted node", func() (bool, error) {
		have, err := storedBodies(leader, hashes)
		return err == nil && have == len(hashes), nil
	})

	// The customer's server comes back: everything acknowledged arrives.
	sink := kit.StartSink(t, dest)
	newLeader.MustCLI("admin", "queue", "flush")
	kit.Wait(t, 60*time.Second, 50*time.Millisecond, "the spool to drain", func() (bool, error) {
		out, err := newLeader.CLI("admin", "queue", "list")
		return err == nil && strings.Contains(out, "\n0 messages"), nil
	})
	seen := map[int]int{}
	for _, m := range sink.Messages() {
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
