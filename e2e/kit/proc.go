package kit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Proc is a Node run by a test. It lives in the test's temporary
// directory on free loopback ports, is killed when the test ends, shows
// the end of its log when the test failed, and its methods fail the test
// instead of returning errors.
type Proc struct {
	*Node
	T testing.TB
	// CLITimeout bounds each CLI call; 0 is 30 s.
	CLITimeout time.Duration

	cleanup bool
}

// NewProc makes (but does not start) node n1 running bin, a single-node
// cluster with a token of its own; args are added flags. Its log is
// node.log in the data directory, wherever that is when it first starts.
func NewProc(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	ports, err := FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return &Proc{T: t, Node: &Node{
		ID: "n1", Bin: bin, CLIBin: bin, DataDir: dir,
		SMTP: ports[0], HTTP: ports[1], Raft: ports[2], Gossip: ports[3],
		Token: RandomHex(16), Hostname: "mx.lifeline.test", Args: args,
	}}
}

// Launch starts the process and returns at once.
func (p *Proc) Launch() {
	p.T.Helper()
	r, err := p.Node.Launch()
	if err != nil {
		p.T.Fatal(err)
	}
	p.T.Cleanup(func() {
		if !r.exited() {
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	if !p.cleanup {
		p.cleanup = true
		p.T.Cleanup(func() {
			if p.T.Failed() {
				p.T.Logf("node %s log (last 6000 bytes):\n%s", p.ID, tailBytes(p.LogPath, 6000))
			}
		})
	}
}

// Start launches the node and waits until it can take mail.
func (p *Proc) Start() {
	p.T.Helper()
	p.Launch()
	p.WaitHealthy()
}

// WaitHealthy waits until the node can take mail and its API accepts the
// operator token. A node that exited because a port picked for it was
// taken meanwhile is moved to fresh ports and started again.
func (p *Proc) WaitHealthy() {
	p.T.Helper()
	err := p.Node.WaitHealthy(context.Background(), 30*time.Second)
	if err != nil && p.ExitedOnBusyPort() {
		p.moveToFreshPorts(false)
		p.T.Logf("node %s: a port was taken by another process; restarting on fresh ports", p.ID)
		p.Launch()
		p.WaitHealthy()
		return
	}
	if err != nil {
		p.T.Fatalf("node %s did not become healthy: %v", p.ID, err)
	}
}

// moveToFreshPorts gives the node new SMTP and HTTP addresses, and a new
// Raft address too when withRaft (a node not yet in any configuration);
// its gossip address stays, because its peers join it there.
func (p *Proc) moveToFreshPorts(withRaft bool) {
	p.T.Helper()
	ports, err := FreePorts(3)
	if err != nil {
		p.T.Fatal(err)
	}
	p.SMTP, p.HTTP = ports[0], ports[1]
	if withRaft {
		p.Raft = ports[2]
	}
}

// Stop ends the node with SIGTERM, as systemd does; not having gone 20 s
// later is an error of the test.
func (p *Proc) Stop() {
	p.T.Helper()
	if !p.Node.Stop(20 * time.Second) {
		p.T.Errorf("node %s did not stop within 20s of SIGTERM", p.ID)
	}
}

// CLI runs `lifeline ARGS...` against the node and returns its stdout.
func (p *Proc) CLI(args ...string) (string, error) {
	timeout := p.CLITimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Node.CLI(ctx, args...)
}

// MustCLI runs a command that must succeed. A 503 (no leader at this
// moment, or a leader change with the outcome unknown) is retried for a
// while, as an operator would; a retried add that finds its own earlier
// attempt committed (409) counts as done.
func (p *Proc) MustCLI(args ...string) string {
	p.T.Helper()
	deadline := time.Now().Add(30 * time.Second)
	retried := false
	var out string
	err := Until(deadline, 30*time.Second, 200*time.Millisecond, func() string { return "lifeline " + strings.Join(args, " ") }, func() (bool, error) {
		var err error
		out, err = p.CLI(args...)
		switch {
		case err == nil:
			return true, nil
		case retried && strings.Contains(err.Error(), "409") && len(args) > 2 && args[2] == "add":
			return true, nil
		case !strings.Contains(err.Error(), "503") || time.Now().After(deadline):
			return false, fmt.Errorf("lifeline %s: %v", strings.Join(args, " "), err)
		}
		retried = true
		return false, nil
	})
	if err != nil {
		p.T.Fatal(err)
	}
	return out
}

// Status is `lifeline status --json` against the node.
func (p *Proc) Status() (Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p.CLIStatus(ctx)
}

// Metric reads one series of the node's /metrics; see Node.Metric.
func (p *Proc) Metric(series string) (float64, error) {
	return p.Node.Metric(context.Background(), series)
}

// StartCluster starts n nodes running bin that form one cluster from
// --join alone, with one cluster key and one operator token, and waits
// until every one is healthy. setup, if set, may change each node (its
// data directory, say) before it starts; args are added flags.
func StartCluster(t testing.TB, bin string, n int, setup func(*Proc), args ...string) []*Proc {
	t.Helper()
	key := RandomHex(32)
	var procs []*Proc
	var nodes []*Node
	for i := range n {
		p := NewProc(t, bin)
		p.ID = fmt.Sprintf("n%d", i+1)
		p.Env = []string{"LIFELINE_CLUSTER_KEY=" + key}
		if setup != nil {
			setup(p)
		}
		procs = append(procs, p)
		nodes = append(nodes, p.Node)
	}
	for i, p := range procs {
		p.Token = procs[0].Token
		p.Args = append(append(JoinArgs(nodes, i), "--log-level", "info"), args...)
	}
	for _, p := range procs {
		p.Launch()
	}
	// A node that lost a port to another process exits at once and is
	// moved to fresh ports, while the others wait for it to form the
	// cluster.
	Until(time.Now().Add(60*time.Second), 60*time.Second, 100*time.Millisecond, func() string { return "" }, func() (bool, error) {
		for _, p := range procs {
			if p.ExitedOnBusyPort() {
				p.moveToFreshPorts(true)
				t.Logf("node %s: a port was taken by another process; restarting on fresh ports", p.ID)
				p.Launch()
			}
		}
		for _, p := range procs {
			if code, _, err := p.Health(context.Background()); err != nil || code != 200 {
				return false, nil
			}
		}
		return true, nil
	})
	for _, p := range procs {
		p.WaitHealthy()
	}
	return procs
}

// Leader is the running one of procs that calls itself leader, or nil.
func Leader(procs []*Proc) *Proc {
	for _, p := range procs {
		if !p.Running() {
			continue
		}
		if st, err := p.Status(); err == nil && st.Cluster.State == "Leader" {
			return p
		}
	}
	return nil
}
