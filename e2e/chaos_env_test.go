//go:build linux

package e2e

// The world of one chaos scenario (chaos_test.go): three lifeline nodes and
// a host for the customer's mail server, each in its own namespace on the
// netLab switch (netns_test.go); a supervisor that restarts a node that
// died on its own, as systemd would; the customer's server and the
// senders' domain as two smtp-sink processes; a load generator; a monitor
// of leadership; and a timeline of everything that happened.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// chaosTimeline is the scenario's log of faults, leadership changes and
// replies, kept on disk for a failing run.
type chaosTimeline struct {
	mu    sync.Mutex
	start time.Time
	w     *bufio.Writer
	f     *os.File
}

func newChaosTimeline(path string, start time.Time) (*chaosTimeline, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &chaosTimeline{start: start, f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (tl *chaosTimeline) at(when time.Time, format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.w == nil {
		return
	}
	fmt.Fprintf(tl.w, "%9.3fs  %s\n", when.Sub(tl.start).Seconds(), fmt.Sprintf(format, args...))
}

func (tl *chaosTimeline) log(format string, args ...any) { tl.at(time.Now(), format, args...) }

func (tl *chaosTimeline) close() {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.w != nil {
		tl.w.Flush()
		tl.f.Close()
		tl.w = nil
	}
}

// chaosNode is one lifeline process under the campaign's control.
type chaosNode struct {
	*nsNode
	env       *chaosEnv
	clockFile string
	mnt       string // the tmpfs that holds the data directory

	mu      sync.Mutex
	alive   bool          // a process was launched and its exit not yet handled
	exited  chan struct{} // closed when the current process's exit is handled
	down    bool          // a fault keeps it down: no restart
	stopped bool          // SIGSTOPped
	gen     int           // launches so far
	crashes []string      // exits the campaign did not cause
	// diskFull: a fault filled its disk; a node that cannot start or
	// stops then has a reason, and the supervisor starts it again.
	diskFull atomic.Bool
}

func (c *chaosNode) launch() error {
	c.mu.Lock()
	c.gen++
	gen := c.gen
	c.mu.Unlock()
	r, err := c.Launch()
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	c.mu.Lock()
	c.alive, c.exited, c.down, c.stopped = true, exited, false, false
	c.mu.Unlock()
	go func() {
		err := r.Err()
		c.mu.Lock()
		expected := c.down || c.env.closing.Load()
		c.alive = false
		c.mu.Unlock()
		close(exited)
		if !expected {
			c.env.tl.log("%s: process exited by itself (disk full: %v): %v", c.ID, c.diskFull.Load(), err)
			if !c.diskFull.Load() {
				c.mu.Lock()
				c.crashes = append(c.crashes, fmt.Sprintf("launch %d: %v", gen, err))
				c.mu.Unlock()
			}
			c.env.supervise(c)
		}
	}()
	return nil
}

// kill9 kills the node and waits until it is gone; it stays down until
// restart.
func (c *chaosNode) kill9() {
	c.mu.Lock()
	c.down = true
	alive, exited := c.alive, c.exited
	c.mu.Unlock()
	if !alive {
		return
	}
	c.Kill()
	<-exited
}

func (c *chaosNode) restart() error {
	c.mu.Lock()
	running := c.alive
	c.mu.Unlock()
	if running {
		return nil
	}
	return c.launch()
}

func (c *chaosNode) signal(sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.alive {
		return errors.New("not running")
	}
	if err := c.Signal(sig); err != nil {
		return err
	}
	c.stopped = sig == syscall.SIGSTOP
	return nil
}

func (c *chaosNode) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alive && !c.stopped
}

func (c *chaosNode) apiStatus(timeout time.Duration) (kit.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.APIStatus(ctx)
}

// newSink is an smtp-sink of the lab's customer host, which keeps every
// message in dir and its output in log.
func (e *chaosEnv) newSink(addr, dir, log string) *kit.Sink {
	ns := e.csNS
	return &kit.Sink{Addr: addr, Dir: dir, LogPath: log,
		Wrap:        func(argv []string) []string { return append([]string{"ip", "netns", "exec", ns}, argv...) },
		Spawn:       e.lab.spawn,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return dialNetns(ctx, ns, addr) },
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
}

// restartSink stops s and starts it again with the options of mode.
func restartSink(s *kit.Sink, mode ...string) error {
	s.Stop()
	s.Args = mode
	return s.Start(context.Background())
}

// chaosEnv is one scenario's cluster, servers, load and monitor.
type chaosEnv struct {
	t       *testing.T
	lab     *netLab
	dir     string
	tl      *chaosTimeline
	nodes   []*chaosNode
	csNS    string
	csIP    string
	sink    *kit.Sink // the customer's server
	dsnSink *kit.Sink // the senders' domain, where notices go
	token   string
	closing atomic.Bool

	mountMu sync.Mutex
	mounts  []string

	delayWarning time.Duration
	scenario     int

	txMu  sync.Mutex
	txns  []chaosTxn
	nextN atomic.Int64

	monMu      sync.Mutex
	leader     string // latest leader seen, "" when none
	leaderless []chaosInterval
	noLeader   time.Time // start of the current leaderless stretch
}

type chaosInterval struct{ from, to time.Time }

// supervise restarts a node that died on its own, after a second, unless
// a fault keeps it down or the scenario is over.
func (e *chaosEnv) supervise(c *chaosNode) {
	go func() {
		time.Sleep(time.Second)
		c.mu.Lock()
		skip := c.down || c.alive || e.closing.Load()
		c.mu.Unlock()
		if skip {
			return
		}
		e.tl.log("%s: supervisor restarts it", c.ID)
		if err := c.launch(); err != nil {
			e.tl.log("%s: restart failed: %v", c.ID, err)
		}
	}()
}

// mountTmpfs puts a small tmpfs at dir, so that a fault can fill it.
func (e *chaosEnv) mountTmpfs(dir, size string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %v: %s", dir, err, out)
	}
	e.mountMu.Lock()
	e.mounts = append(e.mounts, dir)
	e.mountMu.Unlock()
	return nil
}

func (e *chaosEnv) unmountAll() {
	e.mountMu.Lock()
	defer e.mountMu.Unlock()
	for _, m := range e.mounts {
		if out, err := exec.Command("umount", "-l", m).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "chaos cleanup: umount %s: %v %s\n", m, err, out)
		}
	}
	e.mounts = nil
}

// chaosSweepMounts unmounts the tmpfs left behind by an earlier run whose
// process no longer exists (killed before its cleanup ran).
func chaosSweepMounts(t *testing.T) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[2] != "tmpfs" || !strings.Contains(f[1], "/lifeline-chaos-") {
			continue
		}
		// .../lifeline-chaos-<pid>-<seed>/...
		rest := f[1][strings.Index(f[1], "/lifeline-chaos-")+len("/lifeline-chaos-"):]
		var pid int
		if _, err := fmt.Sscanf(rest, "%d-", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue
		}
		if exec.Command("umount", "-l", f[1]).Run() == nil {
			t.Logf("unmounted %s left behind by an earlier run", f[1])
		}
	}
}

// leaderNode returns the node the monitor last saw leading, or nil.
func (e *chaosEnv) leaderNode() *chaosNode {
	e.monMu.Lock()
	id := e.leader
	e.monMu.Unlock()
	for _, c := range e.nodes {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// monitor samples every node's view of leadership until ctx ends.
func (e *chaosEnv) monitor(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		states := make([]string, len(e.nodes))
		var wg sync.WaitGroup
		for i, c := range e.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if !c.running() {
					states[i] = "-"
					return
				}
				st, err := c.apiStatus(time.Second)
				if err != nil {
					states[i] = "?"
					return
				}
				states[i] = st.Cluster.State
			}()
		}
		wg.Wait()
		now := time.Now()
		leader := ""
		for i, s := range states {
			if s == "Leader" {
				leader = e.nodes[i].ID
			}
		}
		e.monMu.Lock()
		if leader != e.leader {
			e.tl.at(now, "leader: %q (states %v)", leader, states)
		}
		switch {
		case leader == "" && e.noLeader.IsZero():
			e.noLeader = now
		case leader != "" && !e.noLeader.IsZero():
			e.leaderless = append(e.leaderless, chaosInterval{e.noLeader, now})
			e.noLeader = time.Time{}
		}
		e.leader = leader
		e.monMu.Unlock()
		select {
		case <-ctx.Done():
			e.monMu.Lock()
			if !e.noLeader.IsZero() {
				e.leaderless = append(e.leaderless, chaosInterval{e.noLeader, time.Now()})
				e.noLeader = time.Time{}
			}
			e.monMu.Unlock()
			return
		case <-tick.C:
		}
	}
}

func (e *chaosEnv) longestLeaderless(from, to time.Time) time.Duration {
	e.monMu.Lock()
	defer e.monMu.Unlock()
	var longest time.Duration
	for _, iv := range e.leaderless {
		a, b := iv.from, iv.to
		if a.Before(from) {
			a = from
		}
		if b.After(to) {
			b = to
		}
		if d := b.Sub(a); d > longest {
			longest = d
		}
	}
	return longest
}

// load runs senders, each sending numbered messages to random nodes, one
// transaction at a time, until stop is closed. A transaction under way
// when stop closes runs to its end: its reply is part of the record.
func (e *chaosEnv) load(stop <-chan struct{}, senders int, seed uint64) {
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(s)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				num := int(e.nextN.Add(1))
				c := e.nodes[rng.IntN(len(e.nodes))]
				data := chaosMessage(e.scenario, num, rng)
				x := chaosTxn{Num: num, Node: c.ID, Start: time.Now()}
				x.Reply, x.DataSent, x.Err = chaosSend(c.nsNode, fmt.Sprintf("u%d@customer.test", num%7), data)
				x.End = time.Now()
				if _, after, ok := strings.Cut(x.Reply, "queued as "); ok && strings.HasPrefix(x.Reply, "250") {
					if f := strings.Fields(after); len(f) > 0 {
						x.QueueID = f[0]
					}
				}
				e.txMu.Lock()
				e.txns = append(e.txns, x)
				e.txMu.Unlock()
				what := x.Reply
				if what == "" {
					what = fmt.Sprintf("no reply (body sent: %v): %s", x.DataSent, x.Err)
				}
				e.tl.at(x.End, "msg %d via %s: %s (took %v)", num, c.ID, what, x.End.Sub(x.Start).Round(time.Millisecond))
				if !x.acked() {
					// A refused or unreachable node: do not spin on it.
					select {
					case <-stop:
					case <-time.After(time.Duration(50+rng.IntN(150)) * time.Millisecond):
					}
				}
			}
		}()
	}
	wg.Wait()
}

// chaosSend runs one SMTP transaction from inside n's namespace. It
// returns the final reply, whether the body went out in full, and the
// error that ended it without a reply.
func chaosSend(n *nsNode, rcpt string, data []byte) (reply string, dataSent bool, errText string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Longer than the node's own write timeouts, so a slow 451 is read,
	// and longer than the longest pause a fault causes.
	d := kit.Dialer{DialContext: n.DialContext, Hello: "load.sender.test", Timeout: 50 * time.Second}
	res, err := d.Send(ctx, n.SMTP, "load@sender.test", []string{rcpt}, data)
	if err != nil {
		return "", res.DataSent, err.Error()
	}
	return res.Reply.String(), res.DataSent, ""
}

func (e *chaosEnv) transactions() []chaosTxn {
	e.txMu.Lock()
	defer e.txMu.Unlock()
	out := append([]chaosTxn(nil), e.txns...)
	sort.Slice(out, func(i, j int) bool { return out[i].Num < out[j].Num })
	return out
}

// nodeLogProblems scans the node logs for what must never happen: a panic,
// a data race, a fatal runtime error.
func (e *chaosEnv) nodeLogProblems() []string {
	var out []string
	for _, c := range e.nodes {
		f, err := os.Open(c.LogPath)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") || strings.Contains(line, "WARNING: DATA RACE") {
				out = append(out, fmt.Sprintf("%s: %s", c.ID, line))
			}
		}
		f.Close()
	}
	return out
}

// copyTail copies the last n bytes of a file into w.
func copyTail(w io.Writer, path string, n int64) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() > n {
		f.Seek(-n, io.SeekEnd)
	}
	io.Copy(w, f)
}
