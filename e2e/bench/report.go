package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"lifeline/e2e/kit"
)

// clusterSystem names the three-node accept figures beside the others.
const clusterSystem = "lifeline-3nodes"

// report is what the run prints, as a table or as JSON.
type report struct {
	Messages       int            `json:"messages"`
	Sessions       int            `json:"sessions"`
	Size           int            `json:"size"`
	Warmup         int            `json:"warmup"`
	Results        []systemResult `json:"results"`
	PostfixSkipped string         `json:"postfix_skipped,omitempty"`
	// Set only when both systems ran.
	Ratio           *float64 `json:"ratio_accept_rate,omitempty"`
	P99Ratio        *float64 `json:"ratio_p99,omitempty"`
	ClusterRatio    *float64 `json:"ratio_cluster_accept_rate,omitempty"`
	ClusterP99Ratio *float64 `json:"ratio_cluster_p99,omitempty"`

	Drain    *drainReport    `json:"drain,omitempty"`
	Failover *failoverReport `json:"failover,omitempty"`

	Targets []target `json:"targets"`
}

type systemResult struct {
	System       string      `json:"system"`
	Attempted    int         `json:"attempted"`
	Accepted     int         `json:"accepted"`
	Errors       int         `json:"errors"`
	WarmupErrors int         `json:"warmup_errors"`
	Seconds      float64     `json:"seconds"`
	Rate         float64     `json:"msgs_per_sec"`
	P50ms        float64     `json:"p50_ms"`
	P99ms        float64     `json:"p99_ms"`
	MaxMs        float64     `json:"max_ms"`
	ErrorKinds   []kit.Count `json:"error_kinds,omitempty"`
}

type drainReport struct {
	Messages int           `json:"messages"`
	Sessions int           `json:"sessions"`
	Size     int           `json:"size"`
	Mode     string        `json:"mode"`
	Results  []drainResult `json:"results"`
	Ratio    *float64      `json:"ratio_drain_rate,omitempty"`
}

func (d *drainReport) result(system string) *drainResult {
	for i := range d.Results {
		if d.Results[i].System == system {
			return &d.Results[i]
		}
	}
	return nil
}

type failoverReport struct {
	Runs     int           `json:"runs"`
	Sessions int           `json:"sessions"`
	Results  []failoverRun `json:"results"`
	// The worst run; a run without the event within the limit counts as
	// the limit.
	MaxFirstAcceptMs float64 `json:"max_first_accept_ms"`
	MaxHealthyMs     float64 `json:"max_healthy_ms"`
}

type target struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit,omitempty"`
	Wanted string  `json:"wanted"`
	Met    bool    `json:"met"`
	// Known is false when the figure could not be measured (Postfix
	// skipped), so "not met" is not claimed for a target nobody checked.
	Known bool `json:"known"`
}

func (r *report) add(system string, l kit.LoadResult) {
	r.Results = append(r.Results, systemResult{
		System: system, Attempted: l.Attempted, Accepted: l.Accepted, Errors: l.Errors,
		WarmupErrors: l.WarmupErrors, Seconds: l.Duration.Seconds(), Rate: l.Rate,
		P50ms: kit.Ms(l.P50), P99ms: kit.Ms(l.P99), MaxMs: kit.Ms(l.Max), ErrorKinds: l.ErrorKinds,
	})
}

func (r *report) result(system string) *systemResult {
	for i := range r.Results {
		if r.Results[i].System == system {
			return &r.Results[i]
		}
	}
	return nil
}

// compare works out the ratios and the targets of the parts that were
// selected; a selected part whose figure is missing shows "not measured".
func (r *report) compare(o options) {
	r.Targets = nil
	pf := r.result("postfix")
	if o.accept {
		ll := r.result("lifeline")
		ratio := target{Name: "ratio lifeline/postfix", Wanted: fmt.Sprintf(">= %.1f", targetRatio)}
		if ll != nil && pf != nil && pf.Rate > 0 {
			v := ll.Rate / pf.Rate
			r.Ratio = &v
			ratio.Value, ratio.Met, ratio.Known = v, v >= targetRatio, true
			if pf.P99ms > 0 {
				p := ll.P99ms / pf.P99ms
				r.P99Ratio = &p
			}
		}
		p99 := target{Name: "lifeline p99", Unit: "ms", Wanted: fmt.Sprintf("< %v", targetP99)}
		if ll != nil && ll.Accepted > 0 {
			p99.Value, p99.Met, p99.Known = ll.P99ms, ll.P99ms < kit.Ms(targetP99), true
		}
		r.Targets = append(r.Targets, ratio, p99)
	}
	if o.drain {
		t := target{Name: "drain ratio lifeline/postfix", Wanted: fmt.Sprintf(">= %.1f", targetDrainRatio)}
		if d := r.Drain; d != nil {
			ll, pfd := d.result("lifeline"), d.result("postfix")
			if ll != nil && pfd != nil && pfd.Rate > 0 {
				v := ll.Rate / pfd.Rate
				d.Ratio = &v
				// A drain that did not finish has a rate for what it
				// did, but it has not met anything.
				t.Value, t.Met, t.Known = v, v >= targetDrainRatio && ll.Complete, true
			}
		}
		r.Targets = append(r.Targets, t)
	}
	if o.cluster {
		cl := r.result(clusterSystem)
		ratio := target{Name: "ratio " + clusterSystem + "/postfix", Wanted: fmt.Sprintf(">= %.1f", targetClusterRatio)}
		if cl != nil && pf != nil && pf.Rate > 0 {
			v := cl.Rate / pf.Rate
			r.ClusterRatio = &v
			ratio.Value, ratio.Met, ratio.Known = v, v >= targetClusterRatio, true
			if pf.P99ms > 0 {
				p := cl.P99ms / pf.P99ms
				r.ClusterP99Ratio = &p
			}
		}
		p99 := target{Name: clusterSystem + " p99", Unit: "ms", Wanted: fmt.Sprintf("< %v", targetClusterP99)}
		if cl != nil && cl.Accepted > 0 {
			p99.Value, p99.Met, p99.Known = cl.P99ms, cl.P99ms < kit.Ms(targetClusterP99), true
		}
		r.Targets = append(r.Targets, ratio, p99)
	}
	if o.failover {
		accept := target{Name: "failover to first 250 (worst run)", Unit: "s", Wanted: fmt.Sprintf("< %v", targetFailover)}
		healthy := target{Name: "failover to healthy new leader (worst run)", Unit: "s", Wanted: fmt.Sprintf("< %v", targetFailover)}
		if f := r.Failover; f != nil && len(f.Results) > 0 {
			f.MaxFirstAcceptMs, f.MaxHealthyMs = 0, 0
			allAccepted, allHealthy := true, true
			for _, run := range f.Results {
				a, h := run.FirstAcceptMs, run.HealthyMs
				if !run.Accepted {
					a, allAccepted = kit.Ms(failoverLimit), false
				}
				if !run.Healthy {
					h, allHealthy = kit.Ms(failoverLimit), false
				}
				f.MaxFirstAcceptMs = max(f.MaxFirstAcceptMs, a)
				f.MaxHealthyMs = max(f.MaxHealthyMs, h)
			}
			accept.Value, accept.Known = f.MaxFirstAcceptMs/1000, true
			accept.Met = allAccepted && f.MaxFirstAcceptMs < kit.Ms(targetFailover)
			healthy.Value, healthy.Known = f.MaxHealthyMs/1000, true
			healthy.Met = allHealthy && f.MaxHealthyMs < kit.Ms(targetFailover)
		}
		r.Targets = append(r.Targets, accept, healthy)
	}
}

func (r *report) print(w io.Writer) {
	if len(r.Results) > 0 {
		r.printAccept(w)
	}
	if r.Drain != nil {
		r.Drain.print(w, r.PostfixSkipped)
	}
	if r.Failover != nil {
		r.Failover.print(w)
	}
	for _, t := range r.Targets {
		switch {
		case !t.Known:
			fmt.Fprintf(w, "target %s %s: not measured\n", t.Name, t.Wanted)
		case t.Met:
			fmt.Fprintf(w, "target %s %s: met (%.2f%s)\n", t.Name, t.Wanted, t.Value, t.Unit)
		default:
			fmt.Fprintf(w, "target %s %s: NOT met (%.2f%s)\n", t.Name, t.Wanted, t.Value, t.Unit)
		}
	}
}

func (r *report) printAccept(w io.Writer) {
	fmt.Fprintf(w, "%d messages of %d bytes per system, %d sessions, %d warm-up messages not counted\n\n", r.Messages, r.Size, r.Sessions, r.Warmup)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tmessages\tmsgs/s\tp50\tp99\tmax\terrors\t")
	for _, s := range r.Results {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2fms\t%.2fms\t%.2fms\t%d\t\n", s.System, s.Accepted, s.Rate, s.P50ms, s.P99ms, s.MaxMs, s.Errors)
	}
	tw.Flush()
	for _, s := range r.Results {
		if s.WarmupErrors > 0 {
			fmt.Fprintf(w, "%s: %d errors during warm-up (not counted)\n", s.System, s.WarmupErrors)
		}
		for _, k := range s.ErrorKinds {
			fmt.Fprintf(w, "%s error x%d: %s\n", s.System, k.Count, k.Text)
		}
	}
	if r.result(clusterSystem) != nil {
		fmt.Fprintf(w, "%s: %d nodes on loopback, sessions round-robin over their MX ports\n", clusterSystem, clusterSize)
	}
	fmt.Fprintln(w)
	pf := r.result("postfix")
	if r.Ratio != nil {
		fmt.Fprintf(w, "ratio lifeline/postfix: %.2f (accept rate)\n", *r.Ratio)
		ll := r.result("lifeline")
		fmt.Fprintf(w, "p99 lifeline/postfix: %.2fms vs %.2fms", ll.P99ms, pf.P99ms)
		if r.P99Ratio != nil {
			fmt.Fprintf(w, " (%.2fx)", *r.P99Ratio)
		}
		fmt.Fprintln(w)
	}
	if r.ClusterRatio != nil {
		fmt.Fprintf(w, "ratio %s/postfix: %.2f (accept rate)\n", clusterSystem, *r.ClusterRatio)
		cl := r.result(clusterSystem)
		fmt.Fprintf(w, "p99 %s/postfix: %.2fms vs %.2fms", clusterSystem, cl.P99ms, pf.P99ms)
		if r.ClusterP99Ratio != nil {
			fmt.Fprintf(w, " (%.2fx)", *r.ClusterP99Ratio)
		}
		fmt.Fprintln(w)
	}
	if r.PostfixSkipped != "" && r.Ratio == nil {
		fmt.Fprintf(w, "ratio lifeline/postfix: n/a (Postfix skipped: %s)\n", r.PostfixSkipped)
	}
	if r.Ratio != nil || r.ClusterRatio != nil || r.PostfixSkipped != "" {
		fmt.Fprintln(w)
	}
}

func (d *drainReport) print(w io.Writer, postfixSkipped string) {
	fmt.Fprintf(w, "drain: %d messages of %d bytes spooled by %d sessions while the destination was down, then flushed to smtp-sink (%s)\n\n",
		d.Messages, d.Size, d.Sessions, d.Mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tmessages\tseconds\tmsgs/s\tat sink\t")
	for _, s := range d.Results {
		fmt.Fprintf(tw, "%s\t%d\t%.2fs\t%.1f\t%d\t\n", s.System, s.Drained, s.Seconds, s.Rate, s.AtSink)
	}
	tw.Flush()
	for _, s := range d.Results {
		if s.LoadErrors > 0 {
			fmt.Fprintf(w, "%s: %d refusals while filling the spool\n", s.System, s.LoadErrors)
		}
		if s.Note != "" {
			fmt.Fprintf(w, "%s: %s\n", s.System, s.Note)
		}
	}
	fmt.Fprintln(w)
	if d.Ratio != nil {
		fmt.Fprintf(w, "ratio lifeline/postfix: %.2f (drain rate)\n\n", *d.Ratio)
	} else if postfixSkipped != "" {
		fmt.Fprintf(w, "ratio lifeline/postfix: n/a (Postfix skipped: %s)\n\n", postfixSkipped)
	}
}

func (f *failoverReport) print(w io.Writer) {
	fmt.Fprintf(w, "failover: SIGKILL of the leader of %d nodes while %d sessions send to the others, %d runs\n\n", clusterSize, f.Sessions, f.Runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tkilled\tnew leader\tfirst 250\thealthz 200\trefused\tI/O errors\tin flight\tlongest in flight\trejoined\t")
	for _, r := range f.Results {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.0fms\t%.1fs\t\n", r.Run, r.Killed, orDash(r.NewLeader),
			limitMs(r.FirstAcceptMs, r.Accepted), limitMs(r.HealthyMs, r.Healthy), r.Refused, r.IOErrors, r.InFlight, r.InFlightMaxMs, r.RecoverMs/1000)
	}
	if len(f.Results) > 0 {
		fmt.Fprintf(tw, "max\t\t\t%.0fms\t%.0fms\t\t\t\t\t\t\n", f.MaxFirstAcceptMs, f.MaxHealthyMs)
	}
	tw.Flush()
	for _, r := range f.Results {
		if len(r.InFlightEnds) > 0 {
			fmt.Fprintf(w, "run %d, in flight at the kill: %s\n", r.Run, strings.Join(r.InFlightEnds, "; "))
		}
	}
	fmt.Fprintf(w, "first 250: from the kill to the first 250 of a transaction begun after it; healthz 200: to a survivor's /healthz 200 naming a new leader\n\n")
}

func limitMs(v float64, ok bool) string {
	if !ok {
		return fmt.Sprintf("> %v", failoverLimit)
	}
	return fmt.Sprintf("%.0fms", v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
