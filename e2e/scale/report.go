package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"lifeline/e2e/kit"
)

type report struct {
	Messages         int           `json:"messages"`
	Size             int           `json:"size"`
	Sessions         int           `json:"sessions"`
	LimitMiB         int           `json:"rss_limit_mib"`
	Workdir          string        `json:"workdir"`
	Binary           string        `json:"binary"`
	FormSeconds      float64       `json:"cluster_form_seconds"`
	CPUs             int           `json:"cpus"`
	LoadAvg          []string      `json:"load_avg,omitempty"` // /proc/loadavg before the fill and at the end
	Fill             *fillResult   `json:"fill,omitempty"`
	Spool            *spoolCheck   `json:"spool,omitempty"`
	QueueListSeconds float64       `json:"queue_list_seconds,omitempty"`
	Nodes            []*nodeReport `json:"nodes"`
	Join             *joinResult   `json:"join,omitempty"`
	Leaders          []leaderEvent `json:"leader_changes,omitempty"`
	Flush            *flushResult  `json:"flush,omitempty"`
	// Delivery attempts over the whole spool, after the fill and at the end.
	AttemptsAfterFill attemptStats `json:"attempts_after_fill"`
	AttemptsAtEnd     attemptStats `json:"attempts_at_end"`
	Logs              []logSummary `json:"logs,omitempty"`
	Problems          []string     `json:"problems,omitempty"` // requirements missed
	Notes             []string     `json:"notes,omitempty"`    // product behaviour worth a look
	Error             string       `json:"error,omitempty"`
	LogsKeptIn        string       `json:"logs_kept_in,omitempty"`
	Pass              bool         `json:"pass"`
}

// spoolCheck compares the 250s with what the leader lists.
type spoolCheck struct {
	Accepted       int      `json:"accepted"`
	Queued         int      `json:"queued"`
	DistinctBodies int      `json:"distinct_bodies"`
	Missing        int      `json:"accepted_but_missing"`
	MissingIDs     []string `json:"missing_ids,omitempty"`
}

type nodeReport struct {
	ID            string             `json:"id"`
	Role          string             `json:"role"`
	Samples       int                `json:"rss_samples"`
	MaxRSSMiB     float64            `json:"max_rss_mib"`
	MaxAnonMiB    float64            `json:"max_rss_anon_mib"` // at the largest sample
	MaxFileMiB    float64            `json:"max_rss_file_mib"` // at the largest sample
	MaxRSSAt      string             `json:"max_rss_at,omitempty"`
	MaxRSSPhase   string             `json:"max_rss_phase,omitempty"`
	HWMMiB        float64            `json:"vm_hwm_mib"`
	UnderLimit    bool               `json:"under_limit"`
	PhaseMaxMiB   map[string]float64 `json:"max_rss_mib_by_phase"`
	DataAfterFill *dirSize           `json:"data_after_fill,omitempty"`
	Data          dirSize            `json:"data_at_end"`
	Snapshot      *snapshotResult    `json:"snapshot,omitempty"`
}

type snapshotResult struct {
	Via         string   `json:"via"`
	Seconds     float64  `json:"seconds"`      // as the node reports it
	WallSeconds float64  `json:"wall_seconds"` // the command as the operator waits for it
	Index       uint64   `json:"index"`
	Name        string   `json:"name"`
	Bytes       int64    `json:"bytes"`     // the newest snapshot's state.bin
	DirBytes    int64    `json:"dir_bytes"` // all of raft/snapshots/
	Count       int      `json:"retained"`
	Notes       []string `json:"notes,omitempty"`
}

// joinResult is the fourth node's way in; every time counts from its start.
type joinResult struct {
	Leader                  string  `json:"leader"`
	SnapshotIndex           uint64  `json:"leader_snapshot_index"`
	Bodies                  int     `json:"bodies"`
	LeaderSeesVoterSeconds  float64 `json:"leader_lists_voter_seconds"`
	VoterSeconds            float64 `json:"voter_seconds"`
	RestoreSeconds          float64 `json:"snapshot_restored_seconds"`
	StateSeconds            float64 `json:"state_caught_up_seconds"`
	BodiesFilesSeconds      float64 `json:"bodies_on_disk_seconds"`
	BlobLagZeroSeconds      float64 `json:"blob_lag_zero_seconds"`
	BodiesSeconds           float64 `json:"bodies_caught_up_seconds"`
	BlobLagMax              int64   `json:"blob_lag_max"`
	BlobLagZeroWhileMissing int     `json:"blob_lag_zero_while_bodies_missing_samples"`
	QueueMessages           int64   `json:"queue_messages"`
	MaxRSSMiB               float64 `json:"max_rss_mib"`
}

func (r *report) node(id string) *nodeReport {
	for _, n := range r.Nodes {
		if n.ID == id {
			return n
		}
	}
	n := &nodeReport{ID: id, PhaseMaxMiB: map[string]float64{}}
	r.Nodes = append(r.Nodes, n)
	return n
}

var phases = []string{"start", "fill", "settle", "snapshot", "flush", "join", "end"}

// memory copies the sampler's peaks into the report.
func (r *report) memory(nodes []*kit.Node, s *sampler) {
	limit := int64(r.LimitMiB) << 20
	for _, n := range nodes {
		nr := r.node(n.ID)
		best, phase, samples, hwm := s.overall(n.ID)
		nr.Samples = samples
		nr.MaxRSSMiB, nr.MaxAnonMiB, nr.MaxFileMiB, nr.HWMMiB = mib(best.Max.RSS), mib(best.Max.Anon), mib(best.Max.File), mib(hwm)
		if samples > 0 {
			nr.MaxRSSAt, nr.MaxRSSPhase = best.At.Format("15:04:05"), phase
		}
		nr.UnderLimit = samples > 0 && max(best.Max.RSS, hwm) < limit
		for _, p := range phases {
			if m, ok := s.inPhase(n.ID, p); ok {
				nr.PhaseMaxMiB[p] = mib(m.RSS)
			}
		}
		if n.ID == "n4" && r.Join != nil {
			r.Join.MaxRSSMiB = nr.MaxRSSMiB
		}
	}
}

// finish decides whether the run met the requirement.
func (r *report) finish() {
	pass := r.Error == "" && r.Fill != nil && r.Join != nil
	if r.Fill != nil && r.Fill.Failed > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d messages were never accepted", r.Fill.Failed))
		pass = false
	}
	if r.Spool != nil && r.Spool.Missing > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d messages answered 250 are not in the spool", r.Spool.Missing))
		pass = false
	}
	for _, n := range r.Nodes {
		if n.Samples > 0 && !n.UnderLimit {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: RSS reached %.0f MiB (VmHWM %.0f MiB), over %d MiB",
				n.ID, n.MaxRSSMiB, n.HWMMiB, r.LimitMiB))
			pass = false
		}
	}
	if j := r.Join; j != nil && j.BlobLagZeroWhileMissing > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("n4 reported blob_lag 0 in %d status samples while bodies were still missing on disk",
			j.BlobLagZeroWhileMissing))
	}
	for _, l := range r.Logs {
		if l.Errors > 0 || l.Other > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("%s log: %d ERROR lines, %d lines that are not JSON log records", l.Node, l.Errors, l.Other))
		}
	}
	r.Pass = pass && len(r.Problems) == 0
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "Lifeline scale: %d messages of %d bytes, %d sessions, RSS limit %d MiB\n", r.Messages, r.Size, r.Sessions, r.LimitMiB)
	fmt.Fprintf(w, "work directory %s, %d CPUs, load average %s\n\n", r.Workdir, r.CPUs, strings.Join(r.LoadAvg, " -> "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string, a ...any) { fmt.Fprintf(tw, "%s\t"+v+"\n", append([]any{k}, a...)...) }
	row("cluster formed", "%.1f s", r.FormSeconds)
	if f := r.Fill; f != nil {
		row("fill rate", "%.0f msgs/s (%d accepted, %d failed, %d retries, %.1f s)", f.Rate, f.Accepted, f.Failed, f.Retries, f.Seconds)
		row("fill latency", "p50 %.1f ms, p99 %.1f ms, max %.1f ms", f.P50Ms, f.P99Ms, f.MaxMs)
		for _, t := range f.Replies {
			row("  not 250", "%dx %s", t.Count, t.Text)
		}
	}
	if len(r.Leaders) > 0 {
		perPhase := map[string]int{}
		for _, e := range r.Leaders[1:] {
			perPhase[e.Phase]++
		}
		var parts []string
		for _, p := range phases {
			if perPhase[p] > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", p, perPhase[p]))
			}
		}
		if len(parts) == 0 {
			parts = []string{"none"}
		}
		row("term or leader changes", "%s (first leader %s, last %s, term %d)", strings.Join(parts, ", "),
			r.Leaders[0].Leader, r.Leaders[len(r.Leaders)-1].Leader, r.Leaders[len(r.Leaders)-1].Term)
	}
	if f := r.Flush; f != nil {
		row("queue flush (-flush)", "on leader %s: largest RSS %.0f MiB (anon %.0f) within %.0f s after", f.Leader, f.LeaderMaxRSSMiB, f.LeaderMaxAnonMiB, f.WatchSeconds)
	}
	if s := r.Spool; s != nil {
		row("spool on leader", "%d messages (%d accepted, %d missing), listed in %.1f s", s.Queued, s.Accepted, s.Missing, r.QueueListSeconds)
	}
	for _, a := range []struct {
		when string
		st   attemptStats
	}{{"after fill", r.AttemptsAfterFill}, {"at end", r.AttemptsAtEnd}} {
		if a.st.Sampled > 0 {
			row("delivery attempts "+a.when, "%d of %d messages tried, mean %.2f, max %d", a.st.Tried, a.st.Sampled, a.st.Mean, a.st.Max)
		}
	}
	if j := r.Join; j != nil {
		row("n4 listed as voter by leader", "%s", secs(j.LeaderSeesVoterSeconds))
		row("n4 join to voter (own status)", "%s", secs(j.VoterSeconds))
		row("n4 snapshot restored", "%s (applied index >= leader snapshot %d)", secs(j.RestoreSeconds), j.SnapshotIndex)
		row("n4 state caught up", "%s", secs(j.StateSeconds))
		row("n4 bodies on disk", "%s (%d bodies)", secs(j.BodiesFilesSeconds), j.Bodies)
		row("n4 bodies caught up", "%s (blob_lag 0 and every body on disk; blob_lag max %d)", secs(j.BodiesSeconds), j.BlobLagMax)
		if j.QueueMessages > 0 {
			row("n4 spool count", "%d", j.QueueMessages)
		}
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\trole\tmax RSS MiB\tanon\tfile\tat\tVmHWM\t< limit\tfill\tsnapshot\tflush\tjoin\tsnapshot s\tsnapshot MiB\tstate.db MiB\traft/ MiB\tblobs/ MiB\tblob files\t")
	for _, n := range r.Nodes {
		ok := "yes"
		if !n.UnderLimit {
			ok = "NO"
		}
		snapS, snapM := "-", "-"
		if s := n.Snapshot; s != nil {
			snapS, snapM = fmt.Sprintf("%.2f", s.Seconds), fmt.Sprintf("%.1f", mib(s.Bytes))
		}
		ph := func(p string) string {
			if v, ok := n.PhaseMaxMiB[p]; ok {
				return fmt.Sprintf("%.0f", v)
			}
			return "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%d\t\n",
			n.ID, n.Role, n.MaxRSSMiB, n.MaxAnonMiB, n.MaxFileMiB, n.MaxRSSAt+" "+n.MaxRSSPhase, n.HWMMiB, ok, ph("fill"), ph("snapshot"), ph("flush"), ph("join"),
			snapS, snapM, mib(n.Data.StateDB), mib(n.Data.Raft), mib(n.Data.Blobs), n.Data.BlobFiles)
	}
	tw.Flush()

	if len(r.Logs) > 0 {
		fmt.Fprintln(w, "\nnode logs (level warn):")
		for _, l := range r.Logs {
			fmt.Fprintf(w, "  %s: %d WARN, %d ERROR, %d other lines\n", l.Node, l.Warns, l.Errors, l.Other)
			for _, t := range l.Top {
				fmt.Fprintf(w, "    %dx %s [%s..%s]\n", t.Count, t.Text, t.First, t.Last)
			}
		}
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(w, "\nproblems:")
		for _, p := range r.Problems {
			fmt.Fprintln(w, "  - "+p)
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, p := range r.Notes {
			fmt.Fprintln(w, "  - "+p)
		}
	}
	if r.Error != "" {
		fmt.Fprintln(w, "\nrun failed: "+firstLine(r.Error))
	}
	if r.LogsKeptIn != "" {
		fmt.Fprintln(w, "node logs kept in "+r.LogsKeptIn)
	}
	if r.Pass {
		fmt.Fprintln(w, "\nPASS")
	} else {
		fmt.Fprintln(w, "\nFAIL")
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// logSummary counts a node log's records by level and its distinct
// messages, so a flood of one warning reads as one line.
type logSummary struct {
	Node   string     `json:"node"`
	Path   string     `json:"path"`
	Warns  int        `json:"warn"`
	Errors int        `json:"error"`
	Other  int        `json:"other_lines"`
	Top    []logCount `json:"top,omitempty"`
}

// logCount is one distinct log message, how often it came and when.
type logCount struct {
	Text  string `json:"text"`
	Count int    `json:"count"`
	First string `json:"first"`
	Last  string `json:"last"`
}

func scanLogs(nodes []*kit.Node) []logSummary {
	var out []logSummary
	for _, n := range nodes {
		s := logSummary{Node: n.ID, Path: n.LogPath}
		f, err := os.Open(n.LogPath)
		if err != nil {
			continue
		}
		counts := map[string]*logCount{}
		add := func(text, at string) {
			if len(text) > 200 {
				text = text[:200] + "..."
			}
			c := counts[text]
			if c == nil {
				c = &logCount{Text: text, First: at}
				counts[text] = c
			}
			c.Count++
			c.Last = at
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.TrimSpace(line) == "" {
				continue
			}
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				s.Other++
				add("(not JSON) "+line, "")
				continue
			}
			level, _ := rec["level"].(string)
			switch strings.ToUpper(level) {
			case "WARN", "WARNING":
				s.Warns++
			case "ERROR":
				s.Errors++
			default:
				continue
			}
			// The message and its error, without times and IDs that would
			// make every line distinct.
			text := strings.ToUpper(level) + " " + fmt.Sprint(rec["msg"])
			keys := make([]string, 0, len(rec))
			for k := range rec {
				if k != "time" && k != "level" && k != "msg" {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			for _, k := range keys {
				if k == "err" || k == "error" || k == "part" || k == "peer" {
					text += fmt.Sprintf(" %s=%v", k, rec[k])
				}
			}
			at, _ := rec["time"].(string)
			if len(at) >= 19 {
				at = at[11:19] // the clock time of an RFC 3339 stamp
			}
			add(text, at)
		}
		f.Close()
		for _, c := range counts {
			s.Top = append(s.Top, *c)
		}
		slices.SortFunc(s.Top, func(a, b logCount) int {
			if a.Count != b.Count {
				return b.Count - a.Count
			}
			return strings.Compare(a.Text, b.Text)
		})
		if len(s.Top) > 8 {
			s.Top = s.Top[:8]
		}
		out = append(out, s)
	}
	return out
}

// loadAvg is the first three fields of /proc/loadavg: another busy
// process on the machine shows here.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
