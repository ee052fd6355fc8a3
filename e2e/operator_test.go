package e2e

import (
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// The rolling-upgrade tools: leadership moves on request (asked through a
// follower, which redirects to the leader), and a stopped node can be
// taken out of the voters.
func TestOperatorTransferAndRemove(t *testing.T) {
	procs := startCluster(t, 3)
	leader := kit.Leader(procs)
	if leader == nil {
		t.Fatal("no leader")
	}
	var follower *kit.Proc
	for _, p := range procs {
		if p != leader {
			follower = p
		}
	}
	// A write through a follower answers with what was written: the
	// follower waits until its own state shows the commit.
	if out := follower.MustCLI("admin", "domain", "add", "early.test", "--destination", "127.0.0.1:2"); strings.TrimSpace(out) != "early.test -> 127.0.0.1:2" {
		t.Fatalf("domain add through a follower printed %q", out)
	}
	out := follower.MustCLI("admin", "cluster", "transfer", "--to", follower.ID)
	if !strings.Contains(out, "transferred") {
		t.Fatalf("transfer: %s", out)
	}
	kit.Wait(t, 10*time.Second, 50*time.Millisecond, follower.ID+" to lead", func() (bool, error) {
		st, err := follower.Status()
		return err == nil && st.Cluster.State == "Leader", nil
	})

	if _, err := follower.CLI("admin", "cluster", "remove", "nope"); err == nil || !strings.Contains(err.Error(), "no such server") {
		t.Fatalf("removing an unknown server: %v", err)
	}
	leader.Kill()
	follower.MustCLI("admin", "cluster", "remove", leader.ID)
	kit.Wait(t, 10*time.Second, 50*time.Millisecond, "two voters", func() (bool, error) {
		st, err := follower.Status()
		return err == nil && len(st.Cluster.Servers) == 2, nil
	})
	// The two remaining voters are a quorum of the new configuration:
	// writes commit and mail is taken.
	follower.MustCLI("admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")
	sent, err := kit.Send(follower.SMTP, "a@example.net", []string{"u@customer.test"}, "Subject: x\r\n\r\nx\r\n")
	reply := sent.String()
	if err != nil || !strings.HasPrefix(reply, "250") {
		t.Fatalf("after removal: %q %v", reply, err)
	}
	st, _ := follower.Status()
	for _, s := range st.Cluster.Servers {
		if s.ID == leader.ID {
			t.Fatalf("removed node still a voter: %+v", st.Cluster.Servers)
		}
	}
}
