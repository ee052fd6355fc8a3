package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lifeline/e2e/kit"
	"lifeline/fsm"
)

// The "next release" for the rolling-upgrade test: today's tree plus files
// laid over it at build time (go build -overlay), so the test needs no git
// history and leaves the tree untouched. The next release writes two
// command types this release does not know (docs/design.md §3.3):
//
//   - one flagged ignorable: while it leads, it commits a version
//     announcement every 200ms. A node of this release must skip those
//     entries and keep going.
//   - one not ignorable (nextFSMSrc, given its row in the command table
//     by patching fsm/commands.go): every next-release node tries to commit
//     one every 500ms until it succeeds. A node of this release would stop
//     on it, so the cluster must refuse it until every node runs the next
//     release, and then commit it everywhere.
const nextNodeSrc = `package node

import (
	"bytes"
	"context"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"lifeline/fsm"
)

// ProposeUpgradeMark commits the next release's non-ignorable command.
func (n *Node) ProposeUpgradeMark(ctx context.Context) error {
	return n.Apply(ctx, &fsm.UpgradeMark{Node: n.cfg.ID})
}

// typeVersionAnnounce is new in the next release; older nodes skip it.
const typeVersionAnnounce = fsm.IgnorableFlag | 0x3f

// AnnounceVersion commits one ignorable command carrying this build's
// version.
func (n *Node) AnnounceVersion(ctx context.Context, version string) error {
	var buf bytes.Buffer
	buf.WriteByte(byte(typeVersionAnnounce))
	if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(map[string]string{"node": n.cfg.ID, "version": version}); err != nil {
		return err
	}
	_, err := n.cluster.Apply(ctx, buf.Bytes())
	return err
}

// IsLeader reports whether this node leads now.
func (n *Node) IsLeader() bool { return n.cluster.IsLeader() }
`

const nextMainSrc = `package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"lifeline/cluster"
	"lifeline/node"
)

// The next release's node command: the same node, plus the announcement
// loop while it leads.
func init() {
	if len(os.Args) < 2 || os.Args[1] != "node" {
		return
	}
	fs := flag.NewFlagSet("lifeline node", flag.ExitOnError)
	f := newNodeFlags(fs)
	fs.Parse(os.Args[2:])
	cfg, err := f.finish(fs, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lifeline node:", err)
		os.Exit(1)
	}
	n, err := node.Start(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lifeline node:", err)
		os.Exit(1)
	}
	cfg.Logger.Info("next release running", "version", "next")
	stop := make(chan struct{})
	go func() {
		announced := 0
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if !n.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := n.AnnounceVersion(ctx, "next")
			cancel()
			if err == nil {
				announced++
				if announced == 1 || announced%10 == 0 {
					cfg.Logger.Info("UPGRADE-TEST announced version", "count", announced)
				}
			}
		}
	}()
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			leader := n.IsLeader()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := n.ProposeUpgradeMark(ctx)
			cancel()
			if err == nil {
				cfg.Logger.Info("UPGRADE-TEST gated command committed", "leader", leader)
				return
			}
			var ue *cluster.UpgradeRequiredError
			if errors.As(err, &ue) {
				cfg.Logger.Info("UPGRADE-TEST gated command refused", "leader", leader, "err", err.Error())
			}
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	close(stop)
	n.Close()
	os.Exit(0)
}
`

// nextFSMSrc is the next release's new non-ignorable command type (%d is
// its number). Applying it only logs, which shows the test every node that
// applied it.
const nextFSMSrc = `package fsm

// TypeUpgradeMark is new in the next release and not ignorable: a node of
// the previous release stops on it.
const TypeUpgradeMark CommandType = %d

// UpgradeMark is the next release's new command.
type UpgradeMark struct {
	Node string ` + "`codec:\"n\"`" + `
}

func applyUpgradeMark(a *applier, c *UpgradeMark) error {
	a.logger.Info("UPGRADE-TEST applied gated command", "from", c.Node)
	return nil
}
`

// nextCommandsPatch gives nextFSMSrc's type its row in fsm/commands.go's
// table, which Encode, Decode and Apply all read: each string is an anchor
// in today's file and the code inserted after it.
var nextCommandsPatch = [][2]string{
	{"var commands = [256]commandRow{\n", "\tTypeUpgradeMark: applierRow(applyUpgradeMark),\n"},
}

// nextGatedType is the number of the next release's non-ignorable type:
// one this release neither knows nor counts in the baseline, or the test
// would prove nothing.
func nextGatedType(t *testing.T) fsm.CommandType {
	t.Helper()
	const typ fsm.CommandType = 0x7f
	if fsm.KnownTypes().Has(typ) || !fsm.Gated(typ) {
		t.Fatalf("type %d is known to this release or not gated: pick another number for the next release's new type", typ)
	}
	return typ
}

// patchSource returns src with each patch's code inserted after its
// anchor, and fails the test when an anchor is not found exactly once:
// a silently unpatched file would build a next release without the new
// type, and the test would pass without testing it.
func patchSource(t *testing.T, path string, patch [][2]string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, p := range patch {
		if n := strings.Count(src, p[0]); n != 1 {
			t.Fatalf("building the next release: %s contains %q %d times, want once; update nextCommandsPatch in e2e/upgrade_test.go", path, p[0], n)
		}
		src = strings.Replace(src, p[0], p[0]+p[1], 1)
	}
	return src
}

// buildNext builds the next release into dir.
func buildNext(t *testing.T, gated fsm.CommandType) string {
	t.Helper()
	dir := t.TempDir()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	nodeFile, mainFile := filepath.Join(dir, "next_node.go"), filepath.Join(dir, "next_main.go")
	fsmFile, commandsFile := filepath.Join(dir, "next_fsm.go"), filepath.Join(dir, "commands.go")
	commandsPath := filepath.Join(root, "fsm", "commands.go")
	for file, src := range map[string]string{
		nodeFile:     nextNodeSrc,
		mainFile:     nextMainSrc,
		fsmFile:      fmt.Sprintf(nextFSMSrc, gated),
		commandsFile: patchSource(t, commandsPath, nextCommandsPatch),
	} {
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	overlay, _ := json.Marshal(map[string]map[string]string{"Replace": {
		filepath.Join(root, "node", "zz_upgrade_next.go"): nodeFile,
		filepath.Join(root, "zz_upgrade_next.go"):         mainFile,
		filepath.Join(root, "fsm", "zz_upgrade_next.go"):  fsmFile,
		commandsPath: commandsFile,
	}})
	overlayFile := filepath.Join(dir, "overlay.json")
	os.WriteFile(overlayFile, overlay, 0o644)
	bin := filepath.Join(dir, "lifeline-next")
	cmd := exec.Command("go", "build", "-overlay", overlayFile, "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the next release: %v\n%s", err, out)
	}
	return bin
}

// logLines returns the JSON log lines of p's node.log, across restarts,
// whose message is msg.
func logLines(p *kit.Proc, msg string) []map[string]any {
	b, _ := os.ReadFile(filepath.Join(p.DataDir, "node.log"))
	var out []map[string]any
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// mailFeed sends a message every few tens of milliseconds to whichever
// node answers, as a sending MTA works through the MX records, and keeps
// what was acknowledged and the longest time without a 250.
type mailFeed struct {
	mu      sync.Mutex
	acked   map[int]bool
	lastAck time.Time
	maxGap  time.Duration
	refused []string
	stop    chan struct{}
	done    chan struct{}
}

func startMailFeed(t *testing.T, procs []*kit.Proc) *mailFeed {
	f := &mailFeed{acked: map[int]bool{}, lastAck: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for i := 0; ; i++ {
			select {
			case <-f.stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			body := fmt.Sprintf("From: s@example.net\r\nTo: u@customer.test\r\nSubject: msg %d\r\n\r\nrolling upgrade %d\r\n", i, i)
			for k := range procs {
				p := procs[(i+k)%len(procs)]
				sent, err := kit.Send(p.SMTP, "s@example.net", []string{"u@customer.test"}, body)
				reply := sent.String()
				if err != nil {
					continue // this MX is down: try the next
				}
				f.mu.Lock()
				if strings.HasPrefix(reply, "250 ") {
					f.acked[i] = true
					if gap := time.Since(f.lastAck); gap > f.maxGap {
						f.maxGap = gap
					}
					f.lastAck = time.Now()
				} else if !strings.HasPrefix(reply, "451 ") {
					f.refused = append(f.refused, reply)
				}
				f.mu.Unlock()
				break
			}
		}
	}()
	return f
}

func (f *mailFeed) finish() (acked map[int]bool, maxGap time.Duration, refused []string) {
	close(f.stop)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acked, f.maxGap, f.refused
}

func (f *mailFeed) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.acked)
}

// The rolling upgrade of README "Rolling upgrade": three nodes on this
// release take mail while, one at a time, each hands off leadership if it
// has it, stops, and starts again from the next release with the same data
// directory. The mixed cluster is exercised both ways: a next-release
// leader writing a command type the old followers do not know (they skip
// it, as it is flagged ignorable), and old leaders with new followers.
// The next release's non-ignorable command type is refused while any node
// runs this release, so no old node stops on it, and commits on every node
// once all three run the next release. Mail is taken throughout and every
// 250 is delivered.
func TestRollingUpgrade(t *testing.T) {
	gated := nextGatedType(t)
	next := buildNext(t, gated)
	sinkAddr := kit.FreePort(t)
	sink := kit.StartSink(t, sinkAddr)
	procs := startCluster(t, 3)
	procs[0].MustCLI("admin", "domain", "add", "customer.test", "--destination", sinkAddr)
	for _, p := range procs {
		kit.Wait(t, 10*time.Second, 50*time.Millisecond, p.ID+" to know the domain", func() (bool, error) {
			out, err := p.CLI("admin", "domain", "list")
			return err == nil && strings.Contains(out, "customer.test"), nil
		})
	}
	feed := startMailFeed(t, procs)

	upgraded := map[string]bool{}
	for round, p := range procs {
		// 1. Leadership off the node about to go.
		if st, err := p.Status(); err == nil && st.Cluster.State == "Leader" {
			p.MustCLI("admin", "cluster", "transfer")
			kit.Wait(t, 15*time.Second, 50*time.Millisecond, "leadership to leave "+p.ID, func() (bool, error) {
				st, err := p.Status()
				return err == nil && st.Cluster.State != "Leader" && st.Cluster.LeaderID != "", nil
			})
		}
		// 2. Stop, replace the binary, start with the same data directory.
		before := feed.count()
		p.Stop()
		p.Bin = next
		p.Launch()
		p.WaitHealthy()
		upgraded[p.ID] = true
		kit.Wait(t, 20*time.Second, 50*time.Millisecond, "three voters seen from "+p.ID, func() (bool, error) {
			st, err := p.Status()
			return err == nil && len(st.Cluster.Servers) == 3 && st.Cluster.LeaderID != "", nil
		})
		kit.Wait(t, 20*time.Second, 50*time.Millisecond, "mail after upgrading "+p.ID, func() (bool, error) { return feed.count() > before+5, nil })

		// 3. After the first replacement: the new node leads a cluster
		// of old nodes for a while.
		if round == 0 {
			p.MustCLI("admin", "cluster", "transfer", "--to", p.ID)
			kit.Wait(t, 15*time.Second, 50*time.Millisecond, p.ID+" (next release) to lead", func() (bool, error) {
				st, err := p.Status()
				return err == nil && st.Cluster.State == "Leader", nil
			})
			kit.Wait(t, 15*time.Second, 50*time.Millisecond, "the next release to announce itself", func() (bool, error) {
				b, _ := os.ReadFile(filepath.Join(p.DataDir, "node.log"))
				return strings.Count(string(b), "UPGRADE-TEST announced version") >= 2, nil
			})
			st, _ := p.Status()
			target := st.Cluster.AppliedIndex
			for _, q := range procs {
				if upgraded[q.ID] {
					continue
				}
				kit.Wait(t, 15*time.Second, 50*time.Millisecond, "old node "+q.ID+" to apply the new entries", func() (bool, error) {
					st, err := q.Status()
					return err == nil && st.Cluster.AppliedIndex >= target && st.Healthy, nil
				})
			}
			t.Logf("old followers applied past index %d, which holds commands of a type they do not know", target)

			// The new leader's own non-ignorable type is refused, naming
			// a node that does not know it.
			var refusal string
			kit.Wait(t, 15*time.Second, 50*time.Millisecond, "the next-release leader's gated command to be refused", func() (bool, error) {
				for _, l := range logLines(p, "UPGRADE-TEST gated command refused") {
					if l["leader"] == true && strings.Contains(fmt.Sprint(l["err"]), fmt.Sprintf("command type %d needs every node upgraded", gated)) {
						refusal = fmt.Sprint(l["err"])
						return true, nil
					}
				}
				return false, nil
			})
			t.Logf("the next-release leader's gated command was refused: %s", refusal)
		}
		// While any node runs this release, nothing of the new type
		// reaches the log.
		if round < len(procs)-1 {
			for _, q := range procs {
				if n := len(logLines(q, "UPGRADE-TEST gated command committed")) + len(logLines(q, "UPGRADE-TEST applied gated command")); n > 0 {
					t.Fatalf("%s committed or applied the gated command type while the cluster was mixed", q.ID)
				}
			}
		}
	}

	// With every node on the next release the gated type commits, once
	// from each node, and every node applies all three.
	for _, p := range procs {
		kit.Wait(t, 30*time.Second, 50*time.Millisecond, p.ID+" to commit its gated command", func() (bool, error) {
			return len(logLines(p, "UPGRADE-TEST gated command committed")) == 1, nil
		})
	}
	for _, p := range procs {
		kit.Wait(t, 15*time.Second, 50*time.Millisecond, p.ID+" to apply every gated command", func() (bool, error) {
			from := map[string]bool{}
			for _, l := range logLines(p, "UPGRADE-TEST applied gated command") {
				from[fmt.Sprint(l["from"])] = true
			}
			return len(from) == len(procs), nil
		})
	}

	// The whole cluster runs the next release.
	for _, p := range procs {
		b, _ := os.ReadFile(filepath.Join(p.DataDir, "node.log"))
		if !strings.Contains(string(b), "next release running") {
			t.Fatalf("%s does not run the next release", p.ID)
		}
		if strings.Contains(string(b), "panic") {
			t.Fatalf("%s panicked during the upgrade", p.ID)
		}
	}
	// The cluster of the next release takes mail before the feed stops.
	before := feed.count()
	kit.Wait(t, 20*time.Second, 50*time.Millisecond, "mail taken by the upgraded cluster", func() (bool, error) { return feed.count() > before+5, nil })
	acked, maxGap, refused := feed.finish()
	if len(refused) > 0 {
		t.Fatalf("mail refused during the upgrade: %q", refused)
	}
	if maxGap > 10*time.Second {
		t.Errorf("the cluster took no mail for %s during the upgrade", maxGap)
	}
	leader := kit.Leader(procs)
	if leader == nil {
		t.Fatal("no leader after the upgrade")
	}
	leader.MustCLI("admin", "queue", "flush")
	kit.Wait(t, 90*time.Second, 50*time.Millisecond, "every acknowledged message to be delivered", func() (bool, error) {
		out, err := leader.CLI("admin", "queue", "list")
		return err == nil && strings.Contains(out, "\n0 messages"), nil
	})
	seen := map[int]bool{}
	for _, m := range sink.Messages() {
		var num int
		if _, err := fmt.Sscanf(subjectOf(m), "msg %d", &num); err == nil {
			seen[num] = true
		}
	}
	for num := range acked {
		if !seen[num] {
			t.Errorf("message %d got 250 but never arrived", num)
		}
	}
	t.Logf("%d messages acknowledged during the rolling upgrade, all delivered; longest gap without a 250: %s", len(acked), maxGap.Round(time.Millisecond))
}
