//go:build linux

package e2e

// Separate hosts for the end-to-end tests (docs/design.md §6, level 3): each
// node runs in its own network namespace, plugged by a veth pair into a
// bridge that lives in one more namespace, the "switch". Nothing here
// touches the host's own networking: no interface, address or route is
// added to the root namespace, so the private subnet cannot clash with
// anything on the machine, and no packet can leave it.
//
//	 ns <prefix>n1            ns <prefix>sw               ns <prefix>n2 ...
//	 lo, eth0 10.213.7.1 ── veth ── n1 ┐
//	                                  br0 (10.213.7.0/24)
//	 lo, eth0 10.213.7.2 ── veth ── n2 ┘
//
// A partition unplugs a node's cable at the switch: the switch-side end of
// its veth goes down. The node keeps its address and its loopback, so the
// test can still reach it from inside its namespace, while it can reach
// none of its peers and none of them can reach it.
//
// How the test process reaches the nodes: it never dials from the root
// namespace (a 10.213.x address there would follow the host's default
// route). The CLI runs as `ip netns exec NS lifeline ...`, the way an
// operator on that host would run it. SMTP and /healthz are dialed
// in-process from a goroutine locked to an OS thread that setns(2)-es into
// the node's namespace only for the socket() and connect() calls and then
// returns to its original namespace; a socket stays in the namespace it
// was created in, so all further I/O happens on ordinary threads. That
// needs no extra packages (no socat, no curl) and no veth into the host.
//
// Cleanup: every namespace is removed in t.Cleanup (also after t.Fatal),
// on SIGINT/SIGTERM, and node processes get SIGKILL through Pdeathsig if
// the test binary dies (go test's -timeout panic runs no cleanups). A
// namespace left behind by a test binary that was killed outright is
// removed by the next run (the names carry the PID of the run).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lifeline/e2e/kit"
)

const (
	netnsPrefix = "lifeline-e2e-"
	netnsSubnet = "10.213.7." // a /24 that exists only inside the test's namespaces
	netnsDir    = "/var/run/netns"
)

// requireNetns skips the test where namespaces cannot be made.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root: run `sudo go test ./e2e -run Partition -v` (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the ip command is missing: install Debian's iproute2 package (.ci/run does)")
	}
}

// netnsIP runs `ip ARGS...` with a bounded time.
func netnsIP(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func netnsList() []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// netnsSweepStale removes namespaces of earlier runs whose test process no
// longer exists (it was killed before its cleanup could run).
func netnsSweepStale(t *testing.T) {
	for _, name := range netnsList() {
		rest, ok := strings.CutPrefix(name, netnsPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // its run is still going
		}
		if err := netnsIP("netns", "del", name); err == nil {
			t.Logf("removed namespace %s left behind by an earlier run", name)
		}
	}
}

// netLab is a switch and a few hosts, each in its own namespace.
type netLab struct {
	t      *testing.T
	prefix string
	sw     string
	hosts  []string // namespace of host i
	ips    []string // address of host i

	mu       sync.Mutex
	made     []string // namespaces created so far
	nodes    []*nsNode
	stopOnce sync.Once
	launchCh chan func()
	sigCh    chan os.Signal
	deadline time.Time
	hooks    []func()      // run at teardown, after the processes are killed
	torn     chan struct{} // closed once torn down
}

// newNetLab builds the switch and n hosts. The test must already have
// called requireNetns. budget bounds every wait of the test; it is cut
// short to leave the cleanup time before go test's own -timeout.
func newNetLab(t *testing.T, n int, budget time.Duration) *netLab {
	t.Helper()
	netnsSweepStale(t)
	l := &netLab{
		t:        t,
		prefix:   fmt.Sprintf("%s%d-", netnsPrefix, os.Getpid()),
		launchCh: make(chan func()),
		sigCh:    make(chan os.Signal, 1),
		torn:     make(chan struct{}),
		deadline: time.Now().Add(budget),
	}
	if d, ok := t.Deadline(); ok && d.Add(-20*time.Second).Before(l.deadline) {
		l.deadline = d.Add(-20 * time.Second)
	}
	l.sw = l.prefix + "sw"

	// Node processes are forked from this one locked thread, which lives
	// as long as the lab: Pdeathsig fires when the thread that forked a
	// child ends, and a thread of a Go program can end under it otherwise.
	go func() {
		runtime.LockOSThread()
		for f := range l.launchCh {
			f()
		}
		// Returning while locked ends the thread: any node still alive
		// gets its SIGKILL.
	}()
	// Ctrl-C and SIGTERM skip t.Cleanup; tear down, then die of the
	// signal as before.
	signal.Notify(l.sigCh, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig, ok := <-l.sigCh
		if !ok {
			return
		}
		l.teardown()
		signal.Reset(sig)
		syscall.Kill(os.Getpid(), sig.(syscall.Signal))
	}()
	// Registered before anything exists, so that it runs whatever fails.
	t.Cleanup(func() {
		l.teardown()
		var left []string
		for _, name := range netnsList() {
			if strings.HasPrefix(name, l.prefix) {
				left = append(left, name)
			}
		}
		if len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})

	l.addNetns(l.sw)
	l.must("-n", l.sw, "link", "set", "lo", "up")
	l.must("-n", l.sw, "link", "add", "br0", "type", "bridge")
	l.must("-n", l.sw, "link", "set", "br0", "up")
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("%sn%d", l.prefix, i+1)
		ip := fmt.Sprintf("%s%d", netnsSubnet, i+1)
		port := fmt.Sprintf("n%d", i+1)
		l.addNetns(ns)
		l.hosts = append(l.hosts, ns)
		l.ips = append(l.ips, ip)
		l.must("-n", ns, "link", "set", "lo", "up")
		// Both ends are created directly in their namespaces.
		l.must("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", l.sw)
		l.must("-n", l.sw, "link", "set", port, "master", "br0")
		l.must("-n", l.sw, "link", "set", port, "up")
		l.must("-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
		l.must("-n", ns, "link", "set", "eth0", "up")
	}
	return l
}

func (l *netLab) addNetns(name string) {
	l.t.Helper()
	if err := netnsIP("netns", "add", name); err != nil {
		l.t.Fatalf("cannot create a network namespace (root without CAP_SYS_ADMIN, or no netns support?): %v", err)
	}
	l.mu.Lock()
	l.made = append(l.made, name)
	l.mu.Unlock()
}

func (l *netLab) must(args ...string) {
	l.t.Helper()
	if err := netnsIP(args...); err != nil {
		l.t.Fatal(err)
	}
}

// teardown kills the nodes and removes every namespace; it runs once.
func (l *netLab) teardown() {
	l.stopOnce.Do(func() {
		signal.Stop(l.sigCh)
		close(l.sigCh)
		l.mu.Lock()
		nodes := append([]*nsNode(nil), l.nodes...)
		made := append([]string(nil), l.made...)
		hooks := append([]func(){}, l.hooks...)
		l.mu.Unlock()
		defer close(l.torn)
		for _, n := range nodes {
			n.Kill()
		}
		close(l.launchCh)
		for i := len(made) - 1; i >= 0; i-- {
			ns := made[i]
			// Anything still inside was started by this test (its nodes,
			// or a CLI call cut short).
			if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
				for _, f := range strings.Fields(string(out)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			// Deleting a namespace deletes its interfaces and so the
			// other ends of their veth pairs.
			if err := netnsIP("netns", "del", ns); err != nil {
				fmt.Fprintln(os.Stderr, "netns cleanup:", err)
			}
		}
		for _, h := range hooks {
			h()
		}
	})
}

// atTeardown registers f to run when the lab is torn down, whether by the
// test's cleanup or by a signal (tmpfs mounts, say, that outlive nothing).
func (l *netLab) atTeardown(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hooks = append(l.hooks, f)
}

// isolate unplugs host i from the switch; heal plugs it back.
func (l *netLab) isolate(t *testing.T, i int) {
	t.Helper()
	if err := netnsIP("-n", l.sw, "link", "set", fmt.Sprintf("n%d", i+1), "down"); err != nil {
		t.Fatal(err)
	}
}

func (l *netLab) heal(t *testing.T, i int) {
	t.Helper()
	if err := netnsIP("-n", l.sw, "link", "set", fmt.Sprintf("n%d", i+1), "up"); err != nil {
		t.Fatal(err)
	}
}

// until is the end of a wait of timeout: never beyond the lab's
// deadline, so that a slow run fails with its cleanup rather than by go
// test's -timeout panic, which skips it.
func (l *netLab) until(timeout time.Duration) time.Time {
	return earliest(time.Now().Add(timeout), l.deadline)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// waitUntil is kit.Wait bounded by the lab's deadline.
func (l *netLab) waitUntil(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	if err := kit.Until(l.until(timeout), timeout, 50*time.Millisecond, func() string { return what }, cond); err != nil {
		t.Fatal(err)
	}
}

// spawn starts cmd from the lab's long-lived locked thread (Pdeathsig) and
// refuses once the lab is torn down.
func (l *netLab) spawn(cmd *exec.Cmd) (err error) {
	defer func() {
		if recover() != nil {
			err = errors.New("the lab is torn down")
		}
	}()
	done := make(chan error, 1)
	l.launchCh <- func() { done <- cmd.Start() }
	return <-done
}

// netnsDo runs fn on an OS thread that is inside namespace ns for the
// duration of the call.
func netnsDo(ns string, fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsDir, ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := netnsSet(target.Fd()); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		fn()
		if err := netnsSet(orig.Fd()); err != nil {
			// Stay locked: the runtime ends this thread when the
			// goroutine returns, so no other goroutine inherits it.
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

func netnsSet(fd uintptr) error {
	return unix.Setns(int(fd), unix.CLONE_NEWNET)
}

// dialNetns opens a TCP connection from inside namespace ns. addr must be
// an IP literal: no name is resolved.
func dialNetns(ctx context.Context, ns, addr string) (net.Conn, error) {
	var conn net.Conn
	var derr error
	if err := netnsDo(ns, func() {
		// For an IP literal with no fallback the dialer creates and
		// connects the socket on this goroutine, hence on this thread.
		d := net.Dialer{Timeout: 3 * time.Second}
		conn, derr = d.DialContext(ctx, "tcp", addr)
	}); err != nil {
		return nil, err
	}
	return conn, derr
}

// nsNode is one `lifeline node` inside its own namespace: started with
// `ip netns exec` from the lab's locked thread, reached by dialing from
// inside the namespace, and asked with the CLI run there, as an operator
// on that host would.
type nsNode struct {
	*kit.Node
	lab *netLab
	idx int
	ns  string
	ip  string
}

// newNode is the node of host i. Every node has its own namespace, so all
// use the same ports.
func (l *netLab) newNode(i int, dataDir, token string, env ...string) *nsNode {
	ns, ip := l.hosts[i], l.ips[i]
	id := fmt.Sprintf("n%d", i+1)
	return &nsNode{lab: l, idx: i, ns: ns, ip: ip, Node: &kit.Node{
		ID: id, Bin: binary, DataDir: dataDir, LogPath: filepath.Join(dataDir, "node.log"),
		SMTP: ip + ":2525", HTTP: ip + ":8080", Raft: ip + ":7000", Gossip: ip + ":7946",
		Token: token, Hostname: id + ".lifeline.test", Env: env,
		// `ip netns exec` execs the command in place, so the process
		// started is the node itself.
		Wrap:        func(argv []string) []string { return append([]string{"ip", "netns", "exec", ns}, argv...) },
		Spawn:       l.spawn,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return dialNetns(ctx, ns, addr) },
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}}
}

// startNetnsCluster runs one node on each host of the lab, all joined and
// expecting each other, and waits until every node is healthy.
func (l *netLab) startNetnsCluster(t *testing.T, token, clusterKey string) []*nsNode {
	t.Helper()
	var nodes []*nsNode
	var all []*kit.Node
	for i := range l.hosts {
		n := l.newNode(i, t.TempDir(), token, "LIFELINE_CLUSTER_KEY="+clusterKey)
		nodes = append(nodes, n)
		all = append(all, n.Node)
	}
	for i, n := range nodes {
		n.Args = append(kit.JoinArgs(all, i), "--log-level", "info")
	}
	for _, n := range nodes {
		n.launch(t)
	}
	for _, n := range nodes {
		l.waitUntil(t, n.ID+" healthy", 30*time.Second, func() (bool, error) { return n.healthz() == http.StatusOK, nil })
	}
	return nodes
}

// launch starts the node for test t, which shows the end of its log if it
// fails; the lab kills it at teardown.
func (n *nsNode) launch(t *testing.T) {
	t.Helper()
	if _, err := n.Launch(); err != nil {
		t.Fatal(err)
	}
	n.lab.mu.Lock()
	n.lab.nodes = append(n.lab.nodes, n)
	n.lab.mu.Unlock()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node %s log:%s", n.ID, n.LogTail(60))
		}
	})
}

// cli runs `lifeline ARGS...` against this node from inside its namespace.
func (n *nsNode) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return n.CLI(ctx, args...)
}

func (n *nsNode) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.cli(args...)
	if err != nil {
		t.Fatalf("%s: lifeline %s: %v", n.ID, strings.Join(args, " "), err)
	}
	return out
}

func (n *nsNode) status() (kit.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return n.CLIStatus(ctx)
}

// healthz returns the status code of GET /healthz, or 0 when the node
// could not be asked.
func (n *nsNode) healthz() int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	code, _, _ := n.Health(ctx)
	return code
}

// send runs one SMTP transaction from inside the node's namespace and
// returns the final reply. Cancelling ctx aborts it (its outcome is then
// unknown). An error means no final reply was read.
func (n *nsNode) send(ctx context.Context, from, to, body string) (string, error) {
	// Longer than the node's own 30 s commit timeout, so a slow 451 is
	// read rather than cut off.
	d := kit.Dialer{DialContext: n.DialContext, Hello: "partition.example", Timeout: 45 * time.Second}
	res, err := d.Send(ctx, n.SMTP, from, []string{to}, []byte(body))
	return res.Reply.String(), err
}
