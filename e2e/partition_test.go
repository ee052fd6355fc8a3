//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// partitionLedger records what the cluster promised: every 250 by queue ID,
// and how many transactions ended without a promise either way.
type partitionLedger struct {
	acked   map[string]string // queue ID -> where and when it was accepted
	unknown int               // 451s and transactions cut short: may or may not be queued
}

// A network partition, made of namespaces (netns_test.go): three nodes on
// a switch; one is unplugged, first the leader, then a follower. The
// isolated node answers 451 4.3.0 and never 250, and its /healthz turns
// 503; the two others keep (or elect) a leader and take mail. Once the
// cable is back, all three agree on the applied index and the queue, and
// every message that got a 250 on either side is in it.
//
// Needs root and iproute2: sudo go test ./e2e -run Partition -v
func TestPartitionMinorityAnswers451(t *testing.T) {
	requireNetns(t)
	lab := newNetLab(t, 3, 150*time.Second)
	start := time.Now()
	nodes := lab.startNetnsCluster(t, netnsRandomHex(16), netnsRandomHex(32))
	leader := waitNetnsLeader(t, lab, nodes, nodes, 30*time.Second)
	t.Logf("cluster formed in namespaces %s..., leader %s, after %v", lab.prefix, leader.ID, time.Since(start).Round(time.Millisecond))

	// The customer's server is down (a closed port on the leader's own
	// loopback), so everything accepted stays in the queue.
	leader.mustCLI(t, "admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")
	lab.waitUntil(t, "the domain on every node", 10*time.Second, func() (bool, error) {
		for _, n := range nodes {
			if out, err := n.cli("admin", "domain", "list"); err != nil || !strings.Contains(out, "customer.test") {
				return false, nil
			}
		}
		return true, nil
	})
	ledger := &partitionLedger{acked: map[string]string{}}
	for _, n := range nodes {
		netnsSendUntil250(t, lab, n, ledger, "before the partition", 10*time.Second)
	}
	waitNetnsAgreement(t, lab, nodes, ledger, 20*time.Second)

	firstVictim := netnsLeaderAmong(nodes)
	if !t.Run("leader isolated", func(t *testing.T) {
		partitionPhase(t, lab, nodes, firstVictim, ledger)
	}) {
		return
	}
	t.Run("follower isolated", func(t *testing.T) {
		l := netnsLeaderAmong(nodes)
		if l == nil {
			t.Fatal("no leader before the second partition")
		}
		// A follower other than the node isolated in the first phase.
		var follower *nsNode
		for _, n := range nodes {
			if n != l && n != firstVictim {
				follower = n
				break
			}
		}
		partitionPhase(t, lab, nodes, follower, ledger)
	})
	t.Logf("whole test: %v; %d messages acknowledged, %d with unknown outcome",
		time.Since(start).Round(time.Millisecond), len(ledger.acked), ledger.unknown)
}

type partitionProbe struct {
	began, ended time.Time
	reply        string
	err          error
}

// partitionPhase unplugs victim, checks both sides, plugs it back and
// waits for the three nodes to agree.
func partitionPhase(t *testing.T, lab *netLab, nodes []*nsNode, victim *nsNode, ledger *partitionLedger) {
	if victim == nil {
		t.Fatal("no node to isolate")
	}
	var majority []*nsNode
	for _, n := range nodes {
		if n != victim {
			majority = append(majority, n)
		}
	}
	wasLeader := netnsLeaderAmong(nodes) == victim
	lab.isolate(t, victim.idx)
	isolatedAt := time.Now()
	healed := false
	defer func() {
		if !healed {
			netnsIP("-n", lab.sw, "link", "set", fmt.Sprintf("n%d", victim.idx+1), "up")
		}
	}()
	since := func() time.Duration { return time.Since(isolatedAt).Round(time.Millisecond) }
	t.Logf("isolated %s (leader: %v)", victim.ID, wasLeader)

	// The minority side: senders to the isolated node for as long as it
	// stays isolated.
	pctx, stopProbes := context.WithCancel(context.Background())
	defer stopProbes()
	var (
		pmu    sync.Mutex
		probes []partitionProbe
	)
	// Three senders, started a few seconds apart, so that some
	// transactions begin before and some after the node has noticed that
	// it lost the cluster.
	var probers sync.WaitGroup
	for k := 0; k < 3; k++ {
		probers.Add(1)
		go func() {
			defer probers.Done()
			select {
			case <-pctx.Done():
				return
			case <-time.After(time.Duration(k) * 2 * time.Second):
			}
			for i := 1; pctx.Err() == nil; i++ {
				began := time.Now()
				body := fmt.Sprintf("Subject: to isolated %s, sender %d, %d\r\n\r\nsent during the partition\r\n", victim.ID, k, i)
				reply, err := victim.send(pctx, "minority@example.net", "u@customer.test", body)
				pmu.Lock()
				probes = append(probes, partitionProbe{began: began, ended: time.Now(), reply: reply, err: err})
				pmu.Unlock()
				select {
				case <-pctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	probeSnapshot := func() []partitionProbe {
		pmu.Lock()
		defer pmu.Unlock()
		return append([]partitionProbe(nil), probes...)
	}

	// The majority side: a leader among the two (a new one when the
	// leader was cut off), which takes mail through either node.
	leader := waitNetnsLeader(t, lab, majority, nodes, 20*time.Second)
	t.Logf("majority leader %s, %v after the isolation", leader.ID, since())
	for _, n := range majority {
		for i := 0; i < 2; i++ {
			netnsSendUntil250(t, lab, n, ledger, "majority while "+victim.ID+" is isolated", 15*time.Second)
		}
	}
	t.Logf("majority took %d messages by %v", 2*len(majority), since())

	// The minority side. Once the isolated node knows it has no leader
	// (its /healthz turns 503, after its leader lease or the follower's
	// heartbeat timeout runs out), new mail gets 451 4.3.0. The bound
	// allows for the node's own commit timeout (30 s): a transaction that
	// was waiting for peers when the cable went is answered only then.
	lab.waitUntil(t, "/healthz 503 on the isolated node "+victim.ID, 15*time.Second, func() (bool, error) {
		return victim.healthz() == http.StatusServiceUnavailable, nil
	})
	noLeaderAt := time.Now()
	t.Logf("isolated %s: /healthz 503 %v after the isolation", victim.ID, since())
	if st, err := victim.status(); err == nil {
		t.Logf("isolated %s sees state %s, leader %q", victim.ID, st.Cluster.State, st.Cluster.LeaderID)
		if st.Cluster.State == "Leader" {
			t.Errorf("the isolated node %s still calls itself leader %v after the isolation", victim.ID, since())
		}
	}
	lab.waitUntil(t, "451 4.3.0 from the isolated node "+victim.ID+" to mail begun after it lost its leader", 40*time.Second, func() (bool, error) {
		for _, p := range probeSnapshot() {
			if !p.began.Before(noLeaderAt) && strings.HasPrefix(p.reply, "451 4.3.0") {
				return true, nil
			}
		}
		return false, nil
	})
	stopProbes()
	probers.Wait()

	var first time.Duration
	fourxx, cut := 0, 0
	for _, p := range probeSnapshot() {
		took := p.ended.Sub(p.began).Round(time.Millisecond)
		switch {
		case strings.HasPrefix(p.reply, "250"):
			t.Errorf("PRODUCT BUG: the isolated node %s answered %q to a transaction begun %v after the isolation (took %v)",
				victim.ID, p.reply, p.began.Sub(isolatedAt).Round(time.Millisecond), took)
			// A promise is a promise: it must survive the healing too.
			if _, after, ok := strings.Cut(p.reply, "queued as "); ok && len(strings.Fields(after)) > 0 {
				ledger.acked[strings.Fields(after)[0]] = "isolated " + victim.ID
			}
		case strings.HasPrefix(p.reply, "451 4.3.0"):
			fourxx++
			if first == 0 {
				first = p.ended.Sub(isolatedAt).Round(time.Millisecond)
			}
			t.Logf("isolated %s: transaction begun %v after the isolation: %q after %v", victim.ID, p.began.Sub(isolatedAt).Round(time.Millisecond), p.reply, took)
		case p.err != nil:
			cut++ // cut short by stopProbes, or the node could not be reached
			t.Logf("isolated %s: transaction begun %v after the isolation: no final reply after %v: %v", victim.ID, p.began.Sub(isolatedAt).Round(time.Millisecond), took, p.err)
		default:
			t.Errorf("the isolated node %s answered %q, want 451 4.3.0", victim.ID, p.reply)
		}
	}
	ledger.unknown += fourxx + cut
	t.Logf("isolated %s: first 451 %v after the isolation; %d answered 451, %d cut short (unknown outcome)", victim.ID, first, fourxx, cut)

	lab.heal(t, victim.idx)
	healed = true
	healedAt := time.Now()
	waitNetnsAgreement(t, lab, nodes, ledger, 30*time.Second)
	t.Logf("all nodes agree %v after healing", time.Since(healedAt).Round(time.Millisecond))
}

// netnsSendUntil250 sends one message to n until it is accepted, as a sending
// MTA retries a 4xx. 451s on the way are unknown outcomes.
func netnsSendUntil250(t *testing.T, lab *netLab, n *nsNode, ledger *partitionLedger, what string, timeout time.Duration) string {
	t.Helper()
	var id, last string
	tries := 0
	lab.waitUntil(t, "a 250 from "+n.ID+" ("+what+")", timeout, func() (bool, error) {
		tries++
		body := fmt.Sprintf("Subject: %s, to %s, try %d\r\n\r\nhello\r\n", what, n.ID, tries)
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		reply, err := n.send(ctx, "sender@example.net", "u@customer.test", body)
		cancel()
		switch {
		case err != nil:
			last = err.Error()
			ledger.unknown++
			return false, nil
		case strings.HasPrefix(reply, "250 2.0.0"):
			id = queueID(t, reply)
			return true, nil
		case strings.HasPrefix(reply, "5"):
			t.Fatalf("%s answered %q", n.ID, reply)
		}
		last = reply
		ledger.unknown++
		time.Sleep(100 * time.Millisecond)
		return false, nil
	})
	if tries > 1 {
		t.Logf("%s: 250 after %d tries (last refusal %q)", n.ID, tries, last)
	}
	ledger.acked[id] = n.ID + ": " + what
	return id
}

// netnsLeaderAmong returns the node that calls itself leader, if one does.
func netnsLeaderAmong(nodes []*nsNode) *nsNode {
	for _, n := range nodes {
		if st, err := n.status(); err == nil && st.Cluster.State == "Leader" {
			return n
		}
	}
	return nil
}

// waitNetnsLeader waits until every node of group sees all of the cluster
// as voters and the same leader, one of group, and returns it.
func waitNetnsLeader(t *testing.T, lab *netLab, group, all []*nsNode, timeout time.Duration) *nsNode {
	t.Helper()
	var leader *nsNode
	lab.waitUntil(t, "one leader and all voters, seen from "+netnsIDs(group), timeout, func() (bool, error) {
		leaderID := ""
		for _, n := range group {
			st, err := n.status()
			if err != nil || st.Cluster.LeaderID == "" || len(st.Cluster.Servers) != len(all) {
				return false, nil
			}
			for _, s := range st.Cluster.Servers {
				if s.Suffrage != "voter" {
					return false, nil
				}
			}
			if leaderID != "" && st.Cluster.LeaderID != leaderID {
				return false, nil
			}
			leaderID = st.Cluster.LeaderID
		}
		for _, n := range group {
			if n.ID == leaderID {
				leader = n
				return true, nil
			}
		}
		return false, nil
	})
	return leader
}

// waitNetnsAgreement waits until all nodes have the same leader, the same
// applied index and the same queue, which holds every acknowledged message.
func waitNetnsAgreement(t *testing.T, lab *netLab, nodes []*nsNode, ledger *partitionLedger, timeout time.Duration) {
	t.Helper()
	var last string
	var queue []string
	agree := func() bool {
		var first kit.Status
		var firstQueue []string
		for i, n := range nodes {
			st, err := n.status()
			if err != nil {
				last = fmt.Sprintf("%s: status: %v", n.ID, err)
				return false
			}
			out, err := n.cli("admin", "queue", "list", "--json")
			if err != nil {
				last = fmt.Sprintf("%s: queue list: %v", n.ID, err)
				return false
			}
			var msgs []queuedMessage
			if err := json.Unmarshal([]byte(out), &msgs); err != nil {
				last = fmt.Sprintf("%s: queue list --json: %v", n.ID, err)
				return false
			}
			var q []string
			for _, m := range msgs {
				q = append(q, m.ID)
			}
			slices.Sort(q)
			if i == 0 {
				first, firstQueue = st, q
				continue
			}
			if st.Cluster.LeaderID == "" || st.Cluster.LeaderID != first.Cluster.LeaderID ||
				st.Cluster.AppliedIndex != first.Cluster.AppliedIndex || !slices.Equal(q, firstQueue) {
				last = fmt.Sprintf("%s: leader %q, applied %d, %d queued; %s: leader %q, applied %d, %d queued",
					nodes[0].ID, first.Cluster.LeaderID, first.Cluster.AppliedIndex, len(firstQueue),
					n.ID, st.Cluster.LeaderID, st.Cluster.AppliedIndex, len(q))
				return false
			}
		}
		queue = firstQueue
		return true
	}
	if err := kit.Until(lab.until(timeout), timeout, 100*time.Millisecond, func() string { return "" }, func() (bool, error) { return agree(), nil }); err != nil {
		t.Fatalf("nodes do not agree %v after healing: %s", timeout, last)
	}
	missing := 0
	for id, what := range ledger.acked {
		if !slices.Contains(queue, id) {
			missing++
			t.Errorf("PRODUCT BUG: message %s got 250 (%s) but is not in the queue after healing", id, what)
		}
	}
	t.Logf("queue on every node: %d messages: %d acknowledged (%d missing), %d of %d transactions with unknown outcome so far",
		len(queue), len(ledger.acked), missing, len(queue)-len(ledger.acked)+missing, ledger.unknown)
}

func netnsIDs(nodes []*nsNode) string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.ID)
	}
	return strings.Join(s, ",")
}

func netnsRandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
