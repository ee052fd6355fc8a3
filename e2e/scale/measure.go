package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"lifeline/cluster/blob"
	"lifeline/e2e/kit"
)

// measurement runs the steps of one scale run in order.
type measurement struct {
	o    options
	c    *kit.Cluster
	s    *sampler
	rep  *report
	logf func(string, ...any)
	tmp  string
	bin  string

	nodes  []*kit.Node // the three founding nodes
	dead   string      // the closed port the domain's mail goes to
	blobs  []string
	queued int
}

func (m *measurement) run(ctx context.Context) error {
	if err := m.startCluster(ctx); err != nil {
		return err
	}
	if err := m.addDomain(ctx); err != nil {
		return err
	}
	m.rep.LoadAvg = append(m.rep.LoadAvg, loadAvg())
	m.s.setPhase("fill")
	if err := m.fill(ctx); err != nil {
		return err
	}
	m.s.setPhase("settle")
	if err := m.settle(ctx); err != nil {
		return err
	}
	m.s.setPhase("snapshot")
	if err := m.snapshots(ctx); err != nil {
		return err
	}
	if m.o.flush {
		m.s.setPhase("flush")
		if err := m.flush(ctx); err != nil {
			return err
		}
	}
	m.s.setPhase("join")
	if err := m.join(ctx); err != nil {
		return err
	}
	m.s.setPhase("end")
	if ld, err := m.leader(ctx); err == nil {
		if q, err := queue(ctx, ld); err == nil {
			m.rep.AttemptsAtEnd = sampleAttempts(q, len(q))
		}
	}
	return nil
}

func (m *measurement) startCluster(ctx context.Context) error {
	m.logf("starting %d nodes in %s", clusterSize, m.tmp)
	for i := range clusterSize {
		id := fmt.Sprintf("n%d", i+1)
		n, err := m.c.NewNode(m.bin, m.tmp, id)
		if err != nil {
			return err
		}
		m.nodes = append(m.nodes, n)
		m.rep.node(id).Role = "founder"
	}
	for i, n := range m.nodes {
		n.Args = append(kit.JoinArgs(m.nodes, i), "--log-level", "warn")
		if _, err := n.Launch(); err != nil {
			return err
		}
		m.c.Add(n)
	}
	start := time.Now()
	if err := m.c.WaitFormed(ctx, 2*time.Minute); err != nil {
		return err
	}
	m.rep.FormSeconds = time.Since(start).Seconds()
	m.logf("cluster formed in %.1fs", m.rep.FormSeconds)
	return nil
}

// addDomain protects the domain with `lifeline admin domain add`, its
// destination a closed port, and waits until every node knows it.
func (m *measurement) addDomain(ctx context.Context) error {
	ports, err := kit.FreePorts(1)
	if err != nil {
		return err
	}
	m.dead = ports[0]
	return kit.AddDomain(ctx, m.nodes, scaleDomain, m.dead)
}

func (m *measurement) memLine() string {
	var b strings.Builder
	for _, n := range m.c.Nodes() {
		fmt.Fprintf(&b, " %s=%.0fMiB", n.ID, mib(m.s.current(n.ID).RSS))
	}
	return "RSS" + b.String()
}

func (m *measurement) fill(ctx context.Context) error {
	var addrs []string
	for _, n := range m.nodes {
		addrs = append(addrs, n.SMTP)
	}
	m.logf("sending %d messages of %d bytes over %d sessions", m.o.messages, m.o.size, m.o.sessions)
	start := time.Now()
	res, err := fill(ctx, fillConfig{
		Addrs: addrs, Messages: m.o.messages, Size: m.o.size, Sessions: m.o.sessions, Domain: scaleDomain,
		Progress: func(acc, failed int64) {
			el := time.Since(start).Seconds()
			m.logf("fill: %d/%d accepted (%.0f/s), %d failed; %s", acc, m.o.messages, float64(acc)/el, failed, m.memLine())
		},
	})
	if err != nil {
		return err
	}
	m.rep.Fill = res
	m.logf("fill: %d accepted, %d failed in %.1fs: %.0f msgs/s (p50 %.1fms, p99 %.1fms), %d retries",
		res.Accepted, res.Failed, res.Seconds, res.Rate, res.P50Ms, res.P99Ms, res.Retries)
	for _, r := range res.Replies {
		m.logf("  %dx %s", r.Count, r.Text)
	}
	if res.Accepted == 0 {
		return errors.New("no message was accepted")
	}
	return nil
}

// leader returns the founding node that the founders agree leads.
func (m *measurement) leader(ctx context.Context) (*kit.Node, error) {
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var found *kit.Node
	last := ""
	err := kit.Poll(wctx, 100*time.Millisecond, func() string { return "finding the leader: " + last }, func() (bool, error) {
		ids := map[string]bool{}
		for _, n := range m.nodes {
			_, h, err := n.Health(wctx)
			if err != nil {
				last = n.ID + ": " + err.Error()
				return false, nil
			}
			ids[h.Leader] = true
		}
		if len(ids) != 1 {
			last = fmt.Sprintf("leaders seen: %v", ids)
			return false, nil
		}
		for _, n := range m.nodes {
			if ids[n.ID] {
				found = n
				return true, nil
			}
		}
		last = fmt.Sprintf("leader %v is not a founder", ids)
		return false, nil
	})
	return found, err
}

// settle waits until every node has applied what the leader committed and
// checks that every accepted message is in the spool.
func (m *measurement) settle(ctx context.Context) error {
	ld, err := m.leader(ctx)
	if err != nil {
		return err
	}
	m.rep.node(ld.ID).Role = "founder, leader after fill"
	_, lh, err := ld.Health(ctx)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	last := ""
	err = kit.Poll(wctx, 200*time.Millisecond, func() string { return "followers applying the fill: " + last }, func() (bool, error) {
		for _, n := range m.nodes {
			_, h, err := n.Health(wctx)
			if err != nil || h.AppliedIndex < lh.AppliedIndex {
				last = fmt.Sprintf("%s applied %d of %d (%v)", n.ID, h.AppliedIndex, lh.AppliedIndex, err)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}

	start := time.Now()
	q, err := queue(ctx, ld)
	if err != nil {
		return fmt.Errorf("listing the spool: %w", err)
	}
	m.rep.QueueListSeconds = time.Since(start).Seconds()
	inQueue := map[string]bool{}
	blobs := map[string]bool{}
	for _, e := range q {
		inQueue[e.ID] = true
		if e.Blob != "" {
			blobs[e.Blob] = true
		}
	}
	for h := range blobs {
		m.blobs = append(m.blobs, h)
	}
	m.queued = len(q)
	m.rep.AttemptsAfterFill = sampleAttempts(q, len(q))
	v := &spoolCheck{Accepted: m.rep.Fill.Accepted, Queued: len(q), DistinctBodies: len(blobs)}
	for _, id := range m.rep.Fill.IDs {
		if !inQueue[id] {
			v.Missing++
			if len(v.MissingIDs) < 10 {
				v.MissingIDs = append(v.MissingIDs, id)
			}
		}
	}
	m.rep.Spool = v
	m.logf("spool: %d messages listed by the leader %s in %.1fs, %d distinct bodies, %d accepted IDs missing",
		len(q), ld.ID, m.rep.QueueListSeconds, len(blobs), v.Missing)
	for _, n := range m.nodes {
		d := dataDirSize(n.DataDir)
		m.rep.node(n.ID).DataAfterFill = &d
		m.logf("%s data after fill: %s", n.ID, d)
	}
	return nil
}

var snapshotWritten = regexp.MustCompile(`snapshot written in ([0-9.]+)s`)

// snapshots makes each founding node write a snapshot through
// `lifeline admin cluster snapshot` against its own HTTP address.
func (m *measurement) snapshots(ctx context.Context) error {
	for i, n := range m.nodes {
		r := &snapshotResult{Via: "lifeline admin cluster snapshot"}
		m.rep.node(n.ID).Snapshot = r
		for try := 0; ; try++ {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
			start := time.Now()
			out, err := admin(sctx, n, "cluster", "snapshot")
			r.WallSeconds = time.Since(start).Seconds()
			cancel()
			if err == nil {
				mm := snapshotWritten.FindStringSubmatch(out)
				if mm == nil {
					return fmt.Errorf("%s: unexpected output of lifeline admin cluster snapshot: %q", n.ID, out)
				}
				r.Seconds, _ = strconv.ParseFloat(mm[1], 64)
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if strings.Contains(out, "nothing new to snapshot") && try < 3 {
				// An automatic snapshot was just taken: one harmless
				// write gives this one something to cover.
				r.Notes = append(r.Notes, "first try: "+out+"; added a domain and tried again")
				if o, err := admin(ctx, n, "domain", "add", fmt.Sprintf("noop%d-%d.scale.test", i, try), "--destination", m.dead); err != nil {
					return fmt.Errorf("%s: lifeline admin domain add: %v: %s", n.ID, err, o)
				}
				continue
			}
			// The command failed: say so, and measure through the API
			// with a longer patience so the figure is not lost.
			r.Notes = append(r.Notes, fmt.Sprintf("lifeline admin cluster snapshot failed after %.1fs: %v: %s", r.WallSeconds, err, out))
			m.logf("%s: lifeline admin cluster snapshot failed after %.1fs: %v: %s; trying POST /api/v1/cluster/snapshot", n.ID, r.WallSeconds, err, out)
			var body struct {
				Seconds float64 `json:"seconds"`
			}
			start = time.Now()
			err = api(ctx, n, 10*time.Minute, http.MethodPost, "/api/v1/cluster/snapshot", &body)
			r.WallSeconds = time.Since(start).Seconds()
			if err != nil {
				return fmt.Errorf("%s: snapshot through the API failed too after %.1fs: %w%s", n.ID, r.WallSeconds, err, n.LogTail(30))
			}
			r.Via = "POST /api/v1/cluster/snapshot"
			r.Seconds = body.Seconds
			break
		}
		snapshotSize(filepath.Join(n.DataDir, "raft", "snapshots"), r)
		m.logf("%s: snapshot written in %.2fs (%.2fs wall): index %d, %.1f MiB (snapshots/ holds %.1f MiB); %s",
			n.ID, r.Seconds, r.WallSeconds, r.Index, mib(r.Bytes), mib(r.DirBytes), m.memLine())
	}
	return nil
}

// snapshotSize reads the newest snapshot's meta.json and file size.
func snapshotSize(dir string, r *snapshotResult) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		var meta struct {
			Index uint64 `json:"Index"`
			Size  int64  `json:"Size"`
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "meta.json"))
		if err != nil || json.Unmarshal(b, &meta) != nil {
			continue
		}
		r.Count++
		if meta.Index >= r.Index {
			r.Index, r.Name = meta.Index, e.Name()
			r.Bytes = meta.Size
			if fi, err := os.Stat(filepath.Join(dir, e.Name(), "state.bin")); err == nil {
				r.Bytes = fi.Size()
			}
		}
	}
	r.DirBytes = dataDirSize(dir).Total
}

// join starts a fourth node with an empty data directory and measures how
// it becomes a voter, catches up with the state and copies every body.
func (m *measurement) join(ctx context.Context) error {
	ld, err := m.leader(ctx)
	if err != nil {
		return err
	}
	var snapIndex uint64
	if s := m.rep.node(ld.ID).Snapshot; s != nil {
		snapIndex = s.Index
	}
	n4, err := m.c.NewNode(m.bin, m.tmp, "n4")
	if err != nil {
		return err
	}
	m.rep.node(n4.ID).Role = "joined empty"
	var join []string
	for _, n := range m.nodes {
		join = append(join, n.Gossip)
	}
	m.logf("starting n4 with an empty data directory, joining %s", strings.Join(join, ","))
	n4.Args = []string{"--bootstrap-expect", fmt.Sprint(clusterSize), "--join", strings.Join(join, ","), "--log-level", "warn"}
	run, err := n4.Launch()
	if err != nil {
		return err
	}
	m.c.Add(n4)
	t0 := run.Started()
	j := &joinResult{Leader: ld.ID, SnapshotIndex: snapIndex, Bodies: len(m.blobs)}
	m.rep.Join = j
	since := func() float64 { return time.Since(t0).Seconds() }

	blobDir := filepath.Join(n4.DataDir, "blobs")
	remaining := append([]string(nil), m.blobs...)
	var (
		st4, stL       kit.Status
		st4OK          bool
		lastSlow       time.Time
		lastLog        = time.Now()
		leaderApplied  uint64
		applied4       uint64
		stateDone      bool
		filesDone      bool
		lagDone        bool
		lagZeroMissing int
	)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for !(stateDone && filesDone && lagDone) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("n4 catching up: voter after %s, state caught up %v (applied %d of the leader's %d), %d of %d bodies, blob_lag %d: %w%s",
				secs(j.VoterSeconds), stateDone, applied4, leaderApplied, len(m.blobs)-len(remaining), len(m.blobs), st4.BlobLag, context.Cause(ctx), n4.LogTail(30))
		case <-tick.C:
		}
		if err := m.c.Crashed(); err != nil {
			return err
		}
		// The leader first, so n4 equal to or past it means caught up.
		if _, h, err := ld.Health(ctx); err == nil {
			leaderApplied = h.AppliedIndex
		}
		if _, h, err := n4.Health(ctx); err == nil {
			applied4 = h.AppliedIndex
		}
		if j.RestoreSeconds == 0 && snapIndex > 0 && applied4 >= snapIndex {
			j.RestoreSeconds = since()
			m.logf("n4: applied index %d >= snapshot index %d after %.1fs", applied4, snapIndex, j.RestoreSeconds)
		}
		if time.Since(lastSlow) >= time.Second {
			lastSlow = time.Now()
			// The token lives in the replicated state, so n4 answers 401
			// until it has the state.
			s, err := n4.APIStatus(ctx)
			st4OK = err == nil
			if st4OK {
				st4 = s
				j.BlobLagMax = max(j.BlobLagMax, s.BlobLag)
			}
			if s, err := ld.APIStatus(ctx); err == nil {
				stL = s
			}
			if j.LeaderSeesVoterSeconds == 0 && stL.Suffrage(n4.ID) == "voter" {
				j.LeaderSeesVoterSeconds = since()
				m.logf("n4: the leader lists it as a voter after %.1fs", j.LeaderSeesVoterSeconds)
			}
			if j.VoterSeconds == 0 && st4OK && st4.Suffrage(n4.ID) == "voter" {
				j.VoterSeconds = since()
				m.logf("n4: its own status shows it as a voter after %.1fs", j.VoterSeconds)
			}
			if !filesDone {
				remaining = missingBlobs(blobDir, remaining)
				if len(remaining) == 0 {
					filesDone = true
					j.BodiesFilesSeconds = since()
					m.logf("n4: every one of %d bodies is on disk after %.1fs", len(m.blobs), j.BodiesFilesSeconds)
				}
			}
			if st4OK && st4.BlobLag == 0 && !filesDone && j.VoterSeconds > 0 {
				lagZeroMissing++
			}
			if filesDone && !lagDone && st4OK && st4.BlobLag == 0 {
				lagDone = true
				j.BlobLagZeroSeconds = since()
				m.logf("n4: blob_lag 0 with every body on disk after %.1fs", j.BlobLagZeroSeconds)
			}
		}
		if !stateDone && j.VoterSeconds > 0 && applied4 >= leaderApplied && leaderApplied > 0 {
			stateDone = true
			j.StateSeconds = since()
			m.logf("n4: state caught up (applied %d, leader %d) after %.1fs", applied4, leaderApplied, j.StateSeconds)
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			m.logf("n4 after %.0fs: suffrage %q (leader's view %q), applied %d/%d, bodies %d/%d, blob_lag %d (status ok %v); %s",
				since(), st4.Suffrage(n4.ID), stL.Suffrage(n4.ID), applied4, leaderApplied,
				len(m.blobs)-len(remaining), len(m.blobs), st4.BlobLag, st4OK, m.memLine())
		}
	}
	j.BlobLagZeroWhileMissing = lagZeroMissing
	j.BodiesSeconds = max(j.BodiesFilesSeconds, j.BlobLagZeroSeconds)

	// The spool count is cached for a few seconds on each node.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kit.Poll(wctx, time.Second, func() string { return "" }, func() (bool, error) {
		s, err := n4.APIStatus(wctx)
		if err == nil {
			j.QueueMessages = int64(s.Queue.Messages)
		}
		return j.QueueMessages == int64(m.queued), nil
	})
	if j.QueueMessages != int64(m.queued) {
		m.rep.Problems = append(m.rep.Problems, fmt.Sprintf("n4 reports %d spooled messages, the leader listed %d", j.QueueMessages, m.queued))
	}
	return nil
}

// missingBlobs returns the hashes whose body file does not exist yet.
// missingBlobs reads the node's body store as it stands (without
// changing it) and returns the hashes it lacks.
func missingBlobs(dir string, hashes []string) []string {
	st, err := blob.Inspect(dir)
	if err != nil {
		return hashes
	}
	out := hashes[:0]
	for _, h := range hashes {
		if len(h) >= 2 && !st.Has(h) {
			out = append(out, h)
		}
	}
	return out
}

func secs(s float64) string {
	if s == 0 {
		return "never"
	}
	return fmt.Sprintf("%.1fs", s)
}

// dirSize is the footprint of one data directory.
type dirSize struct {
	StateDB   int64 `json:"state_db_bytes"`
	Raft      int64 `json:"raft_bytes"` // raft.db and snapshots/
	Snapshots int64 `json:"raft_snapshots_bytes"`
	Blobs     int64 `json:"blobs_bytes"`
	BlobFiles int   `json:"blob_files"` // segment files
	Total     int64 `json:"total_bytes"`
	Disk      int64 `json:"disk_usage_bytes"` // allocated blocks, as du counts
}

func (d dirSize) String() string {
	return fmt.Sprintf("state.db %.1f MiB, raft/ %.1f MiB (snapshots %.1f), blobs/ %.1f MiB in %d files, total %.1f MiB (%.1f MiB on disk)",
		mib(d.StateDB), mib(d.Raft), mib(d.Snapshots), mib(d.Blobs), d.BlobFiles, mib(d.Total), mib(d.Disk))
}

func dataDirSize(dir string) dirSize {
	var d dirSize
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return nil
		}
		size := fi.Size()
		d.Total += size
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			d.Disk += st.Blocks * 512
		}
		rel, _ := filepath.Rel(dir, path)
		switch first, _, _ := strings.Cut(rel, string(filepath.Separator)); {
		case rel == "state.db":
			d.StateDB += size
		case first == "raft":
			d.Raft += size
			if strings.HasPrefix(rel, filepath.Join("raft", "snapshots")+string(filepath.Separator)) {
				d.Snapshots += size
			}
		case first == "blobs":
			d.Blobs += size
			d.BlobFiles++
		}
		return nil
	})
	return d
}

// flushResult is what `lifeline admin queue flush` cost the leader while
// the destination is still down: every spooled recipient becomes due, the
// leader probes once and then reschedules the rest.
type flushResult struct {
	Leader           string  `json:"leader"`
	WatchSeconds     float64 `json:"watch_seconds"`
	LeaderMaxRSSMiB  float64 `json:"leader_max_rss_mib"`
	LeaderMaxAnonMiB float64 `json:"leader_max_anon_mib"`
}

// flush runs `lifeline admin queue flush` (-flush) and watches the
// memory of every node for a while.
func (m *measurement) flush(ctx context.Context) error {
	ld, err := m.leader(ctx)
	if err != nil {
		return err
	}
	m.logf("lifeline admin queue flush against the leader %s; watching for %v", ld.ID, m.o.flushWatch)
	if out, err := admin(ctx, ld, "queue", "flush"); err != nil {
		return fmt.Errorf("lifeline admin queue flush: %v: %s", err, out)
	}
	sleepCtx(ctx, m.o.flushWatch)
	if err := ctx.Err(); err != nil {
		return err
	}
	f := &flushResult{Leader: ld.ID, WatchSeconds: m.o.flushWatch.Seconds()}
	if p, ok := m.s.inPhase(ld.ID, "flush"); ok {
		f.LeaderMaxRSSMiB, f.LeaderMaxAnonMiB = mib(p.RSS), mib(p.Anon)
	}
	m.rep.Flush = f
	m.logf("queue flush: leader %s peaked at %.0f MiB RSS (anon %.0f); %s", ld.ID, f.LeaderMaxRSSMiB, f.LeaderMaxAnonMiB, m.memLine())
	return nil
}
