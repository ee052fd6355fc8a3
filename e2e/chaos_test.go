//go:build linux

package e2e

// The fault campaign (issue 5): randomized, combined faults against a real
// three-node cluster in network namespaces, under load, with a checker
// that reads every outcome (chaos_check_test.go).
//
// Each scenario builds a fresh lab (netns_test.go): nodes n1..n3, each in
// its own namespace with its data directory on a small tmpfs, and a fourth
// host for the customer's mail server (smtp-sink on :25) and the senders'
// domain (smtp-sink on :26, where every DSN goes). A load generator sends
// numbered messages to random nodes and records every reply. Faults are
// drawn from the scenario's seed and overlap:
//
//	kill -9 of the leader or of a follower (restarted later, same data)
//	SIGSTOP of a node for 2-15 s
//	the leader or a follower unplugged; a partial partition (two nodes
//	  that cannot see each other, both seeing the third); a flapping link
//	packet loss and delay (tc netem on both ends of the node's cable; a
//	  kernel without sch_netem gets a narrow tbf link that queues and drops)
//	the customer's server stopped, unreachable, slow (-w) or answering 4xx
//	a node's clock hours ahead (LIFELINE_TEST_CLOCK_FILE)
//	a node's disk full (its tmpfs filled with a file, then freed)
//
// Then every fault is healed, the spool must drain, and the checker reads
// what the customer's server and the senders' domain received.
//
// Settings come from the environment (the Makefile's `make chaos` sets them):
//
//	LIFELINE_CHAOS=1              the full campaign: 20 scenarios of 60 s
//	LIFELINE_CHAOS_SEED=n         replay: scenario i uses seed n+i
//	LIFELINE_CHAOS_SCENARIOS=n    how many scenarios
//	LIFELINE_CHAOS_DURATION=60s   how long the load and the faults last
//	LIFELINE_CHAOS_DIR=dir        where runs are kept (default: $TMPDIR)
//	LIFELINE_CHAOS_KEEP=1         keep the logs of passing scenarios too
//
// Without LIFELINE_CHAOS it runs the short form that `make test` runs in CI:
// 3 scenarios of 20 s. It needs root and iproute2, and skips without them
// or under -short.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

type chaosConfig struct {
	seed      int64
	scenarios int
	duration  time.Duration
	dir       string
	keep      bool
}

func chaosConfigFromEnv(t *testing.T) chaosConfig {
	c := chaosConfig{seed: time.Now().UnixNano() % 1_000_000_000, scenarios: 3, duration: 20 * time.Second, dir: os.TempDir()}
	if os.Getenv("LIFELINE_CHAOS") == "1" {
		c.scenarios, c.duration = 20, 60*time.Second
	}
	if v := os.Getenv("LIFELINE_CHAOS_SEED"); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("LIFELINE_CHAOS_SEED=%q: %v", v, err)
		}
		c.seed = s
	}
	if v := os.Getenv("LIFELINE_CHAOS_SCENARIOS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("LIFELINE_CHAOS_SCENARIOS=%q: want a positive number", v)
		}
		c.scenarios = n
	}
	if v := os.Getenv("LIFELINE_CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second {
			t.Fatalf("LIFELINE_CHAOS_DURATION=%q: want a duration of at least 10s", v)
		}
		c.duration = d
	}
	if v := os.Getenv("LIFELINE_CHAOS_DIR"); v != "" {
		c.dir = v
	}
	c.keep = os.Getenv("LIFELINE_CHAOS_KEEP") == "1"
	return c
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault campaign takes minutes; not under -short")
	}
	requireNetns(t)
	if _, err := os.Stat("/usr/sbin/smtp-sink"); err != nil {
		if _, err := exec.LookPath("smtp-sink"); err != nil {
			t.Skip("smtp-sink is missing: install Debian's postfix package (.ci/run does)")
		}
	}
	chaosSweepMounts(t)
	cfg := chaosConfigFromEnv(t)
	campaign := filepath.Join(cfg.dir, fmt.Sprintf("lifeline-chaos-%d-%d", os.Getpid(), cfg.seed))
	if err := os.MkdirAll(campaign, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Logf("chaos: seed %d, %d scenarios of %v; replay with: make chaos SEED=%d SCENARIOS=%d DURATION=%v",
		cfg.seed, cfg.scenarios, cfg.duration, cfg.seed, cfg.scenarios, cfg.duration)
	var reports []chaosScenarioResult
	for i := 0; i < cfg.scenarios; i++ {
		seed := cfg.seed + int64(i)
		res := &chaosScenarioResult{idx: i + 1, seed: seed}
		ok := t.Run(fmt.Sprintf("scenario-%02d-seed-%d", i+1, seed), func(t *testing.T) {
			runChaosScenario(t, cfg, res, campaign)
		})
		res.failed = !ok
		reports = append(reports, *res)
	}
	chaosSummary(t, cfg, reports, campaign)
}

// chaosScenarioResult is one scenario's line in the campaign's summary.
type chaosScenarioResult struct {
	idx    int
	seed   int64
	ran    bool
	failed bool
	rep    chaosReport
	faults []string
	dir    string
}

func chaosSummary(t *testing.T, cfg chaosConfig, res []chaosScenarioResult, campaign string) {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos campaign: seed %d, %d scenarios of %v\n", cfg.seed, cfg.scenarios, cfg.duration)
	fmt.Fprintf(&b, "%-4s %-11s %6s %6s %5s %8s %5s %5s %9s %9s %9s %7s  %s\n", "#", "seed", "sent", "acked", "lost", "phantoms", "dups", "DSNs",
		"unavail", "no-leader", "recovery", "drain", "faults")
	var tot chaosReport
	var worstUnavail, worstLeaderless, worstRecovery, worstDrain time.Duration
	failed := 0
	for _, r := range res {
		if !r.ran {
			fmt.Fprintf(&b, "%-4d %-11d did not run to the end\n", r.idx, r.seed)
			failed++
			continue
		}
		p := r.rep
		mark := ""
		if r.failed {
			mark = "  FAILED: " + r.dir
			failed++
		}
		fmt.Fprintf(&b, "%-4d %-11d %6d %6d %5d %8d %5d %5d %9s %9s %9s %7s  %s%s\n", r.idx, r.seed, p.Sent, p.Acked, p.Lost, p.Phantoms,
			p.Duplicates, p.DelayDSNs, roundD(p.LongestUnavailable), roundD(p.LongestLeaderless), roundD(p.SlowestRecovery), roundD(p.Drain),
			strings.Join(r.faults, "; "), mark)
		tot.Sent += p.Sent
		tot.Acked += p.Acked
		tot.Lost += p.Lost
		tot.Phantoms += p.Phantoms
		tot.Duplicates += p.Duplicates
		tot.DelayDSNs += p.DelayDSNs
		tot.Refused += p.Refused
		tot.Unanswered += p.Unanswered
		tot.EarlyDSNs += p.EarlyDSNs
		tot.TwiceDSNs += p.TwiceDSNs
		tot.DSNRedelivered += p.DSNRedelivered
		worstUnavail = max(worstUnavail, p.LongestUnavailable)
		worstLeaderless = max(worstLeaderless, p.LongestLeaderless)
		worstRecovery = max(worstRecovery, p.SlowestRecovery)
		worstDrain = max(worstDrain, p.Drain)
	}
	fmt.Fprintf(&b, "total: %d sent, %d acknowledged, %d lost, %d refused (%d phantoms), %d unanswered, %d duplicates, "+
		"%d delay DSNs (%d early, %d composed twice, %d delivered again after a change of leader)\n",
		tot.Sent, tot.Acked, tot.Lost, tot.Refused, tot.Phantoms, tot.Unanswered, tot.Duplicates, tot.DelayDSNs, tot.EarlyDSNs, tot.TwiceDSNs, tot.DSNRedelivered)
	fmt.Fprintf(&b, "worst: %v without a 250, %v without a leader, %v to recover from a fault, %v to drain\n",
		roundD(worstUnavail), roundD(worstLeaderless), roundD(worstRecovery), roundD(worstDrain))
	if failed > 0 {
		fmt.Fprintf(&b, "%d of %d scenarios FAILED; their logs and timelines are kept under %s\n", failed, len(res), campaign)
	}
	os.WriteFile(filepath.Join(campaign, "summary.txt"), []byte(b.String()), 0o600)
	t.Log("\n" + b.String())
	if failed == 0 && !cfg.keep {
		os.RemoveAll(campaign)
	}
}

func roundD(d time.Duration) string {
	return d.Round(100 * time.Millisecond).String()
}

// Fault kinds.
const (
	fKillLeader       = "kill-leader"
	fKillFollower     = "kill-follower"
	fPause            = "pause"
	fIsolateLeader    = "isolate-leader"
	fIsolateFollower  = "isolate-follower"
	fPartial          = "partial-partition"
	fFlap             = "flap"
	fNetem            = "netem"
	fSinkDown         = "server-stopped"
	fSinkUnreachable  = "server-unreachable"
	fSinkSlow         = "server-slow"
	fSink4xx          = "server-4xx"
	fClockAhead       = "clock-ahead"
	fDiskFull         = "disk-full"
	chaosSinkHostName = "customer"
)

var chaosFaultWeights = []struct {
	kind   string
	weight int
}{
	{fKillLeader, 3}, {fKillFollower, 2}, {fPause, 3}, {fIsolateLeader, 3}, {fIsolateFollower, 2},
	{fPartial, 2}, {fFlap, 2}, {fNetem, 2}, {fSinkDown, 2}, {fSinkUnreachable, 1}, {fSinkSlow, 2},
	{fSink4xx, 2}, {fClockAhead, 3}, {fDiskFull, 3},
}

// chaosFault is one planned fault. Everything about it comes from the
// scenario's seed; only which node is the leader when it strikes is up to
// the cluster.
type chaosFault struct {
	Kind  string
	Role  string // leader, follower, any
	At    time.Duration
	For   time.Duration
	Loss  int           // netem, percent
	Delay time.Duration // netem delay; flap period; slow server's wait
	Ahead time.Duration // clock
	Pick  uint64        // tie-breaker for choosing among candidate nodes
}

func (f chaosFault) String() string {
	s := fmt.Sprintf("%s@%v+%v", f.Kind, f.At.Round(100*time.Millisecond), f.For.Round(100*time.Millisecond))
	switch f.Kind {
	case fNetem:
		s += fmt.Sprintf("(loss %d%%, delay %v)", f.Loss, f.Delay)
	case fClockAhead:
		s += fmt.Sprintf("(%v)", f.Ahead)
	case fSinkSlow:
		s += fmt.Sprintf("(-w %d)", int(f.Delay.Seconds()))
	case fPause, fDiskFull, fFlap:
		s += "(" + f.Role + ")"
	}
	return s
}

// chaosPlan draws a scenario's faults from its seed.
func chaosPlan(seed int64, dur time.Duration) []chaosFault {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x11fe11e))
	total := 0
	for _, w := range chaosFaultWeights {
		total += w.weight
	}
	n := 1 + int(dur/(15*time.Second)) + rng.IntN(2)
	var plan []chaosFault
	for i := 0; i < n; i++ {
		x := rng.IntN(total)
		kind := ""
		for _, w := range chaosFaultWeights {
			if x < w.weight {
				kind = w.kind
				break
			}
			x -= w.weight
		}
		f := chaosFault{Kind: kind, Pick: rng.Uint64()}
		secs := func(lo, hi int) time.Duration {
			return time.Duration(lo)*time.Second + time.Duration(rng.Int64N(int64(hi-lo)*int64(time.Second)))
		}
		switch kind {
		case fKillLeader, fIsolateLeader:
			f.Role, f.For = "leader", secs(2, 15)
		case fKillFollower, fIsolateFollower:
			f.Role, f.For = "follower", secs(2, 15)
		case fPause:
			f.Role, f.For = []string{"leader", "follower"}[rng.IntN(2)], secs(2, 15)
		case fPartial:
			f.Role, f.For = "leader", secs(3, 15)
		case fFlap:
			f.Role, f.For, f.Delay = []string{"leader", "any"}[rng.IntN(2)], secs(4, 15), time.Duration(300+rng.IntN(1200))*time.Millisecond
		case fNetem:
			f.Role, f.For, f.Loss, f.Delay = "any", secs(4, 20), 5+rng.IntN(26), time.Duration(20+rng.IntN(180))*time.Millisecond
		case fSinkDown, fSinkUnreachable, fSink4xx:
			f.Role, f.For = chaosSinkHostName, secs(3, 25)
		case fSinkSlow:
			f.Role, f.For, f.Delay = chaosSinkHostName, secs(4, 20), time.Duration(1+rng.IntN(4))*time.Second
		case fClockAhead:
			f.Role, f.For, f.Ahead = []string{"leader", "follower"}[rng.IntN(2)], secs(5, 25), time.Duration(1+rng.IntN(5))*time.Hour
		case fDiskFull:
			f.Role, f.For = []string{"leader", "follower"}[rng.IntN(2)], secs(3, 15)
		}
		// Start anywhere in the load phase; end a little before it does,
		// so that recovery shows while the load still runs.
		latest := dur - 3*time.Second - f.For
		if latest < time.Second {
			f.For = dur - 4*time.Second
			latest = time.Second
		}
		f.At = time.Second + time.Duration(rng.Int64N(int64(latest-time.Second)+1))
		plan = append(plan, f)
	}
	return plan
}

// chaosDiskSize is each node's tmpfs. A minute of load spools up to
// 20,000 messages (about 250 MB of bodies, kept 15 minutes after they
// retire) plus the Raft log, snapshots and the message log: 256 MB filled
// up by itself in the first full run. tmpfs takes memory only as it is
// written, and the disk-full fault fills the rest.
const chaosDiskSize = "1g"

// chaosSenders is how many SMTP clients send at once; enough that a few
// stuck on an unreachable node do not starve the rest.
const chaosSenders = 6

// chaosDelayWarning is the delay-warning setting of a scenario: short
// enough that the customer's server being down earns DSNs.
func chaosDelayWarning(dur time.Duration) time.Duration {
	return max(8*time.Second, dur/4)
}

func runChaosScenario(t *testing.T, cfg chaosConfig, res *chaosScenarioResult, campaign string) {
	idx, seed := res.idx, res.seed
	plan := chaosPlan(seed, cfg.duration)
	for _, f := range plan {
		res.faults = append(res.faults, f.String())
	}
	dir := filepath.Join(campaign, fmt.Sprintf("scenario-%02d-seed-%d", idx, seed))
	res.dir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Logf("scenario %d, seed %d (replay alone: make chaos SEED=%d SCENARIOS=1 DURATION=%v): %s",
		idx, seed, seed, cfg.duration, strings.Join(res.faults, ", "))

	lab := newNetLab(t, 4, cfg.duration+6*time.Minute)
	tl, err := newChaosTimeline(filepath.Join(dir, "timeline.log"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e := &chaosEnv{t: t, lab: lab, dir: dir, tl: tl, token: netnsRandomHex(16), scenario: idx,
		csNS: lab.hosts[3], csIP: lab.ips[3], delayWarning: chaosDelayWarning(cfg.duration)}
	// Runs before the lab's own cleanup (registered first): stop the
	// processes, unmount, and keep the run's files only if it failed.
	t.Cleanup(func() {
		e.closing.Store(true)
		for _, c := range e.nodes {
			c.signal(syscall.SIGCONT)
			c.kill9()
		}
		for _, s := range []*kit.Sink{e.sink, e.dsnSink} {
			if s != nil {
				s.Stop()
			}
		}
		if t.Failed() {
			// The state and the Raft log, not the bodies, for a post mortem.
			for _, c := range e.nodes {
				for _, part := range []string{"state.db", "raft"} {
					exec.Command("cp", "-a", filepath.Join(c.DataDir, part), filepath.Join(e.dir, c.ID, "kept-"+part)).Run()
				}
			}
		}
		e.unmountAll()
		tl.close()
		if t.Failed() {
			for _, c := range e.nodes {
				t.Logf("node %s log: %s", c.ID, c.LogPath)
			}
			t.Logf("scenario %d FAILED; timeline, node logs and sink dumps are kept in %s", idx, dir)
		} else if !cfg.keep {
			os.RemoveAll(dir)
		}
	})
	lab.atTeardown(func() { e.closing.Store(true); e.unmountAll() })

	e.sink = e.newSink(e.csIP+":25", filepath.Join(dir, "customer"), filepath.Join(dir, "customer-sink.log"))
	e.dsnSink = e.newSink(e.csIP+":26", filepath.Join(dir, "dsn"), filepath.Join(dir, "dsn-sink.log"))
	for _, s := range []*kit.Sink{e.sink, e.dsnSink} {
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.startCluster(netnsRandomHex(32)); err != nil {
		t.Fatal(err)
	}

	// The load and the faults.
	start := time.Now()
	tl.start = start
	tl.log("scenario %d seed %d: load and faults begin: %s", idx, seed, strings.Join(res.faults, ", "))
	monCtx, stopMon := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { e.monitor(monCtx); close(monDone) }()
	defer func() { stopMon(); <-monDone }()
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() { e.load(stopLoad, chaosSenders, uint64(seed)); close(loadDone) }()
	faultCtx, stopFaults := context.WithCancel(context.Background())
	runner := &chaosRunner{e: e, rng: rand.New(rand.NewPCG(uint64(seed), 0xfa17)), busy: map[string]bool{}}
	var faultsWG sync.WaitGroup
	for _, f := range plan {
		faultsWG.Add(1)
		go func() {
			defer faultsWG.Done()
			runner.run(faultCtx, start, f)
		}()
	}
	select {
	case <-time.After(cfg.duration):
	case <-lab.sigDone():
	}
	stopFaults()
	faultsWG.Wait()
	loadEnd := time.Now()
	close(stopLoad)
	select {
	case <-loadDone:
	case <-time.After(90 * time.Second):
		t.Error("the load generator did not stop within 90s")
	}
	healedAt := time.Now()
	tl.log("load stopped; every fault healed")

	// Heal whatever is left and wait for the spool to drain.
	drained := e.drain(healedAt, lab.deadline)
	res.rep.Drain = time.Since(healedAt)
	stopMon()
	<-monDone

	// The checker.
	txns := e.transactions()
	var arrivals []chaosArrival
	if err := chaosReadDumps(e.sink.Dir, func(name string, at time.Time, raw []byte) {
		num, ok := chaosParseArrival(idx, raw)
		arrivals = append(arrivals, chaosArrival{Num: num, OK: ok, At: at, File: name, Empty: len(raw) == 0})
	}); err != nil {
		t.Error(err)
	}
	var dsns []chaosDSN
	if err := chaosReadDumps(e.dsnSink.Dir, func(name string, at time.Time, raw []byte) {
		q, kind, num, sum := chaosParseDSN(idx, raw)
		dsns = append(dsns, chaosDSN{QueueID: q, Kind: kind, Num: num, At: at, File: name, Sum: sum})
	}); err != nil {
		t.Error(err)
	}
	rep := chaosCheck(txns, arrivals, dsns, e.delayWarning, e.sink.StopTimes())
	rep.Drain = res.rep.Drain
	rep.LongestUnavailable = chaosLongestGap(txns, start, loadEnd)
	rep.LongestLeaderless = e.longestLeaderless(start, loadEnd)
	for _, h := range runner.healed() {
		if d, _ := chaosRecovery(txns, h.at, loadEnd); d > rep.SlowestRecovery {
			rep.SlowestRecovery, rep.SlowestRecoveryOf = d, h.what
		}
	}
	if !drained {
		rep.violate("the spool did not drain after every fault was healed (see the end of the timeline)")
	}
	for _, p := range e.nodeLogProblems() {
		rep.violate("node log: %s", p)
	}
	for _, c := range e.nodes {
		c.mu.Lock()
		for _, cr := range c.crashes {
			rep.violate("%s exited without being killed (%s); see %s", c.ID, cr, c.LogPath)
		}
		c.mu.Unlock()
	}
	res.rep = rep
	res.ran = true
	for _, v := range rep.Violations {
		t.Errorf("scenario %d (seed %d): %s", idx, seed, v)
		tl.log("VIOLATION: %s", v)
	}
	t.Logf("scenario %d seed %d: sent %d, acknowledged %d, lost %d, refused %d (phantoms %d), unanswered %d (%d delivered), duplicates %d, "+
		"delay DSNs %d; longest without a 250 %v, without a leader %v; slowest recovery %v (%s); drained %v after healing",
		idx, seed, rep.Sent, rep.Acked, rep.Lost, rep.Refused, rep.Phantoms, rep.Unanswered, rep.UnansweredDelivered, rep.Duplicates,
		rep.DelayDSNs, roundD(rep.LongestUnavailable), roundD(rep.LongestLeaderless), roundD(rep.SlowestRecovery), rep.SlowestRecoveryOf, roundD(rep.Drain))
	if rep.Acked == 0 {
		t.Errorf("scenario %d: no message was acknowledged at all", idx)
	}
}

// startCluster mounts each node's tmpfs and starts the three nodes.
func (e *chaosEnv) startCluster(clusterKey string) error {
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("n%d", i+1)
		ndir := filepath.Join(e.dir, id)
		mnt := filepath.Join(ndir, "data")
		if err := e.mountTmpfs(mnt, chaosDiskSize); err != nil {
			return err
		}
		n := e.lab.newNode(i, filepath.Join(mnt, "node"), e.token)
		n.LogPath, n.MarkLaunches = filepath.Join(ndir, "node.log"), true
		c := &chaosNode{env: e, mnt: mnt, clockFile: filepath.Join(ndir, "clock"), nsNode: n}
		os.WriteFile(c.clockFile, nil, 0o600)
		n.Env = []string{"LIFELINE_CLUSTER_KEY=" + clusterKey, "LIFELINE_TEST_CLOCK_FILE=" + c.clockFile}
		e.nodes = append(e.nodes, c)
	}
	var all []*kit.Node
	for _, c := range e.nodes {
		all = append(all, c.Node)
	}
	for i, c := range e.nodes {
		c.Args = append(kit.JoinArgs(all, i), "--log-level", "info",
			"--delivery-lease", "5s", "--retry-schedule", "1s,2s,3s,5s", "--delay-warning", e.delayWarning.String(),
			"--queue-lifetime", "1h", "--remove-failed-after", "0", "--transport", "sender.test="+e.dsnSink.Addr)
	}
	for _, c := range e.nodes {
		if err := c.launch(); err != nil {
			return err
		}
	}
	var leader *chaosNode
	if err := e.waitUntil("three voters and a leader seen by every node", 60*time.Second, func() (bool, error) {
		leaderID := ""
		for _, c := range e.nodes {
			st, err := c.apiStatus(2 * time.Second)
			if err != nil || !st.Healthy || st.Cluster.LeaderID == "" || len(st.Cluster.Servers) != 3 {
				return false, nil
			}
			if leaderID != "" && leaderID != st.Cluster.LeaderID {
				return false, nil
			}
			leaderID = st.Cluster.LeaderID
		}
		for _, c := range e.nodes {
			if c.ID == leaderID {
				leader = c
			}
		}
		return leader != nil, nil
	}); err != nil {
		return err
	}
	if _, err := leader.cli("admin", "domain", "add", "customer.test", "--destination", e.sink.Addr); err != nil {
		return err
	}
	return e.waitUntil("the domain on every node", 20*time.Second, func() (bool, error) {
		for _, c := range e.nodes {
			if out, err := c.cli("admin", "domain", "list"); err != nil || !strings.Contains(out, "customer.test") {
				return false, nil
			}
		}
		return true, nil
	})
}

// waitUntil polls cond until it holds, timeout passes or the lab's
// deadline comes.
func (e *chaosEnv) waitUntil(what string, timeout time.Duration, cond func() (bool, error)) error {
	return kit.Until(e.lab.until(timeout), timeout, 100*time.Millisecond, func() string { return what }, cond)
}

// drain brings every node back, then waits until every node agrees on the
// log and the spool is empty, flushing the queue now and then so that no
// retry timer stretches the wait. It reports whether it drained.
func (e *chaosEnv) drain(healedAt, deadline time.Time) bool {
	for _, c := range e.nodes {
		c.signal(syscall.SIGCONT)
		c.mu.Lock()
		c.stopped = false
		dead := !c.alive
		c.mu.Unlock()
		if dead {
			e.tl.log("%s: started again for the drain", c.ID)
			if err := c.launch(); err != nil {
				e.tl.log("%s: %v", c.ID, err)
			}
		}
	}
	lastFlush := time.Time{}
	last := ""
	drained := func() (bool, error) {
		var sts []kit.Status
		for _, c := range e.nodes {
			st, err := c.apiStatus(2 * time.Second)
			if err != nil {
				last = fmt.Sprintf("%s: %v", c.ID, err)
				return false, nil
			}
			sts = append(sts, st)
		}
		var leader *chaosNode
		for i, st := range sts {
			if st.Cluster.State == "Leader" {
				leader = e.nodes[i]
			}
		}
		agree := true
		for _, st := range sts {
			if !st.Healthy || st.Queue.Messages != 0 || st.Cluster.AppliedIndex != sts[0].Cluster.AppliedIndex {
				agree = false
			}
		}
		last = ""
		for i, st := range sts {
			last += fmt.Sprintf("%s: %s healthy=%v %q applied %d queue %d; ", e.nodes[i].ID, st.Cluster.State, st.Healthy, st.Problem,
				st.Cluster.AppliedIndex, st.Queue.Messages)
		}
		if agree && leader != nil {
			return true, nil
		}
		if leader != nil && time.Since(lastFlush) > 5*time.Second {
			lastFlush = time.Now()
			leader.cli("admin", "queue", "flush")
		}
		return false, nil
	}
	if kit.Until(earliest(time.Now().Add(4*time.Minute), deadline), 4*time.Minute, 250*time.Millisecond, func() string { return "" }, drained) == nil {
		e.tl.log("drained %v after healing: %s", time.Since(healedAt).Round(time.Millisecond), last)
		return true
	}
	e.tl.log("NOT DRAINED: %s", last)
	for _, c := range e.nodes {
		if out, err := c.cli("admin", "queue", "list"); err == nil {
			e.tl.log("%s queue:\n%s", c.ID, out)
			break
		}
	}
	return false
}

// chaosRunner applies planned faults to the running scenario. One fault of
// a class at a time per node: a node is not killed while paused, nor
// unplugged while its link flaps.
type chaosRunner struct {
	e   *chaosEnv
	mu  sync.Mutex
	rng *rand.Rand
	// busy holds "node/class" of faults under way.
	busy  map[string]bool
	heals []chaosHeal
}

type chaosHeal struct {
	at   time.Time
	what string
}

func (r *chaosRunner) healed() []chaosHeal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]chaosHeal(nil), r.heals...)
}

func chaosClass(kind string) string {
	switch kind {
	case fKillLeader, fKillFollower, fPause:
		return "process"
	case fIsolateLeader, fIsolateFollower, fPartial, fFlap, fNetem:
		return "net"
	case fClockAhead:
		return "clock"
	case fDiskFull:
		return "disk"
	}
	return "server"
}

// pick chooses the fault's node by role among those free for its class,
// and marks it busy.
func (r *chaosRunner) pick(f chaosFault) *chaosNode {
	leader := r.e.leaderNode()
	r.mu.Lock()
	defer r.mu.Unlock()
	class := chaosClass(f.Kind)
	if class == "clock" && r.busy["cluster/clock"] {
		// One wrong clock at a time: when a majority of the clocks jump
		// together, that is the cluster's time.
		return nil
	}
	var cands []*chaosNode
	for _, c := range r.e.nodes {
		if r.busy[c.ID+"/"+class] {
			continue
		}
		switch f.Role {
		case "leader":
			if leader != nil && c != leader {
				continue
			}
		case "follower":
			if c == leader {
				continue
			}
		}
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		return nil
	}
	c := cands[int(f.Pick%uint64(len(cands)))]
	r.busy[c.ID+"/"+class] = true
	if class == "clock" {
		r.busy["cluster/clock"] = true
	}
	return c
}

func (r *chaosRunner) release(id, class string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.busy, id+"/"+class)
	if class == "clock" {
		delete(r.busy, "cluster/clock")
	}
}

// run waits for the fault's time, applies it, holds it, and heals it; a
// cancelled ctx (the end of the load) heals at once.
func (r *chaosRunner) run(ctx context.Context, start time.Time, f chaosFault) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Until(start.Add(f.At))):
	}
	e := r.e
	var target *chaosNode
	class := chaosClass(f.Kind)
	id := chaosSinkHostName
	if class == "server" {
		r.mu.Lock()
		if r.busy[id+"/server"] {
			r.mu.Unlock()
			e.tl.log("fault %s skipped: the server already has a fault", f)
			return
		}
		r.busy[id+"/server"] = true
		r.mu.Unlock()
	} else {
		target = r.pick(f)
		if target == nil {
			e.tl.log("fault %s skipped: no free node for it", f)
			return
		}
		id = target.ID
	}
	defer r.release(id, class)
	heal, err := r.apply(f, target)
	if err != nil {
		e.tl.log("fault %s on %s FAILED to apply: %v", f, id, err)
		e.t.Errorf("fault %s on %s failed to apply: %v", f, id, err)
		return
	}
	e.tl.log("FAULT %s on %s begins", f, id)
	select {
	case <-ctx.Done():
	case <-time.After(f.For):
	}
	if err := heal(); err != nil {
		e.tl.log("fault %s on %s FAILED to heal: %v", f, id, err)
		e.t.Errorf("fault %s on %s failed to heal: %v", f, id, err)
	}
	now := time.Now()
	e.tl.at(now, "FAULT %s on %s healed", f, id)
	r.mu.Lock()
	r.heals = append(r.heals, chaosHeal{at: now, what: f.Kind + " " + id})
	r.mu.Unlock()
}

// apply starts a fault and returns what heals it.
func (r *chaosRunner) apply(f chaosFault, c *chaosNode) (func() error, error) {
	e := r.e
	sw := e.lab.sw
	port := func(c *chaosNode) string { return fmt.Sprintf("n%d", c.idx+1) }
	switch f.Kind {
	case fKillLeader, fKillFollower:
		c.kill9()
		return c.restart, nil
	case fPause:
		if err := c.signal(syscall.SIGSTOP); err != nil {
			return nil, err
		}
		return func() error { return c.signal(syscall.SIGCONT) }, nil
	case fIsolateLeader, fIsolateFollower:
		if err := netnsIP("-n", sw, "link", "set", port(c), "down"); err != nil {
			return nil, err
		}
		return func() error { return netnsIP("-n", sw, "link", "set", port(c), "up") }, nil
	case fPartial:
		// c and one other node lose each other; both still see the third.
		var other *chaosNode
		for _, o := range e.nodes {
			if o != c && (other == nil || f.Pick%2 == 0) {
				other = o
			}
		}
		if err := netnsIP("-n", c.ns, "route", "add", "blackhole", other.ip+"/32"); err != nil {
			return nil, err
		}
		if err := netnsIP("-n", other.ns, "route", "add", "blackhole", c.ip+"/32"); err != nil {
			netnsIP("-n", c.ns, "route", "del", "blackhole", other.ip+"/32")
			return nil, err
		}
		e.tl.log("partial partition: %s and %s cannot reach each other", c.ID, other.ID)
		return func() error {
			err1 := netnsIP("-n", c.ns, "route", "del", "blackhole", other.ip+"/32")
			err2 := netnsIP("-n", other.ns, "route", "del", "blackhole", c.ip+"/32")
			return errors.Join(err1, err2)
		}, nil
	case fFlap:
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			up := true
			for {
				select {
				case <-stop:
					return
				case <-time.After(f.Delay):
				}
				up = !up
				state := "down"
				if up {
					state = "up"
				}
				netnsIP("-n", sw, "link", "set", port(c), state)
			}
		}()
		return func() error {
			close(stop)
			<-done
			return netnsIP("-n", sw, "link", "set", port(c), "up")
		}, nil
	case fNetem:
		if _, err := exec.LookPath("tc"); err != nil {
			e.tl.log("tc is missing: netem fault not applied")
			return func() error { return nil }, nil
		}
		return chaosBadLink(e, c, f)
	case fSinkDown:
		e.sink.Stop()
		return func() error { return e.sink.Start(context.Background()) }, nil
	case fSinkUnreachable:
		if err := netnsIP("-n", sw, "link", "set", "n4", "down"); err != nil {
			return nil, err
		}
		return func() error { return netnsIP("-n", sw, "link", "set", "n4", "up") }, nil
	case fSinkSlow:
		if err := restartSink(e.sink, "-w", strconv.Itoa(int(f.Delay.Seconds()))); err != nil {
			return nil, err
		}
		return func() error { return restartSink(e.sink) }, nil
	case fSink4xx:
		// 450 to every RCPT: the message never reaches the dump.
		if err := restartSink(e.sink, "-r", "RCPT"); err != nil {
			return nil, err
		}
		return func() error { return restartSink(e.sink) }, nil
	case fClockAhead:
		if err := os.WriteFile(c.clockFile, []byte(f.Ahead.String()), 0o600); err != nil {
			return nil, err
		}
		return func() error { return os.WriteFile(c.clockFile, nil, 0o600) }, nil
	case fDiskFull:
		filler := filepath.Join(c.mnt, "filler")
		c.diskFull.Store(true)
		if err := chaosFill(filler); err != nil {
			c.diskFull.Store(false)
			return nil, err
		}
		return func() error {
			err := os.Remove(filler)
			c.diskFull.Store(false)
			return err
		}, nil
	}
	return nil, fmt.Errorf("unknown fault %q", f.Kind)
}

// chaosBadLink makes c's link lossy and slow: tc netem on both ends of its
// cable. A kernel without netem (some VMs lack sch_netem, and tc cannot
// load modules there) gets the next best thing from tbf: a narrow link
// whose queue delays packets and drops what overflows it.
func chaosBadLink(e *chaosEnv, c *chaosNode, f chaosFault) (func() error, error) {
	ends := [][]string{{"-n", c.ns, "eth0"}, {"-n", e.lab.sw, fmt.Sprintf("n%d", c.idx+1)}}
	tc := func(ns []string, args ...string) error {
		cmd := append([]string{"netns", "exec", ns[1], "tc", "qdisc"}, args...)
		if out, err := exec.Command("ip", cmd...).CombinedOutput(); err != nil {
			return fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	heal := func() error {
		var errs []error
		for _, end := range ends {
			// Deleting a qdisc that is not there is fine.
			if err := tc(end, "del", "dev", end[2], "root"); err != nil && !strings.Contains(err.Error(), "No such file") &&
				!strings.Contains(err.Error(), "Cannot delete qdisc with handle of zero") {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	netem := []string{"netem", "delay", f.Delay.String(), (f.Delay / 4).String(), "loss", fmt.Sprintf("%d%%", f.Loss)}
	// A rate that falls as the planned loss grows: 5% -> 4 Mbit/s,
	// 30% -> about 700 kbit/s; the queue holds at most the planned delay
	// (at least 50 ms) and drops what does not fit.
	rate := fmt.Sprintf("%dkbit", 20000/f.Loss)
	tbf := []string{"tbf", "rate", rate, "burst", "16kb", "latency", max(f.Delay, 50*time.Millisecond).String()}
	kind := "netem"
	for _, end := range ends {
		err := tc(end, append([]string{"add", "dev", end[2], "root"}, netem...)...)
		if err != nil && strings.Contains(err.Error(), "qdisc kind is unknown") {
			kind = "tbf"
			err = tc(end, append([]string{"add", "dev", end[2], "root"}, tbf...)...)
		}
		if err != nil {
			heal()
			return nil, err
		}
	}
	if kind == "tbf" {
		e.tl.log("no netem in this kernel: %s's link limited with tbf to %s, queue at most %v", c.ID, rate, max(f.Delay, 50*time.Millisecond))
	}
	return heal, nil
}

// chaosFill writes a file until the filesystem is full.
func chaosFill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xAA}, 1<<20)
	for _, size := range []int{1 << 20, 4 << 10, 512} {
		for i := 0; i < 1<<16; i++ {
			if _, err := f.Write(chunk[:size]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					return err
				}
				break
			}
		}
	}
	return nil
}

// sigDone is closed when the lab is torn down.
func (l *netLab) sigDone() <-chan struct{} {
	return l.torn
}
