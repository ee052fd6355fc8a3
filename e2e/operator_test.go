package e2e

import (
	"strings"
	"testing"
	"time"
)

// The rolling-upgrade tools: leadership moves on request (asked through a
// follower, which redirects to the leader), and a stopped node can be
// taken out of the voters.
func TestOperatorTransferAndRemove(t *testing.T) {
	procs := startCluster(t, 3)
	leader := leaderProc(t, procs)
	if leader == nil {
		t.Fatal("no leader")
	}
	var follower *proc
	for _, p := range procs {
		if p != leader {
			follower = p
		}
	}
	// A write through a follower answers with what was written: the
	// follower waits until its own state shows the commit.
	if out := follower.mustCLI("admin", "domain", "add", "early.test", "--destination", "127.0.0.1:2"); strings.TrimSpace(out) != "early.test -> 127.0.0.1:2" {
		t.Fatalf("domain add through a follower printed %q", out)
	}
	out := follower.mustCLI("admin", "cluster", "transfer", "--to", follower.id)
	if !strings.Contains(out, "transferred") {
		t.Fatalf("transfer: %s", out)
	}
	waitFor(t, follower.id+" to lead", 10*time.Second, func() bool {
		st, err := follower.status()
		return err == nil && st.Cluster.State == "Leader"
	})

	if _, err := follower.cli("admin", "cluster", "remove", "nope"); err == nil || !strings.Contains(err.Error(), "no such server") {
		t.Fatalf("removing an unknown server: %v", err)
	}
	leader.kill9()
	follower.mustCLI("admin", "cluster", "remove", leader.id)
	waitFor(t, "two voters", 10*time.Second, func() bool {
		st, err := follower.status()
		return err == nil && len(st.Cluster.Servers) == 2
	})
	// The two remaining voters are a quorum of the new configuration:
	// writes commit and mail is taken.
	follower.mustCLI("admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")
	reply, err := sendOnce(follower.smtp, "a@example.net", "u@customer.test", "Subject: x\r\n\r\nx\r\n")
	if err != nil || !strings.HasPrefix(reply, "250") {
		t.Fatalf("after removal: %q %v", reply, err)
	}
	st, _ := follower.status()
	for _, s := range st.Cluster.Servers {
		if s.ID == leader.id {
			t.Fatalf("removed node still a voter: %+v", st.Cluster.Servers)
		}
	}
}
