package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

func TestSummarizeFailover(t *testing.T) {
	kill := time.Unix(1000, 0)
	at := func(ms int) time.Time { return kill.Add(time.Duration(ms) * time.Millisecond) }
	recs := []txRecord{
		{sess: 0, start: at(-50), end: at(-40), ok: true, what: "250"},           // before: ignored
		{sess: 0, start: at(-5), end: at(3), what: "end of DATA: 451 4.3.0 x"},   // in flight
		{sess: 1, start: at(-2), end: at(900), ok: true, what: "250"},            // in flight, 250 but began before
		{sess: 0, start: at(13), end: at(14), what: "end of DATA: 451 4.3.0 x"},  // refused
		{sess: 0, start: at(30), end: at(31), what: "I/O: reset"},                // I/O
		{sess: 0, start: at(40), end: at(1200), ok: true, what: "250"},           // the first begun after
		{sess: 1, start: at(901), end: at(1100), ok: true, what: "250"},          // ends earlier: this one
		{sess: 1, start: at(1100), end: at(1300), what: "end of DATA: 451 late"}, // after the first 250: ignored
	}
	var r failoverRun
	summarizeFailover(&r, recs, kill)
	if !r.Accepted || r.FirstAcceptMs != 1100 {
		t.Errorf("first accept %v %.0fms, want 1100ms", r.Accepted, r.FirstAcceptMs)
	}
	if r.InFlight != 2 || r.InFlightMaxMs != 900 {
		t.Errorf("in flight %d, longest %.0fms; want 2, 900ms", r.InFlight, r.InFlightMaxMs)
	}
	if r.Refused != 1 || r.IOErrors != 1 {
		t.Errorf("refused %d, I/O %d; want 1, 1", r.Refused, r.IOErrors)
	}
	var none failoverRun
	summarizeFailover(&none, recs[:5], kill)
	if none.Accepted {
		t.Error("accepted without a 250 begun after the kill")
	}
}

func TestCountFiles(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"deferred/A/1", "deferred/A/2", "deferred/B/3", "active/4"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), nil, 0o644)
	}
	if n, err := countFiles(filepath.Join(dir, "deferred"), 0); err != nil || n != 3 {
		t.Errorf("count %d %v, want 3", n, err)
	}
	if n, err := countFiles(filepath.Join(dir, "deferred"), 1); err != nil || n != 1 {
		t.Errorf("count with stop %d %v, want 1", n, err)
	}
	if n, err := countFiles(filepath.Join(dir, "missing"), 0); err != nil || n != 0 {
		t.Errorf("missing dir: %d %v", n, err)
	}
	p := &postfixInstance{queueDir: dir}
	q, err := p.queueCounts()
	if err != nil || q.deferred != 3 || q.active != 1 || q.total() != 4 {
		t.Errorf("queue counts %+v %v", q, err)
	}
	if empty, err := p.queueEmpty(); err != nil || empty {
		t.Errorf("queue empty %v %v", empty, err)
	}
}

func TestReportTargets(t *testing.T) {
	o := options{accept: true, drain: true, cluster: true, failover: true}
	r := &report{Messages: 10, Sessions: 2, Size: 4096}
	r.Results = []systemResult{
		{System: "lifeline", Accepted: 10, Rate: 1200, P99ms: 10},
		{System: "postfix", Accepted: 10, Rate: 500, P99ms: 5},
		{System: clusterSystem, Accepted: 10, Rate: 400, P99ms: 60},
	}
	r.Drain = &drainReport{Messages: 10, Results: []drainResult{
		{System: "lifeline", Messages: 10, Drained: 10, Rate: 3000, Complete: true},
		{System: "postfix", Messages: 10, Drained: 10, Rate: 1000, Complete: true},
	}}
	r.Failover = &failoverReport{Runs: 2, Results: []failoverRun{
		{Run: 1, Accepted: true, FirstAcceptMs: 900, Healthy: true, HealthyMs: 800},
		{Run: 2, Accepted: false, Healthy: true, HealthyMs: 1000},
	}}
	r.compare(o)
	want := map[string]bool{
		"ratio lifeline/postfix":                     true,
		"lifeline p99":                               true,
		"drain ratio lifeline/postfix":               true,
		"ratio " + clusterSystem + "/postfix":        false,
		clusterSystem + " p99":                       false,
		"failover to first 250 (worst run)":          false,
		"failover to healthy new leader (worst run)": true,
	}
	if len(r.Targets) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(r.Targets), len(want), r.Targets)
	}
	for _, tg := range r.Targets {
		if met, ok := want[tg.Name]; !ok || !tg.Known || tg.Met != met {
			t.Errorf("target %+v, want met=%v", tg, met)
		}
	}
	if r.Failover.MaxFirstAcceptMs != kit.Ms(failoverLimit) {
		t.Errorf("a run without a 250 counts as the limit, got %.0fms", r.Failover.MaxFirstAcceptMs)
	}
	var out bytes.Buffer
	r.print(&out)
	for _, s := range []string{"ratio lifeline/postfix: 3.00 (drain rate)", "ratio " + clusterSystem + "/postfix: 0.80", "NOT met", ": met", "> 30s"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}

	// An unfinished drain is never "met", and Postfix skipped is "not measured".
	r.Drain.Results[0].Complete = false
	r.Results = r.Results[:1]
	r.compare(o)
	for _, tg := range r.Targets {
		switch tg.Name {
		case "drain ratio lifeline/postfix":
			if tg.Met {
				t.Error("unfinished drain met its target")
			}
		case "ratio lifeline/postfix", "ratio " + clusterSystem + "/postfix":
			if tg.Known {
				t.Errorf("%s known without Postfix", tg.Name)
			}
		}
	}
}

func TestMasterCf(t *testing.T) {
	p := newPostfixInstance(t.TempDir(), "127.0.0.1:2525")
	out, err := p.masterCf(t.TempDir())
	if err != nil {
		t.Skip("no package master.cf here:", err)
	}
	s := string(out)
	if !strings.Contains(s, "\n127.0.0.1:2525  inet  n  -  n  -  -  smtpd") {
		t.Errorf("listener not rewritten:\n%s", s)
	}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && line[0] != '#' && line[0] != ' ' && f[4] != "n" {
			t.Errorf("chroot left on: %q", line)
		}
	}
}
